"""Align the layers, heads and MLP neurons of two models that share a vocabulary.

Dar et al. §6, application (a), with a score. For each *parameter group* (FF keys, gates and
values; Q/K/V columns; O rows; whole heads as QK and OV circuits) every vector of model A is
correlated with every vector of model B through ``d x d`` kernels (``apps.kernels``: the
vocabulary-sized projections are never built), the absolute correlations are aggregated per layer
pair, and layers are matched with the Hungarian algorithm. Within each matched layer pair, heads
(by their whole-circuit similarity) and neurons (by their key, gate and value correlations) are
matched the same way. ``space="raw"`` runs the same pipeline on the raw d_model coordinates: the
baseline the embedding space is judged against.
"""

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..adapters import LayerWeights, WeightView
from ..errors import BasisError, InvalidArgumentError, VocabularyMismatchError
from ..interpreters import as_space
from ..space import EmbeddingSpace
from ..tokens import vocab_strings
from .kernels import (
    Circuits,
    CrossKernel,
    circuit_cosines,
    cross_kernel,
    identity_kernel,
    prepare_a,
    prepare_b,
    prepare_circuits_a,
    prepare_circuits_b,
)

#: Groups of vectors: name -> (basis side, the group's vectors ``[n, d_model]`` of one layer).
VectorGetter = Callable[[LayerWeights, WeightView], Tensor | None]
#: Groups of whole heads: name -> (left side, right side, the layer's circuits).
CircuitGetter = Callable[[LayerWeights, WeightView], Circuits]


def _rows(w: Tensor) -> Tensor:
    """``[h, a, b] -> [h * a, b]``."""
    return w.reshape(-1, w.shape[-1])


def _per_kv_head(w: Tensor, view: WeightView) -> Tensor:
    """One copy per key/value head of an expanded ``[n_heads, ...]`` tensor (no duplicates)."""
    return w[:: view.spec.n_heads // view.spec.n_kv_heads]


def _columns(w: Tensor) -> Tensor:
    """Columns of each head's ``[h, d_model, d_head]`` matrix as rows ``[h * d_head, d_model]``."""
    return _rows(w.transpose(1, 2))


VECTOR_GROUPS: dict[str, tuple[str, VectorGetter]] = {
    "ff_key": ("read", lambda lw, v: None if lw.W_in is None else lw.W_in.T),
    "ff_gate": ("read", lambda lw, v: None if lw.W_gate is None else lw.W_gate.T),
    "ff_value": ("write", lambda lw, v: lw.W_out_written),
    "q": ("read", lambda lw, v: _columns(lw.W_Q_qk)),
    "k": ("read", lambda lw, v: _columns(_per_kv_head(lw.W_K_qk, v))),
    "v": ("read", lambda lw, v: _columns(_per_kv_head(lw.W_V, v))),
    "o": ("write", lambda lw, v: _rows(lw.W_O_written)),
}

CIRCUIT_GROUPS: dict[str, tuple[str, str, CircuitGetter]] = {
    "qk": ("read", "read", lambda lw, v: Circuits(lw.W_Q_qk, lw.W_K_qk)),
    "ov": ("read", "write", lambda lw, v: Circuits(lw.W_V, lw.W_O_written.transpose(1, 2))),
}

GROUPS = (*VECTOR_GROUPS, *CIRCUIT_GROUPS)
AGGREGATES = ("mean_abs", "max_abs", "rms")
SPACES = ("embedding", "raw")

# Groups whose correlations decide the neuron matching, and the head matching.
_NEURON_GROUPS = ("ff_key", "ff_gate", "ff_value")
_HEAD_GROUPS = ("qk", "ov")


def _aggregate(abs_sim: Tensor, how: str) -> float:
    """One number for a layer pair from its ``[n_a, n_b]`` absolute similarities."""
    if how == "mean_abs":
        return float(abs_sim.mean())
    if how == "max_abs":
        return 0.5 * float(abs_sim.max(1).values.mean() + abs_sim.max(0).values.mean())
    return math.sqrt(float(abs_sim.pow(2).mean()))


def _match(similarity: np.ndarray) -> list[int | None]:
    """Hungarian matching maximising total similarity: row i's column (None: unmatched row)."""
    # Imported here: scipy is needed by alignment only, not by `import tl_embspace`.
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(similarity, maximize=True)
    out: list[int | None] = [None] * similarity.shape[0]
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        out[r] = c
    return out


@dataclass(frozen=True)
class Alignment:
    """Layer, head and neuron correspondences between two models (see :func:`align`).

    Attributes:
        space: ``"embedding"`` (correlations of vocabulary projections) or ``"raw"`` (of the raw
            d_model coordinates: the baseline).
        groups: The parameter groups used (see ``GROUPS``).
        aggregate: How a layer pair's absolute correlations became one number.
        similarity: Per group, and ``"combined"`` (their mean), the ``[n_layers_a, n_layers_b]``
            layer similarity matrix.
        layer_match: For each layer of A, the layer of B matched to it on the combined
            similarity (None where A has more layers than B).
        head_match: For each matched layer of A, the B head matched to each of its heads (whole
            QK and OV circuits, cosine in embedding space or raw coordinates).
        neuron_match: For each matched layer of A, the B neuron matched to each of its MLP
            neurons (mean absolute correlation of keys, gates and values).
        provenance: Models, bases, number of tokens the correlations ran over, options.
    """

    space: str
    groups: tuple[str, ...]
    aggregate: str
    similarity: dict[str, np.ndarray]
    layer_match: tuple[int | None, ...]
    head_match: dict[int, tuple[int | None, ...]] = field(default_factory=dict)
    neuron_match: dict[int, tuple[int | None, ...]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def score(
        self,
        expected_layers: Sequence[int] | None = None,
        expected_heads: dict[int, Sequence[int]] | None = None,
        expected_neurons: dict[int, Sequence[int]] | None = None,
    ) -> dict[str, Any]:
        """How well the matching found the expected correspondence.

        Args:
            expected_layers: For each layer of A, the layer of B it should match. Default: the
                same index (models of equal depth).
            expected_heads: For layers of A, the expected B head of each head (optional).
            expected_neurons: For layers of A, the expected B neuron of each neuron (optional).

        Returns:
            ``{"layers": {group: {"fraction_matched", "mean_rank"}}, "heads": fraction,
            "neurons": fraction}``. Per group the layers are matched on that group's similarity
            alone; ``"combined"`` is :attr:`layer_match`. ``fraction_matched``: the share of A's
            layers matched to the expected layer. ``mean_rank``: the expected layer's rank in
            its row of the similarity matrix, averaged (1 = always the most similar). Head and
            neuron fractions count the heads/neurons of the given layers whose match is the
            expected one (a layer matched to the wrong layer counts as all wrong).
        """
        n_a, n_b = self.similarity["combined"].shape
        if expected_layers is None:
            if n_a != n_b:
                raise InvalidArgumentError(
                    f"the models have {n_a} and {n_b} layers; pass expected_layers"
                )
            expected_layers = list(range(n_a))
        expected = [int(x) for x in expected_layers]
        if len(expected) != n_a:
            raise InvalidArgumentError(f"expected_layers needs {n_a} entries, got {len(expected)}")
        layers = {}
        for group, sim in self.similarity.items():
            match = self.layer_match if group == "combined" else tuple(_match(sim))
            ranks = [1 + int((sim[i] > sim[i, e]).sum()) for i, e in enumerate(expected)]
            layers[group] = {
                "fraction_matched": float(
                    np.mean([m == e for m, e in zip(match, expected, strict=True)])
                ),
                "mean_rank": float(np.mean(ranks)),
            }
        out: dict[str, Any] = {"layers": layers}
        for name, want, got in (
            ("heads", expected_heads, self.head_match),
            ("neurons", expected_neurons, self.neuron_match),
        ):
            if want is None:
                continue
            hits = total = 0
            for layer, order in want.items():
                total += len(order)
                if self.layer_match[layer] != expected[layer] or layer not in got:
                    continue
                hits += sum(int(g == w) for g, w in zip(got[layer], order, strict=True))
            out[name] = hits / total if total else float("nan")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (matrices as nested lists)."""
        return {
            "space": self.space,
            "groups": list(self.groups),
            "aggregate": self.aggregate,
            "similarity": {g: s.tolist() for g, s in self.similarity.items()},
            "layer_match": list(self.layer_match),
            "head_match": {str(k): list(v) for k, v in self.head_match.items()},
            "neuron_match": {str(k): list(v) for k, v in self.neuron_match.items()},
            "provenance": self.provenance,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    def heatmap_svg(self, group: str = "combined", cell: int = 12) -> str:
        """A self-contained SVG heatmap of one similarity matrix, matched cells outlined.

        Rows are A's layers (top to bottom), columns B's; darker is more similar (scaled to the
        matrix's own minimum and maximum). No plotting library is needed.
        """
        if group not in self.similarity:
            raise InvalidArgumentError(
                f"no similarity for group {group!r}; have {', '.join(self.similarity)}"
            )
        sim = self.similarity[group]
        lo, hi = float(sim.min()), float(sim.max())
        span = hi - lo if hi > lo else 1.0
        n_a, n_b = sim.shape
        pad = 40
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{pad + n_b * cell + 4}" '
            f'height="{pad + n_a * cell + 4}" font-family="sans-serif" font-size="10">',
            f'<text x="2" y="12">{self.space} space, {group} ({self.aggregate}); '
            f"rows: A layers, columns: B layers; range {lo:.3g}..{hi:.3g}</text>",
        ]
        match = self.layer_match if group == "combined" else tuple(_match(sim))
        for i in range(n_a):
            for j in range(n_b):
                shade = int(255 * (1 - (float(sim[i, j]) - lo) / span))
                stroke = ' stroke="red" stroke-width="1.5"' if match[i] == j else ""
                parts.append(
                    f'<rect x="{pad + j * cell}" y="{pad + i * cell}" width="{cell}" '
                    f'height="{cell}" fill="rgb({shade},{shade},{shade})"{stroke}/>'
                )
        parts.append("</svg>")
        return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Vocabulary: the same, or the tokens two vocabularies share by their decoded text
# ----------------------------------------------------------------------------------------------


def _known_strings(space: EmbeddingSpace, d_vocab: int, which: str) -> tuple[str, ...]:
    if space.tokenizer is None:
        raise VocabularyMismatchError(
            f"model {which} ({space.view.spec.model_name}) has no tokenizer, so its vocabulary "
            "cannot be compared with the other's; pass tokenizer=... to its EmbeddingSpace"
        )
    return vocab_strings(space.tokenizer, d_vocab)


def shared_token_ids(a: EmbeddingSpace, b: EmbeddingSpace) -> tuple[Tensor, Tensor]:
    """Ids, in A and in B, of the tokens whose decoded text appears in both vocabularies.

    Each text is taken at its first id in each vocabulary (later duplicates are dropped); ids
    beyond the tokenizer (embedding padding) are never shared. Ordered by A's ids.
    """
    texts = {}
    for which, space in (("A", a), ("B", b)):
        d_vocab = space.read.matrix.shape[1]
        strings = _known_strings(space, d_vocab, which)
        n_known = min(d_vocab, len(space.tokenizer))  # a tokenizer: _known_strings checked
        first: dict[str, int] = {}
        for i in range(n_known):
            first.setdefault(strings[i], i)
        texts[which] = first
    common = sorted(set(texts["A"]) & set(texts["B"]), key=texts["A"].__getitem__)
    ids_a = torch.tensor([texts["A"][t] for t in common], dtype=torch.long)
    ids_b = torch.tensor([texts["B"][t] for t in common], dtype=torch.long)
    return ids_a, ids_b


def token_columns(
    a: EmbeddingSpace, b: EmbeddingSpace, shared_tokens: bool, what: str = "align"
) -> tuple[Tensor | None, Tensor | None, int]:
    """Token columns to use in each model (None: all) and how many there are.

    Raises:
        VocabularyMismatchError: Different vocabularies without ``shared_tokens``, or fewer
            than 2 shared tokens. ``what`` names the call to repeat with ``shared_tokens=True``.
    """
    n_a, n_b = a.read.matrix.shape[1], b.read.matrix.shape[1]
    if shared_tokens:
        ids_a, ids_b = shared_token_ids(a, b)
        if len(ids_a) < 2:
            raise VocabularyMismatchError(
                f"the two vocabularies share {len(ids_a)} token(s) by text; too few for {what}"
            )
        return ids_a, ids_b, len(ids_a)
    same = n_a == n_b and _known_strings(a, n_a, "A") == _known_strings(b, n_b, "B")
    if not same:
        ids_a, _ = shared_token_ids(a, b)
        raise VocabularyMismatchError(
            f"the two models have different vocabularies ({n_a} and {n_b} tokens; "
            f"{len(ids_a)} token texts in common), so their embedding spaces do not line up; "
            f"use the shared tokens with {what}(..., shared_tokens=True)"
        )
    return None, None, n_a


def _side_kernel(
    a: EmbeddingSpace, b: EmbeddingSpace, side: str, ids_a: Tensor | None, ids_b: Tensor | None
) -> CrossKernel:
    ma, mb = a.basis(side).matrix, b.basis(side).matrix
    return cross_kernel(
        ma if ids_a is None else ma[:, ids_a], mb if ids_b is None else mb[:, ids_b]
    )


def _check_space(space: EmbeddingSpace, which: str) -> None:
    if space.transport is not None:
        raise BasisError(
            f"model {which}'s space has a transport; alignment compares the weights as they are "
            "(build the EmbeddingSpace without transport=)"
        )
    for side in ("read", "write"):
        space.basis(side).require_linear("alignment (correlations through kernels)")


# ----------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------


def _present(view: WeightView, group: str) -> bool:
    """True when every layer of the model has this group's weights."""
    lw = view.layer(0)
    if group in ("ff_key", "ff_value"):
        return lw.W_in is not None and lw.W_out is not None
    if group == "ff_gate":
        return lw.W_gate is not None
    return True


def _select_groups(va: WeightView, vb: WeightView, groups: Iterable[str] | None) -> tuple[str, ...]:
    if groups is None:
        return tuple(g for g in GROUPS if _present(va, g) and _present(vb, g))
    chosen = tuple(groups)
    unknown = [g for g in chosen if g not in GROUPS]
    if unknown or not chosen:
        raise InvalidArgumentError(
            f"unknown parameter group(s) {unknown}; choose from {', '.join(GROUPS)}"
        )
    missing = [g for g in chosen if not (_present(va, g) and _present(vb, g))]
    if missing:
        raise InvalidArgumentError(
            f"group(s) {missing} are missing in one of the models (no dense or no gated MLP)"
        )
    return chosen


def _vectors(view: WeightView, layer: int, group: str) -> Tensor:
    """The group's vectors ``[n, d_model]`` in one layer (groups were checked present)."""
    vectors = VECTOR_GROUPS[group][1](view.layer(layer), view)
    if vectors is None:
        raise InvalidArgumentError(f"layer {layer} of {view.spec.model_name} has no {group}")
    return vectors


def _vector_similarity(
    va: WeightView, vb: WeightView, group: str, kernel: CrossKernel, aggregate: str
) -> np.ndarray:
    n_a, n_b = va.spec.n_layers, vb.spec.n_layers
    prepared_b = [prepare_b(_vectors(vb, j, group), kernel) for j in range(n_b)]
    out = np.zeros((n_a, n_b))
    if aggregate == "rms":
        # Σ corr² = <PᵀP, QᵀQ>: d x d Gram matrices only, no [n_a, n_b] correlation matrix.
        grams_b = torch.stack([(q.T @ q).reshape(-1) for q in prepared_b])
        sizes_b = torch.tensor([float(q.shape[0]) for q in prepared_b])
        for i in range(n_a):
            p = prepare_a(_vectors(va, i, group), kernel)
            sums = grams_b @ (p.T @ p).reshape(-1)
            out[i] = (sums / (p.shape[0] * sizes_b)).clamp_min(0).sqrt().numpy()
        return out
    for i in range(n_a):
        p = prepare_a(_vectors(va, i, group), kernel)
        for j, q in enumerate(prepared_b):
            out[i, j] = _aggregate((p @ q.T).abs(), aggregate)
    return out


def _circuit_similarity(
    va: WeightView,
    vb: WeightView,
    group: str,
    kernels: dict[str, CrossKernel],
    aggregate: str,
) -> np.ndarray:
    left, right, get = CIRCUIT_GROUPS[group]
    kl, kr = kernels[left], kernels[right]
    n_a, n_b = va.spec.n_layers, vb.spec.n_layers
    prepared_b = [prepare_circuits_b(get(vb.layer(j), vb), kl, kr) for j in range(n_b)]
    out = np.zeros((n_a, n_b))
    for i in range(n_a):
        p = prepare_circuits_a(get(va.layer(i), va), kl, kr)
        for j, q in enumerate(prepared_b):
            out[i, j] = _aggregate(circuit_cosines(p, q).abs(), aggregate)
    return out


def head_similarity(
    va: WeightView, vb: WeightView, layer_a: int, layer_b: int, kernels: dict[str, CrossKernel]
) -> Tensor:
    """``[n_heads_a, n_heads_b]``: mean absolute cosine of the heads' QK and OV circuits."""
    sims = []
    for group in _HEAD_GROUPS:
        left, right, get = CIRCUIT_GROUPS[group]
        kl, kr = kernels[left], kernels[right]
        p = prepare_circuits_a(get(va.layer(layer_a), va), kl, kr)
        q = prepare_circuits_b(get(vb.layer(layer_b), vb), kl, kr)
        sims.append(circuit_cosines(p, q).abs())
    return torch.stack(sims).mean(0)


def neuron_similarity(
    va: WeightView, vb: WeightView, layer_a: int, layer_b: int, kernels: dict[str, CrossKernel]
) -> Tensor | None:
    """``[d_mlp_a, d_mlp_b]``: mean absolute correlation of keys, gates and values (or None)."""
    sims = []
    for group in _NEURON_GROUPS:
        if not (_present(va, group) and _present(vb, group)):
            continue
        side = VECTOR_GROUPS[group][0]
        x, y = _vectors(va, layer_a, group), _vectors(vb, layer_b, group)
        sims.append((prepare_a(x, kernels[side]) @ prepare_b(y, kernels[side]).T).abs())
    return torch.stack(sims).mean(0) if sims else None


def align(
    a: Any,
    b: Any,
    *,
    space: str = "embedding",
    groups: Iterable[str] | None = None,
    aggregate: str = "mean_abs",
    shared_tokens: bool = False,
    match_heads: bool = True,
    match_neurons: bool = True,
) -> Alignment:
    """Match the layers (then heads and neurons) of two models through their parameters.

    Args:
        a: Model A: a TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace`` (whose
            read and write bases are used; default ``EmbeddingSpace(model)``: ``W_E`` reads,
            ``W_U`` writes). For models with norms, pass folded views
            (``adapt(model).folded()``) so that norm gains are part of what is compared.
        b: Model B, the same kinds.
        space: ``"embedding"`` (the paper's method) or ``"raw"`` (Pearson correlation of the
            raw d_model coordinates: the baseline; needs equal d_model, ignores vocabularies).
        groups: Parameter groups to use (see ``GROUPS``); default every group both models have.
        aggregate: Per layer pair, over all vector (or head) pairs of a group: ``"mean_abs"``
            (mean absolute correlation, the paper's), ``"max_abs"`` (each vector's best
            absolute correlation, averaged both ways) or ``"rms"`` (root mean square; computed
            from d x d Gram matrices alone, the fastest).
        shared_tokens: Allow different vocabularies, correlating over the tokens whose decoded
            text both share (``provenance["n_tokens"]`` says how many). Beyond the paper.
        match_heads: Match heads within each matched layer pair.
        match_neurons: Match MLP neurons within each matched layer pair.

    Raises:
        VocabularyMismatchError: Different vocabularies without ``shared_tokens=True``.
        InvalidArgumentError: An unknown space, group or aggregate; ``space="raw"`` with
            different d_model.
        BasisError: A space with a transport or a non-linear (``readout``) basis.
    """
    if space not in SPACES:
        raise InvalidArgumentError(f"space must be one of {SPACES}, got {space!r}")
    if aggregate not in AGGREGATES:
        raise InvalidArgumentError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    sa, sb = as_space(a), as_space(b)
    va, vb = sa.view, sb.view
    chosen = _select_groups(va, vb, groups)
    provenance: dict[str, Any] = {
        "model_a": va.spec.model_name,
        "model_b": vb.spec.model_name,
        "weights_a": va.weights,
        "weights_b": vb.weights,
    }
    if space == "raw":
        if va.spec.d_model != vb.spec.d_model:
            raise InvalidArgumentError(
                f"raw-space alignment needs equal d_model, got {va.spec.d_model} and "
                f"{vb.spec.d_model}; use space='embedding'"
            )
        eye = identity_kernel(va.spec.d_model)
        kernels = {"read": eye, "write": eye}
        provenance.update(items="raw d_model coordinates", n_items=va.spec.d_model)
    else:
        _check_space(sa, "A")
        _check_space(sb, "B")
        ids_a, ids_b, n_tokens = token_columns(sa, sb, shared_tokens)
        kernels = {side: _side_kernel(sa, sb, side, ids_a, ids_b) for side in ("read", "write")}
        provenance.update(
            items="shared tokens (by decoded text)" if shared_tokens else "vocabulary",
            n_items=n_tokens,
            n_tokens=n_tokens,
            **{f"{k}_a": v for k, v in sa.describe().items() if k != "transport"},
            **{f"{k}_b": v for k, v in sb.describe().items() if k != "transport"},
        )
    similarity: dict[str, np.ndarray] = {}
    for group in chosen:
        if group in VECTOR_GROUPS:
            side = VECTOR_GROUPS[group][0]
            similarity[group] = _vector_similarity(va, vb, group, kernels[side], aggregate)
        else:
            similarity[group] = _circuit_similarity(va, vb, group, kernels, aggregate)
    similarity["combined"] = np.mean([similarity[g] for g in chosen], axis=0)
    layer_match = tuple(_match(similarity["combined"]))
    head_match: dict[int, tuple[int | None, ...]] = {}
    neuron_match: dict[int, tuple[int | None, ...]] = {}
    for i, j in enumerate(layer_match):
        if j is None:
            continue
        if match_heads:
            head_match[i] = tuple(_match(head_similarity(va, vb, i, j, kernels).numpy()))
        if match_neurons:
            sim = neuron_similarity(va, vb, i, j, kernels)
            if sim is not None:
                neuron_match[i] = tuple(_match(sim.numpy()))
    return Alignment(
        space=space,
        groups=chosen,
        aggregate=aggregate,
        similarity=similarity,
        layer_match=layer_match,
        head_match=head_match,
        neuron_match=neuron_match,
        provenance=provenance,
    )


__all__ = [
    "AGGREGATES",
    "Alignment",
    "GROUPS",
    "SPACES",
    "align",
    "head_similarity",
    "neuron_similarity",
    "shared_token_ids",
    "token_columns",
]
