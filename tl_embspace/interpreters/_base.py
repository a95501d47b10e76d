"""The interpreter registry and the shared projection step every interpreter ends with."""

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from ..engine import topk_pairs_both, topk_vocab
from ..errors import FilterError
from ..registry import Registry
from ..results import PairProjection, Provenance, VectorProjection
from ..space import EmbeddingSpace
from ..tokens import TokenFilter, vocab_strings, visible

Interpreter = Callable[..., Any]

#: Name-keyed registry of interpreters. Third-party code registers with
#: ``@interpreters.register("my_name")`` on a function ``f(space, **options) -> result``.
interpreters: Registry[Interpreter] = Registry("interpreter")


_DISPLAY: "weakref.WeakKeyDictionary[Any, dict[int, tuple[str, ...]]]" = weakref.WeakKeyDictionary()


def display_vocab(space: EmbeddingSpace, d_vocab: int) -> tuple[str, ...]:
    """Visible display strings of every token id, built once per tokenizer and vocabulary size.

    Every result holds a reference to this one tuple, so a whole-model run does not rebuild
    (or copy) 49k strings per interpreter call.
    """
    tok = space.tokenizer
    if tok is None:
        return tuple(f"<id {i}>" for i in range(d_vocab))
    per_size = _DISPLAY.setdefault(tok, {})
    if d_vocab not in per_size:
        per_size[d_vocab] = tuple(visible(s) for s in vocab_strings(tok, d_vocab))
    return per_size[d_vocab]


def vocab_mask(space: EmbeddingSpace, token_filter: TokenFilter | None, d_vocab: int) -> Tensor | None:
    """Boolean allowed-token mask of ``token_filter`` (None when there is no filter)."""
    if token_filter is None:
        return None
    if space.tokenizer is None:
        raise FilterError("token filters need a tokenizer; pass tokenizer=... to EmbeddingSpace")
    return token_filter.mask(space.tokenizer, d_vocab)


def project_vectors(
    space: EmbeddingSpace,
    vectors: Tensor,
    *,
    side: str,
    interpreter: str,
    labels: Sequence[str],
    layer: int | None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    extras: dict[str, list] | None = None,
    note: str = "",
    chunk_size: int = 8192,
) -> VectorProjection:
    """Score ``vectors [n, d_model]`` against the vocabulary with ``side``'s basis; keep top/bottom k."""
    basis = space.basis(side)
    x = basis.prepare(space.carry(vectors, side, layer))
    d_vocab = basis.matrix.shape[1]
    mask = vocab_mask(space, token_filter, d_vocab)
    top, bottom = topk_vocab(x, basis.matrix, k, bias=basis.bias, mask=mask, chunk_size=chunk_size)
    return VectorProjection(
        interpreter=interpreter,
        labels=tuple(labels),
        layer=layer,
        side=side,
        basis=basis.name,
        top_ids=top.indices,
        top_scores=top.values,
        bottom_ids=bottom.indices,
        bottom_scores=bottom.values,
        vocab=display_vocab(space, d_vocab),
        provenance=Provenance.of(space),
        extras=extras or {},
        note=note,
    )


def project_pairs(
    space: EmbeddingSpace,
    left: Tensor,
    right: Tensor,
    *,
    left_side: str,
    right_side: str,
    interpreter: str,
    label: str,
    layer: int,
    head: int,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    note: str = "",
) -> PairProjection:
    """Top/bottom entries of ``(Bₗᵀ left)(Bᵣᵀ right)ᵀ`` for ``left, right [d_model, rank]``.

    ``left`` and ``right`` are the two factors of a d_model x d_model matrix ``left @ rightᵀ``
    (e.g. ``W_Q`` and ``W_K`` of a head); the vocab x vocab product is never built.
    """
    lb, rb = space.basis(left_side), space.basis(right_side)
    left_vocab = space.vocab_factor(left, left_side, layer, purpose=interpreter)  # [d_vocab, rank]
    right_vocab = space.vocab_factor(right, right_side, layer, purpose=interpreter)
    d_vocab = left_vocab.shape[0]
    mask = vocab_mask(space, token_filter, d_vocab)
    exclude_same = bool(token_filter is not None and token_filter.exclude_same)
    top, bottom = topk_pairs_both(
        left_vocab, right_vocab, k, row_mask=mask, col_mask=mask, exclude_same=exclude_same
    )
    return PairProjection(
        interpreter=interpreter,
        label=label,
        layer=layer,
        head=head,
        left_basis=lb.name,
        right_basis=rb.name,
        top=(top.values, top.rows, top.cols),
        bottom=(bottom.values, bottom.rows, bottom.cols),
        vocab=display_vocab(space, d_vocab),
        provenance=Provenance.of(space),
        note=note,
    )


def as_space(model_or_space: Any, **space_kwargs: Any) -> EmbeddingSpace:
    """An EmbeddingSpace from a model/view (with ``space_kwargs``) or the given space."""
    if isinstance(model_or_space, EmbeddingSpace):
        if space_kwargs:
            raise TypeError(f"pass either an EmbeddingSpace or basis options, not both: {sorted(space_kwargs)}")
        return model_or_space
    return EmbeddingSpace(model_or_space, **space_kwargs)


def select(indices: "int | Sequence[int] | Tensor | None", size: int, what: str) -> list[int]:
    """Normalise an index selection (None = all) and check its range."""
    if indices is None:
        return list(range(size))
    if isinstance(indices, int):
        indices = [indices]
    out = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
    bad = [i for i in out if not -size <= i < size]
    if bad:
        raise IndexError(f"{what} {bad} out of range (there are {size})")
    return [i % size for i in out]


def interpret(name: str, model_or_space: Any, **options: Any) -> Any:
    """Run the interpreter ``name`` on a model, weight view or EmbeddingSpace.

    Basis options (``read=``, ``write=``, ``transport=``, ``tokenizer=``) build the space when a
    model is passed; the other options go to the interpreter.
    """
    space_keys = {"read", "write", "transport", "tokenizer"}
    space_kwargs = {k: options.pop(k) for k in list(options) if k in space_keys}
    return interpreters[name](as_space(model_or_space, **space_kwargs), **options)


__all__ = ["interpreters", "interpret", "project_vectors", "project_pairs", "select"]
