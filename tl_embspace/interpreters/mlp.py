"""FF layers as key-value memories (Geva et al. 2021): keys and gates read, values write.

Sparse mixture-of-experts layers (``LayerWeights.is_moe``) have one MLP per expert, plus a shared
expert in some families: each expert's neurons are keys and values of their own. ``expert=``
picks them: an expert id, ``"shared"``, or None for every routed expert then the shared one
(rows labelled ``L{layer}.E{e}.ff_value[{i}]`` / ``L{layer}.shared.ff_value[{i}]``, with
``expert`` and ``neuron`` extras; ``expert`` is -1 for the shared expert). On a dense layer
``expert=`` is refused. The router itself is read by the ``router`` interpreter.
"""

from typing import Any

import torch
from torch import Tensor

from ..adapters import LayerWeights, MLPWeights
from ..errors import MissingWeightError, OptionError, SelectionError
from ..results import VectorProjection
from ..space import EmbeddingSpace
from ..tokens import TokenFilter
from ._base import (
    Selection,
    Source,
    as_space,
    check_layer,
    project_vectors,
    select,
    select_one,
)
from .spec import register_interpreter

#: ``expert=``: one routed expert's id, "shared" for the shared expert, or None for all.
Expert = int | str | None

SHARED = "shared"


def _matrix(mlp: Any, name: str, written: bool) -> Tensor | None:
    # What the residual receives: W_out times a post-MLP norm gain (Gemma-2/3), if any.
    if name == "W_out" and written and isinstance(mlp, LayerWeights):
        return mlp.W_out_written
    return getattr(mlp, name)


def _mlp(space: EmbeddingSpace, layer: int, name: str) -> Tensor:
    lw = space.view.layer(layer)
    w = _matrix(lw, name, written=True)
    if w is None:
        kind = "a gated MLP" if name == "W_gate" else "an MLP"
        raise MissingWeightError(
            f"layer {layer} of {space.view.spec.model_name} has no {name} (not {kind})"
        )
    return w


def _experts(
    space: EmbeddingSpace, layer: int, expert: Expert
) -> list[tuple[str, int, MLPWeights]]:
    """(label prefix, expert id, MLP) of the selected experts of a sparse-MoE layer.

    Raises:
        OptionError: ``expert`` is neither an int, "shared" nor None.
        SelectionError: An expert id out of range, or "shared" where there is no shared expert.
    """
    lw = space.view.layer(layer)
    assert lw.experts is not None
    n = len(lw.experts)
    if expert is None:
        chosen = [(f"E{e}", e, m) for e, m in enumerate(lw.experts)]
        if lw.shared_expert is not None:
            chosen.append((SHARED, -1, lw.shared_expert))
        return chosen
    if isinstance(expert, str):
        if expert != SHARED:
            raise OptionError(f"expert must be an int, {SHARED!r} or None, got {expert!r}")
        if lw.shared_expert is None:
            raise SelectionError(
                f"layer {layer} of {space.view.spec.model_name} has no shared expert"
            )
        return [(SHARED, -1, lw.shared_expert)]
    e = select_one(expert, n, "expert")
    return [(f"E{e}", e, lw.experts[e])]


def _ff(
    source: Source,
    basis: dict[str, Any],
    layer: int,
    neurons: Selection,
    expert: Expert,
    k: int,
    token_filter: TokenFilter | None,
    *,
    weight: str,
    side: str,
    name: str,
) -> VectorProjection:
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    lw = space.view.layer(layer)
    if not lw.is_moe:
        if expert is not None:
            raise SelectionError(
                f"expert={expert!r}: layer {layer} of {space.view.spec.model_name} is a dense "
                "MLP, not a sparse mixture of experts; leave expert out"
            )
        w = _mlp(space, layer, weight)
        # Keys/gates are the columns of W_in/W_gate [d_model, d_mlp]; values the rows of W_out.
        vectors = w.T if side == "read" else w
        idx = select(neurons, vectors.shape[0], "neurons")
        labels = [f"L{layer}.{name}[{i}]" for i in idx]
        return project_vectors(
            space,
            vectors[idx],
            side=side,
            interpreter=name,
            labels=labels,
            layer=layer,
            k=k,
            token_filter=token_filter,
        )
    rows: list[Tensor] = []
    labels, experts, ids = [], [], []
    for prefix, e, mlp in _experts(space, layer, expert):
        w = _matrix(mlp, weight, written=False)
        if w is None:
            raise MissingWeightError(
                f"layer {layer} of {space.view.spec.model_name}: expert {prefix} has no {weight}"
            )
        if weight == "W_out" and lw.ln2_post_w is not None:
            # What the residual receives: a post-MLP norm (FlexOlmo) scales the experts' sum.
            w = w * lw.ln2_post_w.to(w.dtype)
        vectors = w.T if side == "read" else w
        idx = select(neurons, vectors.shape[0], "neurons")
        rows.append(vectors[idx].float())
        labels += [f"L{layer}.{prefix}.{name}[{i}]" for i in idx]
        experts += [e] * len(idx)
        ids += idx
    return project_vectors(
        space,
        torch.cat(rows),
        side=side,
        interpreter=name,
        labels=labels,
        layer=layer,
        k=k,
        token_filter=token_filter,
        extras={"expert": experts, "neuron": ids},
        note="sparse MoE: each expert's neurons, labelled by expert (expert -1: shared expert)",
    )


@register_interpreter(
    "ff_key",
    produces="vectors",
    indexed_by="neuron",
    side="read",
    scope="layer",
    requires=("W_in|experts",),
)
def ff_key(
    source: Source,
    *,
    layer: int,
    neurons: Selection = None,
    expert: Expert = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """FF keys: columns of ``W_in`` (the paper's ``k``), read side: which tokens excite neuron i.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        layer: The layer.
        neurons: Neuron ids (an int, a sequence or a 1-D int tensor); None for all (within
            each selected expert on a sparse-MoE layer).
        expert: Sparse-MoE layers only: an expert id, ``"shared"``, or None for every expert
            (routed experts in order, then the shared one); refused on a dense layer.
        k: How many top and bottom tokens to keep per neuron.
        token_filter: Restricts the tokens ranked (see :class:`TokenFilter`).
        **basis: ``read=``, ``write=``, ``transport=``, ``tokenizer=`` when ``source`` is not a
            space (see :func:`as_space`).

    Returns:
        One row per neuron, labelled ``L{layer}.ff_key[{i}]`` (``L{layer}.E{e}.ff_key[{i}]`` on
        a sparse-MoE layer, with ``expert`` and ``neuron`` extras).
    """
    return _ff(
        source,
        basis,
        layer,
        neurons,
        expert,
        k,
        token_filter,
        weight="W_in",
        side="read",
        name="ff_key",
    )


@register_interpreter(
    "ff_gate",
    produces="vectors",
    indexed_by="neuron",
    side="read",
    scope="layer",
    requires=("W_gate|experts",),
)
def ff_gate(
    source: Source,
    *,
    layer: int,
    neurons: Selection = None,
    expert: Expert = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Gate keys of a gated MLP: columns of ``W_gate``, read side.

    Args and result as :func:`ff_key`; a non-gated MLP raises ``MissingWeightError``.
    """
    return _ff(
        source,
        basis,
        layer,
        neurons,
        expert,
        k,
        token_filter,
        weight="W_gate",
        side="read",
        name="ff_gate",
    )


@register_interpreter(
    "ff_value",
    produces="vectors",
    indexed_by="neuron",
    side="write",
    scope="layer",
    requires=("W_out|experts",),
)
def ff_value(
    source: Source,
    *,
    layer: int,
    neurons: Selection = None,
    expert: Expert = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """FF values: rows of ``W_out`` (the paper's ``v``), write side: what neuron i promotes.

    Args and result as :func:`ff_key` (rows labelled ``L{layer}.ff_value[{i}]``).
    """
    return _ff(
        source,
        basis,
        layer,
        neurons,
        expert,
        k,
        token_filter,
        weight="W_out",
        side="write",
        name="ff_value",
    )


@register_interpreter(
    "router",
    produces="vectors",
    indexed_by="expert",
    side="read",
    scope="layer",
    requires=("W_router",),
)
def router(
    source: Source,
    *,
    layer: int,
    experts: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Router columns of a sparse-MoE layer, read side: which tokens route to expert e.

    Column ``e`` of ``W_router [d_model, n_experts]`` is the direction whose dot product with the
    MLP's (normalised) input is expert ``e``'s routing logit, so its top tokens are those whose
    directions raise that logit. Routing is a softmax over all experts, so what selects an expert
    is its column relative to the others' (the note says so); a selection-only bias
    (Ernie-4.5) and the top-k cut are not part of a column. With every expert selected, the
    shared expert's sigmoid gate (Qwen2-MoE) follows as one more row, ``L{layer}.shared_gate``.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        layer: A sparse-MoE layer (a dense one raises ``MissingWeightError``).
        experts: Expert ids (an int, a sequence or a 1-D int tensor); None for all.
        k: How many top and bottom tokens to keep per expert.
        token_filter: Restricts the tokens ranked (see :class:`TokenFilter`).
        **basis: ``read=``, ``write=``, ``transport=``, ``tokenizer=`` when ``source`` is not a
            space (see :func:`as_space`).

    Returns:
        One row per expert, labelled ``L{layer}.router[{e}]``, with an ``expert`` extra (-1 for
        the shared expert's gate).
    """
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    lw = space.view.layer(layer)
    if lw.W_router is None:
        raise MissingWeightError(
            f"layer {layer} of {space.view.spec.model_name} has no router (a dense MLP, not a "
            "sparse mixture of experts)"
        )
    columns = lw.W_router.T.float()
    idx = select(experts, columns.shape[0], "experts")
    rows, labels, ids = [columns[idx]], [f"L{layer}.router[{e}]" for e in idx], list(idx)
    if experts is None and lw.W_shared_gate is not None:
        rows.append(lw.W_shared_gate.T.float())
        labels.append(f"L{layer}.shared_gate")
        ids.append(-1)
    return project_vectors(
        space,
        torch.cat(rows),
        side="read",
        interpreter="router",
        labels=labels,
        layer=layer,
        k=k,
        token_filter=token_filter,
        extras={"expert": ids},
        note=(
            "routing logit per expert; routing softmaxes over all experts, so an expert is "
            "chosen by its column relative to the others'"
        ),
    )


__all__ = ["ff_key", "ff_gate", "ff_value", "router"]
