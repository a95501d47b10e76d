"""Any direction a user brings (probe, steering vector, SAE decoder row), biases, embeddings."""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import BasisError, InvalidArgumentError, MissingWeightError
from ..results import VectorProjection
from ..space import EmbeddingSpace, make_basis
from ..tokens import TokenFilter
from ._base import Source, as_space, check_layer, project_vectors, select
from .spec import register_interpreter


@register_interpreter(
    "direction", produces="vectors", indexed_by="free", side="per_call", scope="model"
)
def direction(
    source: Source,
    *,
    vectors: Tensor,
    side: str = "write",
    layer: int | None = None,
    labels: "Sequence[str] | None" = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Project user vectors ``[n, d_model]`` (or one ``[d_model]``) with the ``side`` basis.

    Write-side is right for vectors added to the residual (steering vectors, SAE decoder rows),
    read-side for vectors that read it (linear probes, SAE encoder rows).

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        vectors: ``[n, d_model]`` or ``[d_model]``.
        side: ``"write"`` or ``"read"``.
        layer: Where the vectors live (used by a transport); None for none.
        labels: One label per vector; default ``direction[i]``.
        k: How many top and bottom tokens to keep per vector.
        token_filter: Restricts the tokens ranked.
        **basis: Basis options when ``source`` is not a space (see :func:`as_space`).
    """
    space = as_space(source, **basis)
    if layer is not None:
        layer = check_layer(space, layer)
    vectors = torch.as_tensor(vectors)
    if vectors.ndim == 1:
        vectors = vectors[None]
    d_model = space.view.spec.d_model
    if vectors.ndim != 2 or vectors.shape[1] != d_model:
        raise BasisError(
            f"vectors must have shape [n, d_model={d_model}], got {tuple(vectors.shape)}"
        )
    labels = (
        list(labels) if labels is not None else [f"direction[{i}]" for i in range(len(vectors))]
    )
    if len(labels) != len(vectors):
        raise InvalidArgumentError(f"got {len(labels)} labels for {len(vectors)} vectors")
    return project_vectors(
        space,
        vectors,
        side=side,
        interpreter="direction",
        labels=labels,
        layer=layer,
        k=k,
        token_filter=token_filter,
    )


@register_interpreter(
    "bias",
    produces="vectors",
    indexed_by="parameter",
    side="write",
    scope="layer",
    requires=("b_O|b_out",),
)
def bias(
    source: Source,
    *,
    layer: int,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """The biases a layer adds to the residual stream, ``b_O`` and ``b_out``, write side.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        layer: The layer.
        k: How many top and bottom tokens to keep per bias.
        token_filter: Restricts the tokens ranked.
        **basis: Basis options when ``source`` is not a space (see :func:`as_space`).

    Returns:
        Rows ``L{layer}.b_O`` and ``L{layer}.b_out`` (those the layer has).
    """
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    lw = space.view.layer(layer)
    # A hybrid's mixer layer has no attention, so no b_O (reading it would be refused).
    b_O = lw.b_O if lw.has_attention else None
    named = [(n, b) for n, b in (("b_O", b_O), ("b_out", lw.b_out)) if b is not None]
    if not named:
        raise MissingWeightError(
            f"layer {layer} of {space.view.spec.model_name} has no b_O or b_out"
        )
    return project_vectors(
        space,
        torch.stack([b for _, b in named]),
        side="write",
        interpreter="bias",
        labels=[f"L{layer}.{n}" for n, _ in named],
        layer=layer,
        k=k,
        token_filter=token_filter,
    )


@register_interpreter(
    "embedding", produces="vectors", indexed_by="token", side="per_call", scope="model"
)
def embedding(
    source: Source,
    *,
    tokens: "int | str | Sequence[int | str]",
    matrix: str = "W_E",
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> VectorProjection:
    """Embedding neighbours: the tokens whose embeddings have the highest cosine similarity.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        tokens: Token ids or token strings in the tokenizer's own spelling (e.g. ``"Ġthe"``).
        matrix: ``"W_E"`` compares input embeddings (rows of ``W_E``), ``"W_U"`` output
            embeddings (columns of ``W_U``).
        k: How many nearest and farthest tokens to keep.
        token_filter: Restricts the tokens ranked.
        **basis: Basis options when ``source`` is not a space (only ``tokenizer`` matters).

    Returns:
        Cosine similarities in [-1, 1]; the token itself is included.
    """
    space = as_space(source, **basis)
    view = space.view
    if matrix == "W_E":
        E = view.W_E.float()
    elif matrix == "W_U":
        E = make_basis(view, "W_U").matrix.T
    else:
        raise InvalidArgumentError(f"matrix must be 'W_E' or 'W_U', got {matrix!r}")
    ids = _token_ids(space, tokens, E.shape[0])
    unit = E / E.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cosine = EmbeddingSpace(view, read=unit.T, write=unit.T, tokenizer=space.tokenizer)
    return project_vectors(
        cosine,
        unit[ids],
        side="write",
        interpreter="embedding",
        labels=[f"{matrix}[{i}]" for i in ids],
        layer=None,
        k=k,
        token_filter=token_filter,
        note=f"cosine similarity between {matrix} embeddings",
    )


def _token_ids(space: EmbeddingSpace, tokens: Any, d_vocab: int) -> list[int]:
    items = [tokens] if isinstance(tokens, (int, str)) else list(tokens)
    ids = []
    for t in items:
        if isinstance(t, str):
            if space.tokenizer is None:
                raise BasisError("token strings need a tokenizer; pass token ids or tokenizer=...")
            found = space.tokenizer.convert_tokens_to_ids(t)
            unk = getattr(space.tokenizer, "unk_token_id", None)
            if found is None or (found == unk and t != getattr(space.tokenizer, "unk_token", None)):
                raise BasisError(
                    f"token {t!r} is not in the vocabulary "
                    "(use the tokenizer's own spelling, e.g. 'Ġthe')"
                )
            ids.append(int(found))
        else:
            ids.extend(select(t, d_vocab, "token ids"))
    return ids


__all__ = ["direction", "bias", "embedding"]
