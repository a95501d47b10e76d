"""Attention heads: sub-heads (single Q/K/V columns and O rows) and QK/OV token pairs."""

from typing import Any

import torch

from ..results import PairProjection, VectorProjection
from ..tokens import TokenFilter
from ._base import (
    Selection,
    Source,
    as_space,
    check_layer,
    project_pairs,
    project_vectors,
    select,
    select_one,
)
from .spec import register_interpreter

QK_NOTE = (
    "content-only score: positions, rotary rotation, the 1/sqrt(d_head) scale and biases are "
    "ignored"
)
OV_NOTE = "row token i attended to -> column token j promoted; biases ignored"


def _sub_heads(
    source: Source,
    basis: dict[str, Any],
    layer: int,
    heads: Selection,
    k: int,
    token_filter: TokenFilter | None,
    *,
    name: str,
) -> VectorProjection:
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    lw, spec = space.view.layer(layer), space.view.spec
    # K and V sub-heads belong to key/value heads (grouped); Q and O to query heads.
    grouped = name in ("k", "v")
    weights = {"q": lw.W_Q, "k": lw.W_K_grouped, "v": lw.W_V_grouped, "o": lw.W_O_written}[name]
    head_ids = select(
        heads, spec.n_kv_heads if grouped else spec.n_heads, "kv heads" if grouped else "heads"
    )
    # Q/K/V sub-heads are columns of [d_model, d_head] (read side); O sub-heads are rows of
    # [d_head, d_model] (write side).
    side = "write" if name == "o" else "read"
    vectors = torch.cat([weights[h] if side == "write" else weights[h].T for h in head_ids])
    tag = "KV" if grouped else "H"
    labels = [f"L{layer}.{tag}{h}.{name}[{j}]" for h in head_ids for j in range(spec.d_head)]
    return project_vectors(
        space,
        vectors,
        side=side,
        interpreter=name,
        labels=labels,
        layer=layer,
        k=k,
        token_filter=token_filter,
        note="K/V sub-heads are indexed by key/value head" if grouped else "",
    )


@register_interpreter(
    "q", produces="vectors", indexed_by="head", side="read", scope="layer", requires=("W_Q",)
)
def query_subheads(
    source: Source,
    *,
    layer: int,
    heads: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Query sub-heads: column j of ``W_Q[h]`` (read side); ``heads`` are query heads.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        layer: The layer.
        heads: Query head ids; None for all. Every head gives ``d_head`` rows.
        k: How many top and bottom tokens to keep per sub-head.
        token_filter: Restricts the tokens ranked.
        **basis: Basis options when ``source`` is not a space (see :func:`as_space`).

    Returns:
        Rows labelled ``L{layer}.H{h}.q[{j}]``, head-major.
    """
    return _sub_heads(source, basis, layer, heads, k, token_filter, name="q")


@register_interpreter(
    "k",
    produces="vectors",
    indexed_by="kv_head",
    side="read",
    scope="layer",
    requires=("W_K_grouped",),
)
def key_subheads(
    source: Source,
    *,
    layer: int,
    heads: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Key sub-heads: column j of ``W_K[g]`` (read side); ``heads`` are key/value heads.

    Args as :func:`query_subheads`; rows are labelled ``L{layer}.KV{g}.k[{j}]``.
    """
    return _sub_heads(source, basis, layer, heads, k, token_filter, name="k")


@register_interpreter(
    "v",
    produces="vectors",
    indexed_by="kv_head",
    side="read",
    scope="layer",
    requires=("W_V_grouped",),
)
def value_subheads(
    source: Source,
    *,
    layer: int,
    heads: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Value sub-heads: column j of ``W_V[g]`` (read side); ``heads`` are key/value heads.

    Args as :func:`query_subheads`; rows are labelled ``L{layer}.KV{g}.v[{j}]``.
    """
    return _sub_heads(source, basis, layer, heads, k, token_filter, name="v")


@register_interpreter(
    "o", produces="vectors", indexed_by="head", side="write", scope="layer", requires=("W_O",)
)
def output_subheads(
    source: Source,
    *,
    layer: int,
    heads: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Output sub-heads: row j of ``W_O[h]`` (write side); ``heads`` are query heads.

    Args as :func:`query_subheads`; rows are labelled ``L{layer}.H{h}.o[{j}]``.
    """
    return _sub_heads(source, basis, layer, heads, k, token_filter, name="o")


@register_interpreter(
    "qk_pairs",
    produces="pairs",
    indexed_by="head",
    side="read×read",
    scope="head",
    requires=("W_Q",),
)
def qk_pairs(
    source: Source,
    *,
    layer: int,
    head: int,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> PairProjection:
    """Token pairs of ``Bᵣᵀ W_Q W_Kᵀ Bᵣ`` (read basis on both sides): query token i, key token j.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        layer: The layer.
        head: One query head.
        k: How many top and bottom pairs to keep.
        token_filter: Restricts both tokens of a pair (``exclude_same`` drops ``(t, t)``).
        **basis: Basis options when ``source`` is not a space (see :func:`as_space`).
    """
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    lw = space.view.layer(layer)
    h = select_one(head, space.view.spec.n_heads, "head")
    return project_pairs(
        space,
        # With q/k-norm gains folded in (Qwen3, Gemma-3); identical to W_Q/W_K without them.
        lw.W_Q_qk[h],
        lw.W_K_qk[h],
        left_side="read",
        right_side="read",
        interpreter="qk_pairs",
        label=f"L{layer}.H{h}.qk",
        layer=layer,
        head=h,
        k=k,
        token_filter=token_filter,
        note=QK_NOTE,
    )


@register_interpreter(
    "ov_pairs",
    produces="pairs",
    indexed_by="head",
    side="read×write",
    scope="head",
    requires=("W_O",),
)
def ov_pairs(
    source: Source,
    *,
    layer: int,
    head: int,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> PairProjection:
    """Token pairs of ``Bᵣᵀ W_V W_O B_w``: attending to token i promotes token j.

    Args as :func:`qk_pairs`.
    """
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    lw = space.view.layer(layer)
    h = select_one(head, space.view.spec.n_heads, "head")
    return project_pairs(
        space,
        lw.W_V[h],
        lw.W_O_written[h].T,  # times a post-attention norm gain (Gemma-2/3), if any
        left_side="read",
        right_side="write",
        interpreter="ov_pairs",
        label=f"L{layer}.H{h}.ov",
        layer=layer,
        head=h,
        k=k,
        token_filter=token_filter,
        note=OV_NOTE,
    )


__all__ = [
    "query_subheads",
    "key_subheads",
    "value_subheads",
    "output_subheads",
    "qk_pairs",
    "ov_pairs",
]
