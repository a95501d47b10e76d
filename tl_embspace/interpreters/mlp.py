"""FF layers as key-value memories (Geva et al. 2021): keys and gates read, values write."""

from collections.abc import Sequence

from torch import Tensor

from ..errors import MissingWeightError
from ..results import VectorProjection
from ..space import EmbeddingSpace
from ..tokens import TokenFilter
from ._base import interpreters, project_vectors, select


def _mlp(space: EmbeddingSpace, layer: int, name: str) -> Tensor:
    w = getattr(space.view.layer(layer), name)
    if w is None:
        kind = "a gated MLP" if name == "W_gate" else "an MLP"
        raise MissingWeightError(f"layer {layer} of {space.view.spec.model_name} has no {name} (not {kind})")
    return w


def _ff(space, layer, neurons, k, token_filter, *, weight: str, side: str, name: str) -> VectorProjection:
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


@interpreters.register("ff_key")
def ff_key(space: EmbeddingSpace, *, layer: int, neurons: "int | Sequence[int] | None" = None, k: int = 20,
           token_filter: TokenFilter | None = None) -> VectorProjection:
    """FF keys: columns of ``W_in`` (the paper's ``k``), read side: which tokens excite neuron i."""
    return _ff(space, layer, neurons, k, token_filter, weight="W_in", side="read", name="ff_key")


@interpreters.register("ff_gate")
def ff_gate(space: EmbeddingSpace, *, layer: int, neurons: "int | Sequence[int] | None" = None, k: int = 20,
            token_filter: TokenFilter | None = None) -> VectorProjection:
    """Gate keys of a gated MLP: columns of ``W_gate``, read side."""
    return _ff(space, layer, neurons, k, token_filter, weight="W_gate", side="read", name="ff_gate")


@interpreters.register("ff_value")
def ff_value(space: EmbeddingSpace, *, layer: int, neurons: "int | Sequence[int] | None" = None, k: int = 20,
             token_filter: TokenFilter | None = None) -> VectorProjection:
    """FF values: rows of ``W_out`` (the paper's ``v``), write side: what neuron i promotes."""
    return _ff(space, layer, neurons, k, token_filter, weight="W_out", side="write", name="ff_value")
