"""Related parameters share tokens (Dar et al. 2023, §5): Jaccard of top tokens vs a shuffle.

For each layer and pair kind, the top-``k`` tokens by ``|projection|`` (paper: ``k = 100``) of
two related vectors are compared by Jaccard similarity, averaged over the pairs, against the
same with a seeded random pairing:

* ``key_value``: FF key ``i`` (column ``i`` of ``W_in``, read side) vs value ``i`` (row ``i`` of
  ``W_out``, write side);
* ``v_o``: sub-head ``(h, j)``'s ``W_V[h][:, j]`` (read) vs ``W_O[h][j]`` (write);
* ``q_k``: ``W_Q[h][:, j]`` vs ``W_K[h][:, j]`` (both read; ``W_K`` expanded to query heads).

Weights only: no model is run. ``max_pairs`` samples pairs (seeded) to bound the cost on large
models.
"""

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import InvalidArgumentError
from ..space import EmbeddingSpace
from .collect import _layer_range

PAIR_KINDS = ("key_value", "v_o", "q_k")
_ROW_BLOCK = 256


@dataclass(frozen=True)
class RelatedRow:
    """Mean Jaccard of related pairs and of shuffled pairs, for one layer and pair kind."""

    layer: int
    pair: str
    related: float
    shuffled: float
    n_pairs: int


def _abs_top(space: EmbeddingSpace, vectors: Tensor, side: str, layer: int, k: int) -> Tensor:
    basis = space.basis(side)
    x = basis.prepare(space.carry(vectors.float(), side, layer))
    out = []
    for s in range(0, x.shape[0], _ROW_BLOCK):
        scores = x[s : s + _ROW_BLOCK] @ basis.matrix.float()
        if basis.bias is not None:
            scores += basis.bias.float()
        out.append(scores.abs().topk(k, dim=-1).indices)
    return torch.cat(out)


def jaccard(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Jaccard similarity of two ``[n, k]`` id tensors (distinct ids per row)."""
    inter = (a[:, :, None] == b[:, None, :]).any(-1).sum(-1).float()
    return inter / (a.shape[1] + b.shape[1] - inter)


def _pairs(space: EmbeddingSpace, layer: int, pair: str) -> tuple[Tensor, str, Tensor, str]:
    lw = space.view.layer(layer)
    if pair == "key_value":
        if lw.W_in is None or lw.W_out_written is None:
            raise InvalidArgumentError(f"layer {layer} has no dense MLP")
        return lw.W_in.T, "read", lw.W_out_written, "write"
    d = lw.W_Q.shape[1]
    if pair == "v_o":
        return (
            lw.W_V.permute(0, 2, 1).reshape(-1, d),
            "read",
            lw.W_O_written.reshape(-1, d),
            "write",
        )
    if pair == "q_k":
        return (
            lw.W_Q.permute(0, 2, 1).reshape(-1, d),
            "read",
            lw.W_K.permute(0, 2, 1).reshape(-1, d),
            "read",
        )
    raise InvalidArgumentError(f"unknown pair kind {pair!r}; expected one of {PAIR_KINDS}")


def related_jaccard(
    model: Any,
    *,
    layers: Any = None,
    pairs: tuple[str, ...] = PAIR_KINDS,
    k: int = 100,
    max_pairs: int | None = None,
    seed: int = 0,
    space: EmbeddingSpace | None = None,
) -> list[RelatedRow]:
    """Mean Jaccard of top-``k`` token sets of related vs randomly paired parameters, per layer.

    Args:
        model: A TransformerLens model or a view (``space`` defaults to the paper's bases).
        layers: Layers (default all).
        pairs: Subset of ``PAIR_KINDS``.
        k: Tokens per set, by absolute projection (paper: 100).
        max_pairs: Score at most this many pairs per layer and kind (seeded sample); None: all.
        seed: Seeds the sample and the shuffled pairing.
        space: Bases (default ``EmbeddingSpace.paper(model)``: ``E = W_U`` on both sides).
    """
    space = space if space is not None else EmbeddingSpace.paper(model)
    rows = []
    g = torch.Generator().manual_seed(seed)
    for layer in _layer_range(space.view, layers):
        for pair in pairs:
            left, left_side, right, right_side = _pairs(space, layer, pair)
            m = left.shape[0]
            pick = torch.randperm(m, generator=g)[: max_pairs or m].sort().values
            shift = torch.randint(1, m, (pick.numel(),), generator=g)
            partner = (pick + shift) % m  # never the vector's own partner
            a = _abs_top(space, left[pick], left_side, layer, k)
            b = _abs_top(space, right[pick], right_side, layer, k)
            b_shuffled = _abs_top(space, right[partner], right_side, layer, k)
            rows.append(
                RelatedRow(
                    layer=layer,
                    pair=pair,
                    related=float(jaccard(a, b).mean()),
                    shuffled=float(jaccard(a, b_shuffled).mean()),
                    n_pairs=int(pick.numel()),
                )
            )
    return rows


def rows_to_dicts(rows: list[RelatedRow]) -> list[dict[str, Any]]:
    """The rows as plain dicts (JSON-serialisable)."""
    return [asdict(r) for r in rows]


__all__ = ["PAIR_KINDS", "RelatedRow", "jaccard", "related_jaccard", "rows_to_dicts"]
