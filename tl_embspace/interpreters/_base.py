"""The shared steps of every interpreter: the space it reads, index selection, projection."""

import difflib
import numbers
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from ..engine import VocabColumns, topk_columns, topk_pairs_both, vocab_columns
from ..errors import FilterError, InvalidArgumentError, OptionError, SelectionError
from ..results import PairProjection, Provenance, VectorProjection
from ..space import Basis, EmbeddingSpace
from ..tokens import TokenFilter, visible, vocab_strings
from .spec import BASIS_OPTIONS

#: What every interpreter reads: a TransformerLens model, a ``WeightView`` or an
#: ``EmbeddingSpace`` (see :func:`as_space`).
Source: TypeAlias = Any

#: An index selection: one id, a sequence or 1-D integer tensor of ids, or None for all.
Selection: TypeAlias = int | Sequence[int] | Tensor | None


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


def vocab_mask(
    space: EmbeddingSpace, token_filter: TokenFilter | None, d_vocab: int
) -> Tensor | None:
    """Boolean allowed-token mask of ``token_filter`` (None when there is no filter)."""
    if token_filter is None:
        return None
    if space.tokenizer is None:
        raise FilterError("token filters need a tokenizer; pass tokenizer=... to EmbeddingSpace")
    return token_filter.mask(space.tokenizer, d_vocab)


# Per basis, its vocabulary columns for the masks it was last used with: a whole-model job ranks
# thousands of vector batches against one basis and filter, so they are checked (finite) and
# gathered once. A basis is rebuilt whenever its model is edited (EmbeddingSpace.basis); the
# tensors' version counters catch in-place edits of a basis built by hand.
_COLUMNS: WeakIdKeyDictionary = WeakIdKeyDictionary()
_MASKS_PER_BASIS = 2


def basis_columns(basis: Basis, mask: Tensor | None, chunk_size: int) -> VocabColumns:
    """The columns of ``basis`` allowed by ``mask``, ready for ``topk_columns`` (cached)."""
    versions = (basis.matrix._version, None if basis.bias is None else basis.bias._version)
    entries: list[tuple[Tensor | None, tuple, VocabColumns]] | None = _COLUMNS.get(basis)
    if entries is None:
        entries = _COLUMNS[basis] = []
    for seen_mask, seen_versions, columns in entries:
        same_mask = (seen_mask is None and mask is None) or (
            seen_mask is not None and mask is not None and torch.equal(seen_mask, mask)
        )
        if same_mask and seen_versions == versions and columns.chunk_size == chunk_size:
            return columns
    columns = vocab_columns(basis.matrix, bias=basis.bias, mask=mask, chunk_size=chunk_size)
    entries.insert(0, (None if mask is None else mask.clone(), versions, columns))
    del entries[_MASKS_PER_BASIS:]
    return columns


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
    """Score ``vectors [n, d_model]`` with ``side``'s basis; keep the top and bottom k tokens."""
    basis = space.basis(side)
    x = basis.prepare(space.carry(vectors, side, layer))
    d_vocab = basis.matrix.shape[1]
    mask = vocab_mask(space, token_filter, d_vocab)
    top, bottom = topk_columns(x, basis_columns(basis, mask, chunk_size), k)
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


def as_space(source: Source, **basis: Any) -> EmbeddingSpace:
    """The :class:`EmbeddingSpace` an interpreter reads: ``source`` itself, or one built from it.

    Args:
        source: A TransformerLens model, a ``WeightView`` (e.g. ``adapt(model).folded()``) or an
            ``EmbeddingSpace`` (used as is).
        **basis: ``read=``, ``write=``, ``transport=``, ``tokenizer=`` for the space built from a
            model or view (see :class:`EmbeddingSpace`); refused with a ready-made space.

    Raises:
        OptionError: an unknown basis option, or basis options together with a space.
    """
    unknown = [key for key in basis if key not in BASIS_OPTIONS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, BASIS_OPTIONS, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise OptionError(
            f"unknown option(s) {', '.join(hints)}; basis options are {', '.join(BASIS_OPTIONS)}"
        )
    if isinstance(source, EmbeddingSpace):
        if basis:
            raise OptionError(
                f"pass either an EmbeddingSpace or basis options, not both: {sorted(basis)}; "
                "build the space with those options instead"
            )
        return source
    return EmbeddingSpace(source, **basis)


def select(indices: Any, size: int, what: str) -> list[int]:
    """Normalise an index selection (None = all) to distinct ids in ``[0, size)``.

    Negative ids count from the end. Bools, boolean masks, floats and strings are refused rather
    than coerced (``True`` would silently mean id 1, ``1.5`` id 1), and so are duplicates.

    Raises:
        OptionError: a bool, a boolean mask, a float or another non-integer.
        InvalidArgumentError: the same id twice.
        SelectionError: an id out of range.
    """
    if indices is None:
        return list(range(size))
    if isinstance(indices, Tensor):
        if indices.dtype == torch.bool:
            raise OptionError(
                f"{what} must be integer ids, not a boolean mask; pass mask.nonzero().flatten()"
            )
        if indices.is_floating_point() or indices.is_complex() or indices.ndim > 1:
            raise OptionError(
                f"{what} must be an int or a 1-D tensor of integer ids, got a "
                f"{indices.dtype} tensor of shape {tuple(indices.shape)}"
            )
        items: list[Any] = indices.reshape(-1).tolist()
    elif isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        items = [indices]
    else:
        items = list(indices)
    out = [_as_index(i, what) for i in items]
    bad = [i for i in out if not -size <= i < size]
    if bad:
        raise SelectionError(f"{what} {bad} out of range (there are {size})")
    out = [i % size for i in out]
    dupes = sorted({i for i in out if out.count(i) > 1})
    if dupes:
        raise InvalidArgumentError(f"{what} selects {dupes} more than once; pass each id once")
    return out


def select_one(index: Any, size: int, what: str) -> int:
    """One integer id in ``[0, size)`` (negative counts from the end); see :func:`select`."""
    if isinstance(index, Tensor) and index.ndim == 0:
        index = index.item()
    if isinstance(index, (bool, str, bytes)) or not isinstance(index, numbers.Integral):
        raise OptionError(f"{what} must be one int, got {index!r} ({type(index).__name__})")
    (out,) = select(index, size, what)
    return out


def _as_index(i: Any, what: str) -> int:
    # bool is an int subclass: True would silently mean id 1.
    if isinstance(i, bool) or not isinstance(i, numbers.Integral):
        raise OptionError(
            f"{what} must be integer ids, got {i!r} ({type(i).__name__}); "
            "bools, floats and strings are not indices"
        )
    return int(i)


def require_positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (bools refused); else an error naming ``name``.

    Raises:
        OptionError: not an int (or a bool).
        InvalidArgumentError: an int below 1 (a negative count would silently slice from the
            end; zero would divide by zero or select nothing).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise InvalidArgumentError(f"{name} must be positive, got {name}={value}")
    return int(value)


def require_finite(what: str, *tensors: Tensor | None) -> None:
    """Refuse weights holding NaN or infinite values, naming them (``what``, e.g. "L3.H1 W_OV").

    The top-k engine checks the tensors it ranks; this covers the paths that reduce weights
    some other way first (an SVD, an argmax), where NaN would give a raw LinAlgError or an
    ordinary-looking wrong number.

    Raises:
        InvalidArgumentError: some tensor holds a NaN or an infinity.
    """
    for t in tensors:
        if t is not None and t.numel() and not bool(torch.isfinite(t).all()):
            raise InvalidArgumentError(
                f"{what} contains NaN or infinite values, so its scores would be meaningless; "
                "check the weights (e.g. an overflowed float16 cast or a corrupted checkpoint)"
            )


def check_layer(space: EmbeddingSpace, layer: int) -> int:
    """``layer`` checked and normalised against the model's number of layers."""
    return select_one(layer, space.view.spec.n_layers, "layer")


__all__ = [
    "Source",
    "Selection",
    "as_space",
    "check_layer",
    "display_vocab",
    "project_pairs",
    "project_vectors",
    "require_finite",
    "require_positive_int",
    "select",
    "select_one",
    "vocab_mask",
]
