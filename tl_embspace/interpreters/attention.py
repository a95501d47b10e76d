"""Attention heads: sub-heads (single Q/K/V columns and O rows) and QK/OV token pairs."""

from collections.abc import Sequence

import torch

from ..results import PairProjection, VectorProjection
from ..space import EmbeddingSpace
from ..tokens import TokenFilter
from ._base import interpreters, project_pairs, project_vectors, select

QK_NOTE = (
    "content-only score: positions, rotary rotation, the 1/sqrt(d_head) scale and biases are ignored"
)
OV_NOTE = "row token i attended to -> column token j promoted; biases ignored"


def _sub_heads(space, layer, heads, k, token_filter, *, name: str) -> VectorProjection:
    lw, spec = space.view.layer(layer), space.view.spec
    # K and V sub-heads belong to key/value heads (grouped); Q and O to query heads.
    grouped = name in ("k", "v")
    weights = {"q": lw.W_Q, "k": lw.W_K_grouped, "v": lw.W_V_grouped, "o": lw.W_O}[name]
    head_ids = select(heads, spec.n_kv_heads if grouped else spec.n_heads, "kv heads" if grouped else "heads")
    # Q/K/V sub-heads are columns of [d_model, d_head] (read side); O sub-heads are rows of
    # [d_head, d_model] (write side).
    side = "write" if name == "o" else "read"
    vectors = torch.cat([weights[h] if side == "write" else weights[h].T for h in head_ids])
    tag = "KV" if grouped else "H"
    labels = [f"L{layer}.{tag}{h}.{name}[{j}]" for h in head_ids for j in range(spec.d_head)]
    return project_vectors(
        space, vectors, side=side, interpreter=name, labels=labels, layer=layer, k=k, token_filter=token_filter,
        note="K/V sub-heads are indexed by key/value head" if grouped else "",
    )


def _register_sub_head(name: str, doc: str) -> None:
    def interpreter(space: EmbeddingSpace, *, layer: int, heads: "int | Sequence[int] | None" = None,
                    k: int = 20, token_filter: TokenFilter | None = None) -> VectorProjection:
        return _sub_heads(space, layer, heads, k, token_filter, name=name)

    interpreter.__name__ = interpreter.__qualname__ = f"sub_head_{name}"
    interpreter.__doc__ = doc
    interpreters.add(name, interpreter)


_register_sub_head("q", "Query sub-heads: column j of W_Q[h] (read side). ``heads`` are query heads.")
_register_sub_head("k", "Key sub-heads: column j of W_K[g] (read side). ``heads`` are key/value heads.")
_register_sub_head("v", "Value sub-heads: column j of W_V[g] (read side). ``heads`` are key/value heads.")
_register_sub_head("o", "Output sub-heads: row j of W_O[h] (write side). ``heads`` are query heads.")


@interpreters.register("qk_pairs")
def qk_pairs(space: EmbeddingSpace, *, layer: int, head: int, k: int = 20,
             token_filter: TokenFilter | None = None) -> PairProjection:
    """Token pairs of ``Bᵣᵀ W_Q W_Kᵀ Bᵣ`` (read basis on both sides): query token i, key token j."""
    lw = space.view.layer(layer)
    (h,) = select(head, space.view.spec.n_heads, "heads")
    return project_pairs(
        space, lw.W_Q[h], lw.W_K[h], left_side="read", right_side="read", interpreter="qk_pairs",
        label=f"L{layer}.H{h}.qk", layer=layer, head=h, k=k, token_filter=token_filter, note=QK_NOTE,
    )


@interpreters.register("ov_pairs")
def ov_pairs(space: EmbeddingSpace, *, layer: int, head: int, k: int = 20,
             token_filter: TokenFilter | None = None) -> PairProjection:
    """Token pairs of ``Bᵣᵀ W_V W_O B_w``: attending to token i promotes token j."""
    lw = space.view.layer(layer)
    (h,) = select(head, space.view.spec.n_heads, "heads")
    return project_pairs(
        space, lw.W_V[h], lw.W_O[h].T, left_side="read", right_side="write", interpreter="ov_pairs",
        label=f"L{layer}.H{h}.ov", layer=layer, head=h, k=k, token_filter=token_filter, note=OV_NOTE,
    )
