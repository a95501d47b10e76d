"""FF layers as key-value memories (Geva et al. 2021): keys and gates read, values write."""

from typing import Any

from torch import Tensor

from ..errors import MissingWeightError
from ..results import VectorProjection
from ..space import EmbeddingSpace
from ..tokens import TokenFilter
from ._base import Selection, Source, as_space, check_layer, project_vectors, select
from .spec import register_interpreter


def _mlp(space: EmbeddingSpace, layer: int, name: str) -> Tensor:
    lw = space.view.layer(layer)
    # What the residual receives: W_out times a post-MLP norm gain (Gemma-2/3), if any.
    w = lw.W_out_written if name == "W_out" else getattr(lw, name)
    if w is None:
        kind = "a gated MLP" if name == "W_gate" else "an MLP"
        raise MissingWeightError(
            f"layer {layer} of {space.view.spec.model_name} has no {name} (not {kind})"
        )
    return w


def _ff(
    source: Source,
    basis: dict[str, Any],
    layer: int,
    neurons: Selection,
    k: int,
    token_filter: TokenFilter | None,
    *,
    weight: str,
    side: str,
    name: str,
) -> VectorProjection:
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    w = _mlp(space, layer, weight)
    # Keys/gates are the columns of W_in/W_gate [d_model, d_mlp]; values the rows of W_out.
    vectors = w.T if side == "read" else w
    idx = select(neurons, vectors.shape[0], "neurons")
    return project_vectors(
        space,
        vectors[idx],
        side=side,
        interpreter=name,
        labels=[f"L{layer}.{name}[{i}]" for i in idx],
        layer=layer,
        k=k,
        token_filter=token_filter,
    )


@register_interpreter(
    "ff_key",
    produces="vectors",
    indexed_by="neuron",
    side="read",
    scope="layer",
    requires=("W_in",),
)
def ff_key(
    source: Source,
    *,
    layer: int,
    neurons: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """FF keys: columns of ``W_in`` (the paper's ``k``), read side: which tokens excite neuron i.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        layer: The layer.
        neurons: Neuron ids (an int, a sequence or a 1-D int tensor); None for all.
        k: How many top and bottom tokens to keep per neuron.
        token_filter: Restricts the tokens ranked (see :class:`TokenFilter`).
        **basis: ``read=``, ``write=``, ``transport=``, ``tokenizer=`` when ``source`` is not a
            space (see :func:`as_space`).

    Returns:
        One row per neuron, labelled ``L{layer}.ff_key[{i}]``.
    """
    return _ff(
        source, basis, layer, neurons, k, token_filter, weight="W_in", side="read", name="ff_key"
    )


@register_interpreter(
    "ff_gate",
    produces="vectors",
    indexed_by="neuron",
    side="read",
    scope="layer",
    requires=("W_gate",),
)
def ff_gate(
    source: Source,
    *,
    layer: int,
    neurons: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Gate keys of a gated MLP: columns of ``W_gate``, read side.

    Args and result as :func:`ff_key`; a non-gated MLP raises ``MissingWeightError``.
    """
    return _ff(
        source, basis, layer, neurons, k, token_filter, weight="W_gate", side="read", name="ff_gate"
    )


@register_interpreter(
    "ff_value",
    produces="vectors",
    indexed_by="neuron",
    side="write",
    scope="layer",
    requires=("W_out",),
)
def ff_value(
    source: Source,
    *,
    layer: int,
    neurons: Selection = None,
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
        k,
        token_filter,
        weight="W_out",
        side="write",
        name="ff_value",
    )


__all__ = ["ff_key", "ff_gate", "ff_value"]
