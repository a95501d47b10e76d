"""Streamed, exact top-k over vocabulary scores and over factored token-pair products.

This module knows no models, only tensors. Two problems are solved here:

* :func:`topk_vocab`: for each vector ``v``, the ``k`` best and worst tokens by ``v @ matrix``
  (+ ``bias``), streaming over vocabulary chunks so memory never grows with the vocabulary.
* :func:`topk_pairs` / :func:`topk_pairs_both`: the ``k`` largest (or smallest) entries of a
  factored ``[d_vocab, d_vocab]`` matrix ``left @ right.T`` (QK and OV circuits in embedding
  space), without ever building it, using an exact norm-based pruning scheme and, on CPUs
  with fast bfloat16, an exact bfloat16 screen before float32 scoring.

All scores are accumulated in float32 on the inputs' device. Ties are broken deterministically:
among equal scores the lower token id (for pairs: the lower ``(row, col)``) comes first, for the
best and the worst lists alike.
"""

import functools
import math
import time
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ._linalg import single_threaded
from ._types import BasisMatrix, Vectors, VocabMask, VocabScores
from .errors import FilterError, InvalidArgumentError, OptionError

# Largest score block (rows x vocabulary columns) that topk_vocab materialises at once:
# 2**25 float32 entries = 128 MiB, e.g. 4096 rows x 8192 tokens.
_MAX_BLOCK_ELEMENTS = 2**25

# Pruned pair search (see _Pruner): rows and columns are grouped in slabs of these sizes with a
# similar leading coordinate; smaller slabs give tighter bounds but more, smaller operations.
# A block of rows grows while it scores at most _PRUNE_WASTE times the entries its rows need.
# Tuned on SmolLM2-135M QK/OV circuits (benchmarks/bench_pairs.py).
_PRUNE_ROW_SLAB = 2048
_PRUNE_COL_SLAB = 1024
_PRUNE_WASTE = 2.0
# Rows x columns scored up front to give each pool a starting threshold (see _seed).
_PRUNE_SEED = 512
# The bfloat16 screen (see _Screen) scores blocks in tiles of this many columns (4 MB of
# bfloat16 for 1,024 rows: the tile stays in cache while it is reduced) and reduces each
# tile's scores in groups of this many rows.
_SCREEN_TILE = 2048
_SCREEN_GROUP = 64


@dataclass(frozen=True)
class TopK:
    """The ``k`` best (or worst) vocabulary entries of each row.

    Attributes:
        values: ``[n, k]`` float32 scores; descending for a top list, ascending (most negative
            first) for a bottom list.
        indices: ``[n, k]`` int64 vocabulary ids; among equal scores the lower id comes first.
    """

    values: Float[Tensor, "n k"]
    indices: Int[Tensor, "n k"]


@dataclass(frozen=True)
class PairTopK:
    """The ``k`` largest (or smallest) entries of a factored matrix ``left @ right.T``.

    Attributes:
        values: ``[k]`` float32 scores; descending for the largest entries, ascending for the
            smallest. Among equal scores the lower ``(row, col)`` comes first.
        rows: ``[k]`` int64 row ids (ids of ``left``'s rows, e.g. source tokens).
        cols: ``[k]`` int64 column ids (ids of ``right``'s rows, e.g. destination tokens).
        scored: How many pair scores were actually computed to find them, in bfloat16 (the
            screen) or float32 (the dense product would compute ``n_rows * n_cols``); a
            diagnostic of how much the pruning saved.
    """

    values: Float[Tensor, " k"]
    rows: Int[Tensor, " k"]
    cols: Int[Tensor, " k"]
    scored: int = 0


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise OptionError(f"k must be an int, got {type(k).__name__}")
    if k <= 0:
        raise InvalidArgumentError(f"k must be positive, got k={k}")


def _check_finite(name: str, tensor: Tensor) -> None:
    if tensor.numel() and not bool(torch.isfinite(tensor).all()):
        raise InvalidArgumentError(
            f"{name} contains NaN or infinite values; scores would be meaningless. "
            f"Check the weights (e.g. an overflowed float16 cast) before ranking."
        )


def _check_same_device(**tensors: Tensor | None) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        raise InvalidArgumentError(
            f"tensors are on different devices: {devices}; move them to one device"
        )


def _rank_order(values: Tensor, ids: Tensor, largest: bool) -> Tensor:
    """Permutation along the last axis ordering by (value best-first, id ascending).

    Two stable sorts give the lexicographic order, whatever order ``ids`` come in.
    """
    by_id = torch.argsort(ids, dim=-1, stable=True)
    by_value = torch.argsort(values.gather(-1, by_id), dim=-1, descending=largest, stable=True)
    return by_id.gather(-1, by_value)


def _topk_rows(
    scores: Float[Tensor, "m c"], ids: Int[Tensor, " c"], k: int, largest: bool
) -> tuple[Float[Tensor, "m kk"], Int[Tensor, "m kk"]]:
    """Exact per-row top-k (or bottom-k) of ``scores``, ties going to the lower id.

    ``torch.topk`` returns the right k-th value but an arbitrary subset of the entries tied with
    it. Rows where more entries reach the k-th value than fit are re-selected exactly: every
    strictly better entry, plus the lowest-id tied ones. Returns ``min(k, c)`` entries per row,
    ordered by (score best-first, id ascending), with their ids taken from ``ids``.
    """
    kk = min(k, scores.shape[1])
    # One entry more than needed tells the ambiguous rows without another pass over the scores:
    # more than kk entries reach the k-th value exactly when the (kk+1)-th equals it.
    extra = min(kk + 1, scores.shape[1])
    values, pos = torch.topk(scores, extra, dim=1, largest=largest, sorted=True)
    if extra > kk:
        ambiguous = values[:, kk] == values[:, kk - 1]
        values, pos = values[:, :kk].contiguous(), pos[:, :kk].contiguous()
    else:
        ambiguous = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
    kth = values[:, -1:]
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().squeeze(1)
        sub, sub_kth = scores[rows], kth[rows]
        better = (sub > sub_kth) if largest else (sub < sub_kth)
        tied = sub == sub_kth
        need = kk - better.sum(dim=1, keepdim=True)  # >= 1: the k-th value itself is tied
        no_id = torch.iinfo(torch.int64).max
        tied_ids = torch.where(tied, ids, no_id)
        lowest = torch.topk(tied_ids, kk, dim=1, largest=False, sorted=True).values
        cutoff = lowest.gather(1, need - 1)
        chosen = better | (tied & (ids <= cutoff))  # exactly kk per row
        new_pos = chosen.nonzero()[:, 1].view(-1, kk)
        pos[rows] = new_pos
        values[rows] = sub.gather(1, new_pos)
    out_ids = ids[pos]
    order = _rank_order(values, out_ids, largest)
    return values.gather(1, order), out_ids.gather(1, order)


# ----------------------------------------------------------------------------------------------
# Vocabulary top-k
# ----------------------------------------------------------------------------------------------


def _scores_block(vectors: Tensor, columns: Tensor, buffer: Tensor | None = None) -> Tensor:
    """One float32 score block; every product in this module goes through here.

    Kept as a single function so tests can watch the largest block ever materialised.
    ``buffer`` (a flat float32 tensor of at least ``rows x columns`` entries) receives the
    block: reusing one buffer spares the allocator a fresh block per product, which on a CPU
    costs more than the scan that follows (the new pages are zeroed on first touch).
    """
    if buffer is None:
        return vectors @ columns
    return torch.matmul(
        vectors, columns, out=_buffer_view(buffer, vectors.shape[0], columns.shape[1])
    )


def _buffer_view(buffer: Tensor, rows: int, cols: int) -> Tensor:
    """The first ``rows x cols`` entries of a flat (or contiguous) buffer, as a matrix."""
    return buffer.view(-1)[: rows * cols].view(rows, cols)


def _score_buffer(
    rows: int, cols: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> Tensor:
    """A flat buffer for score blocks of up to ``rows x cols`` entries (float32 by default)."""
    return torch.empty(rows * cols, device=device, dtype=dtype)


def scores_vocab(
    vectors: Vectors, matrix: BasisMatrix, *, bias: Float[Tensor, " d_vocab_out"] | None = None
) -> VocabScores:
    """Dense float32 scores ``vectors @ matrix (+ bias)``; for small cases only.

    Args:
        vectors: ``[n, d_model]`` vectors to project.
        matrix: ``[d_model, d_vocab]`` projection (e.g. ``W_U``).
        bias: Optional ``[d_vocab]`` bias added to every row (e.g. ``b_U``).

    Returns:
        ``[n, d_vocab]`` float32 scores. Use :func:`topk_vocab` for large ``n * d_vocab``.
    """
    _check_same_device(vectors=vectors, matrix=matrix, bias=bias)
    scores = _scores_block(vectors.float(), matrix.float())
    return scores if bias is None else scores + bias.float()


@dataclass(frozen=True)
class VocabColumns:
    """A basis's allowed vocabulary columns, checked and cut into chunks once.

    Built by :func:`vocab_columns`; :func:`topk_columns` ranks any number of vector batches
    against it. Unmasked chunks are views of the matrix; masked ones are gathered copies (the
    allowed columns, once), so repeated rankings never re-gather them.

    Attributes:
        d_vocab: The full vocabulary size (ids run over ``range(d_vocab)``).
        d_model: Rows of the matrix (the vectors' width).
        n_allowed: Columns left after the mask.
        chunk_size: Columns per chunk.
        device: Where the columns live (vectors ranked against them must be there too).
        chunks: ``(ids, columns, bias)`` per chunk: ``ids [c]`` ascending token ids, ``columns
            [d_model, c]`` and ``bias [c]`` (or None).
    """

    d_vocab: int
    d_model: int
    n_allowed: int
    chunk_size: int
    device: torch.device
    chunks: tuple[tuple[Tensor, Tensor, Tensor | None], ...]


def vocab_columns(
    matrix: BasisMatrix,
    *,
    bias: Float[Tensor, " d_vocab_out"] | None = None,
    mask: VocabMask | None = None,
    chunk_size: int = 8192,
) -> VocabColumns:
    """Check ``matrix`` (and ``bias``) once and cut its allowed columns into chunks.

    Args:
        matrix: ``[d_model, d_vocab]`` projection (e.g. ``W_U``).
        bias: Optional ``[d_vocab]`` bias, on the matrix's device.
        mask: Optional ``[d_vocab]`` bool mask, True = allowed (any device).
        chunk_size: Vocabulary columns scored at once.

    Raises:
        ValueError: ``chunk_size <= 0``, mismatched shapes or devices, or NaN/inf in ``matrix``
            or ``bias`` (anywhere, masked columns included).
    """
    if chunk_size <= 0:
        raise InvalidArgumentError(f"chunk_size must be positive, got {chunk_size}")
    if matrix.ndim != 2:
        raise InvalidArgumentError(
            f"expected a matrix [d_model, d_vocab], got shape {tuple(matrix.shape)}"
        )
    d_vocab = matrix.shape[1]
    for name, extra in (("bias", bias), ("mask", mask)):
        if extra is not None and tuple(extra.shape) != (d_vocab,):
            raise InvalidArgumentError(
                f"{name} must have shape [{d_vocab}], got {tuple(extra.shape)}"
            )
    _check_same_device(matrix=matrix, bias=bias)
    _check_finite("matrix", matrix)
    if bias is not None:
        _check_finite("bias", bias)
    device = matrix.device
    # Allowed ids in ascending order; None means "all", so chunks can be plain slices. Masks are
    # tiny, so one built on the CPU (as TokenFilter.mask does) simply follows the matrix.
    allowed = None if mask is None else mask.to(device).nonzero().squeeze(1)
    n_allowed = d_vocab if allowed is None else allowed.numel()
    chunks = []
    for c0 in range(0, n_allowed, chunk_size):
        if allowed is None:
            ids = torch.arange(c0, min(c0 + chunk_size, d_vocab), device=device)
            cols = matrix[:, c0 : c0 + chunk_size]
            chunk_bias = None if bias is None else bias[c0 : c0 + chunk_size]
        else:
            ids = allowed[c0 : c0 + chunk_size]
            cols = matrix.index_select(1, ids)
            chunk_bias = None if bias is None else bias.index_select(0, ids)
        chunks.append((ids, cols, chunk_bias))
    return VocabColumns(d_vocab, matrix.shape[0], n_allowed, chunk_size, device, tuple(chunks))


def topk_vocab(
    vectors: Vectors,
    matrix: BasisMatrix,
    k: int,
    *,
    bias: Float[Tensor, " d_vocab_out"] | None = None,
    mask: VocabMask | None = None,
    chunk_size: int = 8192,
) -> tuple[TopK, TopK]:
    """Best and worst ``k`` tokens of each row of ``vectors @ matrix (+ bias)``.

    The vocabulary is streamed in chunks of ``chunk_size`` columns (and the rows in blocks), each
    chunk's exact top-k merged into a running top-k, so peak memory is bounded by one block of
    at most ``2**25`` scores whatever the vocabulary size. Chunks are cast to float32 before
    the matmul, so float16/bfloat16 inputs are ranked with float32 accumulation. To rank many
    batches against one matrix and mask, build :func:`vocab_columns` once and call
    :func:`topk_columns` (the same result, without re-checking and re-gathering the columns).

    Args:
        vectors: ``[n, d_model]`` vectors to project.
        matrix: ``[d_model, d_vocab]`` projection (e.g. ``W_U``), on the same device.
        k: How many tokens per row; ``1 <= k <=`` number of allowed tokens.
        bias: Optional ``[d_vocab]`` bias added to every row's scores (e.g. ``b_U``).
        mask: Optional ``[d_vocab]`` bool mask, True = allowed (any device). Masked-out tokens
            never appear.
        chunk_size: Vocabulary columns scored at once.

    Returns:
        ``(top, bottom)``: ``top.values`` descending, ``bottom.values`` ascending (most negative
        first); both ``[n, k]``. Among equal scores the lower token id comes first.

    Raises:
        ValueError: ``k <= 0``, ``chunk_size <= 0``, mismatched shapes or devices, or NaN/inf
            in ``vectors``, ``matrix`` or ``bias``.
        FilterError: ``k`` exceeds the number of allowed tokens.
    """
    _check_k(k)
    if chunk_size <= 0:
        raise InvalidArgumentError(f"chunk_size must be positive, got {chunk_size}")
    if vectors.ndim != 2 or matrix.ndim != 2 or vectors.shape[1] != matrix.shape[0]:
        raise InvalidArgumentError(
            f"expected vectors [n, d_model] and matrix [d_model, d_vocab], got "
            f"{tuple(vectors.shape)} and {tuple(matrix.shape)}"
        )
    _check_same_device(vectors=vectors, matrix=matrix, bias=bias)
    _check_finite("vectors", vectors)
    columns = vocab_columns(matrix, bias=bias, mask=mask, chunk_size=chunk_size)
    return topk_columns(vectors, columns, k)


def topk_columns(vectors: Vectors, columns: VocabColumns, k: int) -> tuple[TopK, TopK]:
    """:func:`topk_vocab` against columns prepared by :func:`vocab_columns`.

    Raises:
        ValueError: ``k <= 0``, vectors not ``[n, d_model]``, on another device, or NaN/inf.
        FilterError: ``k`` exceeds the number of allowed tokens.
    """
    _check_k(k)
    if vectors.ndim != 2 or vectors.shape[1] != columns.d_model:
        raise InvalidArgumentError(
            f"expected vectors [n, {columns.d_model}], got {tuple(vectors.shape)}"
        )
    if vectors.device != columns.device:
        raise InvalidArgumentError(
            f"tensors are on different devices: vectors on {vectors.device}, the vocabulary "
            f"columns on {columns.device}; move them to one device"
        )
    _check_finite("vectors", vectors)
    if k > columns.n_allowed:
        what = "the vocabulary has" if columns.n_allowed == columns.d_vocab else "the mask allows"
        raise FilterError(
            f"k={k} but {what} only {columns.n_allowed} of {columns.d_vocab} tokens; lower k or "
            "loosen the filter"
        )

    device = vectors.device
    n = vectors.shape[0]
    block_rows = max(1, _MAX_BLOCK_ELEMENTS // columns.chunk_size)
    empty = (torch.empty(0, 0, device=device), torch.empty(0, 0, dtype=torch.long, device=device))
    top_parts, bottom_parts = [], []
    buffer = _score_buffer(min(n, block_rows), columns.chunk_size, device)
    for r0 in range(0, n, block_rows):
        rows = vectors[r0 : r0 + block_rows].float()
        best, worst = empty, empty
        for ids, cols, chunk_bias in columns.chunks:
            scores = _scores_block(rows, cols.float(), buffer)
            if chunk_bias is not None:
                scores += chunk_bias.float()
            best = _merge_rows(best, _topk_rows(scores, ids, k, largest=True), k, largest=True)
            worst = _merge_rows(worst, _topk_rows(scores, ids, k, largest=False), k, False)
        top_parts.append(best)
        bottom_parts.append(worst)

    def stack(parts: list[tuple[Tensor, Tensor]]) -> TopK:
        if not parts:
            no_ids = torch.empty(0, k, dtype=torch.long, device=device)
            return TopK(torch.empty(0, k, device=device), no_ids)
        return TopK(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    return stack(top_parts), stack(bottom_parts)


def _merge_rows(
    running: tuple[Tensor, Tensor], new: tuple[Tensor, Tensor], k: int, largest: bool
) -> tuple[Tensor, Tensor]:
    """Per-row merge of two candidate lists, keeping the k first by (score, id)."""
    if running[0].numel() == 0:
        return new
    values = torch.cat([running[0], new[0]], dim=1)
    ids = torch.cat([running[1], new[1]], dim=1)
    order = _rank_order(values, ids, largest)[:, :k]
    return values.gather(1, order), ids.gather(1, order)


# ----------------------------------------------------------------------------------------------
# Pair top-k over a factored product
# ----------------------------------------------------------------------------------------------


class _PairPool:
    """Running global top-k of (score, row, col) under the total order (score, row, col)."""

    def __init__(self, k: int, largest: bool, device: torch.device) -> None:
        self.k, self.largest = k, largest
        self.values = torch.empty(0, device=device)
        self.rows = torch.empty(0, dtype=torch.long, device=device)
        self.cols = torch.empty(0, dtype=torch.long, device=device)
        # A score known to be reached by k allowed entries (a bound on the final k-th score),
        # used until the pool itself holds k entries.
        self.seed = -math.inf if largest else math.inf

    def threshold(self) -> float:
        """Score an entry must reach (>= for top, <= for bottom) to possibly enter the pool."""
        if self.values.numel() < self.k:
            return self.seed
        return float(self.values[-1])

    def offer(self, values: Tensor, rows: Tensor, cols: Tensor) -> None:
        # Entries equal to the threshold are kept: they may still win on (row, col).
        tau = self.threshold()
        keep = (values >= tau) if self.largest else (values <= tau)
        values, rows, cols = values[keep], rows[keep], cols[keep]
        if values.numel() == 0:
            return
        values = torch.cat([self.values, values])
        rows = torch.cat([self.rows, rows])
        cols = torch.cat([self.cols, cols])
        # Lexicographic (score best-first, row, col) by successive stable sorts, last key first.
        order = torch.argsort(cols, stable=True)
        order = order[torch.argsort(rows[order], stable=True)]
        order = order[torch.argsort(values[order], descending=self.largest, stable=True)]
        order = order[: self.k]
        self.values, self.rows, self.cols = values[order], rows[order], cols[order]

    def result(self, scored: int) -> PairTopK:
        return PairTopK(self.values, self.rows, self.cols, scored)


# Unit roundoff of a float32 matmul under each precision setting: full float32, TF32 (10
# mantissa bits; "high" may also mean bfloat16x3, which is more precise), bfloat16 (7 bits).
# "none" (new API): set nowhere up the backend chain, i.e. the IEEE float32 default.
_ROUNDOFF = {
    "highest": 2.0**-24,
    "ieee": 2.0**-24,
    "none": 2.0**-24,
    "high": 2.0**-11,
    "tf32": 2.0**-11,
}
_ROUNDOFF_BF16 = 2.0**-8  # "medium", "bf16", and any setting this table does not know


def _precision_settings(device: torch.device) -> list[str]:
    """Every float32-matmul precision setting that may apply to a matmul on ``device``.

    PyTorch has two APIs: the legacy ``torch.set_float32_matmul_precision`` and (2.9+) the
    per-backend ``torch.backends.<backend>.matmul.fp32_precision``. Once both are used, reading
    the legacy one raises ``RuntimeError``; older versions lack the new one. Read whichever
    exist, for the backend that runs matmuls on ``device`` (CUDA, or oneDNN on the CPU).
    """
    settings = []
    try:
        settings.append(torch.get_float32_matmul_precision())
    except RuntimeError:  # legacy and new APIs mixed: the new ones below tell
        pass
    backends = {"cuda": ("cuda",), "cpu": ("mkldnn",)}.get(device.type, ("cuda", "mkldnn"))
    for name in backends:
        matmul = getattr(getattr(torch.backends, name, None), "matmul", None)
        setting = getattr(matmul, "fp32_precision", None)
        if isinstance(setting, str):  # the getter resolves inheritance from parent backends
            settings.append(setting)
    return settings


def _unit_roundoff(device: torch.device | None = None) -> float:
    """Unit roundoff of float32 matmuls on ``device`` under the current precision settings.

    The largest over every setting that may apply (see :func:`_precision_settings`), so the
    pruning slack covers whichever rounding the hardware actually applies; an unknown setting
    counts as bfloat16. Never raises.
    """
    settings = _precision_settings(device or torch.device("cpu"))
    return max((_ROUNDOFF.get(s, _ROUNDOFF_BF16) for s in settings), default=_ROUNDOFF_BF16)


@dataclass(frozen=True)
class _Split:
    """Per-entry bounds from a balanced re-factorisation of ``lhs @ rhs.T``.

    ``score_ij = alpha_i * beta_j + <rest_i, rest_j>`` with ``|<rest_i, rest_j>| <= n_i * m_j``,
    so every float32-computed score lies within
    ``alpha_i * beta_j -/+ (n_i * m_j + slack)``. All tensors are float64.
    """

    alpha: Tensor  # [n_rows] leading coordinate of each row
    n: Tensor  # [n_rows] norm of the remaining coordinates
    beta: Tensor  # [n_cols]
    m: Tensor  # [n_cols]
    slack: float
    screen: "_Screen | None"  # bfloat16 copies of the balanced factors, when asked for


def _split_bounds(lhs: Tensor, rhs: Tensor, screen: bool = False) -> _Split:
    """Balanced factors ``lhs T_l`` and ``rhs T_r`` (``T_l T_r^T = I``), split after one axis.

    For any invertible change of basis the product is unchanged, but Cauchy-Schwarz bounds are
    not: they are loose when the two factors live at different scales or when one direction
    dominates. Choosing ``T`` so that both new factors have the same diagonal Gram matrix (the
    singular values ``S`` of the product, via a rank x rank SVD) balances the scales, and the
    dominant singular direction (in embedding space often 10x the next one, a shared offset of
    all tokens) is kept exact as ``alpha_i * beta_j`` instead of being folded into a norm. On
    SmolLM2 QK/OV circuits this leaves ~1e-5..1e-3 of all entries that could reach the top or
    bottom 50, against up to ~30% for plain Cauchy-Schwarz.

    The bound quantities are computed in float64; ``slack`` absorbs float32 rounding of the
    scores themselves (twice: scores of one entry in differently shaped blocks may differ),
    the float64 defect of ``T_l T_r^T = I`` and float64 rounding.
    """
    lhs64, rhs64 = lhs.double(), rhs.double()
    rank = lhs.shape[1]

    def half_gram(factor: Tensor) -> tuple[Tensor, Tensor]:
        # factor ~ Q diag(sqrt(d)) P^T with Q orthonormal. Any invertible T is valid (T_l T_r^T
        # = I holds by construction and its defect is measured below), so a float32 Gram
        # matrix is accurate enough. Eigenvalues are floored so that a rank-deficient factor
        # still gives an invertible change of basis.
        d, p = torch.linalg.eigh((factor.T @ factor).double())
        top = float(d.max())
        return d.clamp(min=top * 1e-10 if top > 0 else 1.0).sqrt(), p

    sl, pl = half_gram(lhs)
    sr, pr = half_gram(rhs)
    u, s, vh = torch.linalg.svd((sl[:, None] * (pl.T @ pr)) * sr[None, :])
    t_left = (pl / sl) @ u * s.sqrt()
    t_right = (pr / sr) @ vh.T * s.sqrt()
    eye = torch.eye(rank, dtype=torch.float64, device=lhs.device)
    defect = float(torch.linalg.matrix_norm(eye - t_left @ t_right.T, ord=2))
    t_norms = float(
        torch.linalg.matrix_norm(t_left, ord=2) * torch.linalg.matrix_norm(t_right, ord=2)
    )
    a, b = lhs64 @ t_left, rhs64 @ t_right
    rel = (
        2.0 * rank * _unit_roundoff(lhs.device) * 1.01  # float32 scores, twice
        + defect
        + 8.0 * (rank + 2) * torch.finfo(torch.float64).eps * t_norms  # float64 bound terms
        + 1e-12
    )
    slack = rel * float(lhs64.norm(dim=1).max()) * float(rhs64.norm(dim=1).max())
    rough = _Screen.of(a, b, slack) if screen else None
    return _Split(a[:, 0], a[:, 1:].norm(dim=1), b[:, 0], b[:, 1:].norm(dim=1), slack, rough)


# A bfloat16 number carries 8 significant bits: rounding to it errs by at most 2**-8 relatively.
_BF16_ROUNDOFF = 2.0**-8


@dataclass(frozen=True)
class _Screen:
    """bfloat16 copies of the balanced factors, for a cheap first pass over every block.

    Where bfloat16 products are fast (CPUs with bfloat16 dot-product instructions, e.g.
    AVX512-BF16 or AMX) one costs ~0.35x the float32 product of the same shape. Every entry of
    such a rough product lies within :meth:`margin` of the float32 score the search would
    compute, so a block is scored again in float32 only on the rows whose rough extremes come
    within that margin of a pool's threshold: in the top/bottom 50 of 2.4e9 entries, a handful.
    The results are the float32 scores, exactly as without the screen.

    The margin, per entry ``(i, j)`` of balanced factors ``a``, ``b`` with bfloat16 copies
    ``a'``, ``b'``: ``|a.b - a'.b'| <= |a - a'| |b| + |a'| |b - b'|`` (the copies' rounding),
    plus ``gamma |a'| |b'|`` (float32 accumulation of ``rank`` exact products, with a factor 2
    of headroom), plus ``2**-8 (1 + gamma) |a'| |b'|`` (the bfloat16 output), plus the split's
    slack (balanced vs given factors, float32 rescoring) and flushed subnormals. A block uses
    the maxima of these norms over its rows and its columns.
    """

    left: Tensor  # [n_rows, rank] bfloat16
    right: Tensor  # [n_cols, rank] bfloat16
    left_err: Tensor  # [n_rows] float64: |a_i - a'_i|
    left_norm: Tensor  # [n_rows] float64: max(|a_i|, |a'_i|)
    right_err: Tensor  # [n_cols]
    right_norm: Tensor  # [n_cols]
    rel: float  # accumulation and output rounding, per unit of |a'| |b'|
    slack: float

    @classmethod
    def of(cls, a: Tensor, b: Tensor, slack: float) -> "_Screen":
        """From the balanced factors ``a``, ``b`` (float64) and the split's ``slack``."""

        def rounded(factor: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            low = factor.to(torch.bfloat16)
            err = (factor - low.double()).norm(dim=1)
            return low, err, torch.maximum(factor.norm(dim=1), low.double().norm(dim=1))

        left, left_err, left_norm = rounded(a)
        right, right_err, right_norm = rounded(b)
        rank = a.shape[1]
        gamma = 2.0 * rank * 2.0**-24
        # bfloat16 instructions may flush subnormal products and sums to zero: at most
        # 2 * rank of them, each below float32's smallest normal number.
        underflow = 2.0 * (rank + 1) * torch.finfo(torch.float32).tiny
        rel = gamma + _BF16_ROUNDOFF * (1.0 + gamma)
        return cls(left, right, left_err, left_norm, right_err, right_norm, rel, slack + underflow)

    def margin(self, rows: Tensor, cols: Tensor) -> float:
        """A bound on |rough - float32 score| over the block ``rows x cols`` (positions)."""
        ea, na = float(self.left_err[rows].max()), float(self.left_norm[rows].max())
        eb, nb = float(self.right_err[cols].max()), float(self.right_norm[cols].max())
        return (ea * nb + na * eb + self.rel * na * nb) * (1.0 + 1e-9) + self.slack


@functools.cache
def _bfloat16_screen(device: torch.device) -> tuple[bool, bool]:
    """Whether bfloat16 products on ``device`` accumulate in float32, and whether they are fast.

    Measured once per process. Only the CPU is considered: on CUDA, cuBLAS may reduce bfloat16
    products in reduced precision (``allow_bf16_reduced_precision_reduction``), which the
    margin does not cover, and no GPU was available to check it. A canary product whose sum
    is lost under bfloat16 accumulation guards the margin's assumption; a timing of one
    512 x 8192 block in each precision says whether the screen pays (where bfloat16 is
    emulated it costs more than float32).
    """
    if device.type != "cpu":
        return False, False
    # Each row: one 1 and 63 terms of 2**-9, the 1 at a different place in each row. Summed in
    # float32 in any order: 1.123046875, which rounds to 1.125 in bfloat16; summed in bfloat16,
    # the small terms are lost whenever they meet the 1 one at a time.
    lhs = torch.full((512, 64), 2.0**-9)
    lhs[torch.arange(512), torch.arange(512) % 64] = 1.0
    rhs = torch.ones(64, 8192)

    def seconds(dtype: torch.dtype) -> tuple[float, Tensor]:
        a, b = lhs.to(dtype), rhs.to(dtype)
        out = torch.empty(512, 8192, dtype=dtype)
        times = []
        for _ in range(4):
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
        return min(times[1:]), out

    rough, out = seconds(torch.bfloat16)
    if not bool((out == 1.125).all()):
        return False, False
    return True, rough <= 0.75 * seconds(torch.float32)[0]


def _use_screen(screen: bool | None, device: torch.device) -> bool:
    """Resolve ``screen`` (None: wherever it is exact and pays) or refuse a forced one."""
    if screen is False:
        return False
    exact, fast = _bfloat16_screen(device)
    if screen is None:
        return exact and fast
    if not exact:
        where = "the CPU only" if device.type != "cpu" else "CPUs that accumulate it in float32"
        raise OptionError(
            f"screen=True: the bfloat16 screen is exact on {where}, and this {device.type} "
            f"device is not one; pass screen=None (or False)"
        )
    return True


class _ColumnSlabs:
    """Columns cut into slabs of similar ``beta``, each sorted by ``m`` descending.

    For a block of rows, the columns of one slab that can reach a threshold are then a prefix
    of that slab, found by binary search.
    """

    def __init__(self, beta: Tensor, m: Tensor, size: int) -> None:
        n_cols = beta.numel()
        n_slabs = -(-n_cols // size)
        device = beta.device
        pad = torch.full((n_slabs * size - n_cols,), -1, dtype=torch.long, device=device)
        index = torch.cat([torch.argsort(beta), pad]).view(n_slabs, size)
        valid = index >= 0
        safe = index.clamp(min=0)
        m_slab = torch.where(valid, m[safe], -math.inf)  # padding sorts last
        m_sorted, order = m_slab.sort(dim=1, descending=True)
        self.size = size
        self.index = index.gather(1, order)  # column positions; -1 = padding, at the end
        self.neg_m = -m_sorted  # ascending, for searchsorted
        self.count = valid.sum(dim=1)
        self.m_max = m_sorted[:, 0]
        self.beta_lo = torch.where(valid, beta[safe], math.inf).amin(dim=1)
        self.beta_hi = torch.where(valid, beta[safe], -math.inf).amax(dim=1)

    def reaching(self, need: Tensor, n: Tensor) -> Tensor:
        """How many columns of each slab have ``n_r * m_j >= need[r, slab]``, per row ``r``.

        Args:
            need: ``[rows, slabs]`` required value of ``n * m``.
            n: ``[rows, 1]`` non-negative row factors.

        Returns:
            ``[rows, slabs]`` prefix lengths.
        """
        # Lower the threshold by a hair so that division rounding can only add columns; rows
        # with n = 0 reach everything or nothing, by the sign of need.
        threshold = need / n.clamp(min=torch.finfo(torch.float64).tiny)
        threshold = threshold - threshold.abs() * 1e-12
        threshold = torch.where(n > 0, threshold, torch.where(need <= 0, -math.inf, math.inf))
        found = torch.searchsorted(self.neg_m, -threshold.T.contiguous(), right=True).T
        return torch.minimum(found, self.count)

    def take(self, counts: Tensor) -> Tensor:
        """Column positions of the first ``counts[slab]`` columns of every slab."""
        positions = torch.arange(self.size, device=counts.device)
        return self.index[positions[None, :] < counts[:, None]]


def _corner_products(
    lo: Tensor, hi: Tensor, other_lo: Tensor, other_hi: Tensor
) -> tuple[Tensor, Tensor]:
    """Max and min of ``x * y`` over boxes ``x in [lo, hi]``, ``y in [other_lo, other_hi]``.

    A bilinear function takes its extremes at the corners; result ``[len(lo), len(other_lo)]``.
    """
    corners = torch.stack(
        [
            lo[:, None] * other_lo[None, :],
            lo[:, None] * other_hi[None, :],
            hi[:, None] * other_lo[None, :],
            hi[:, None] * other_hi[None, :],
        ]
    )
    return corners.amax(dim=0), corners.amin(dim=0)


class _Pruner:
    """Decides which (row, column) regions can still reach the pools' thresholds.

    Rows are cut into slabs of similar ``alpha``. Within a slab, each row's needs are exact
    (per column slab: a prefix length); rows are then grouped into blocks of similar needs,
    each block scoring the union of its rows' prefixes as one matmul.
    """

    def __init__(self, split: _Split, row_slab: int, col_slab: int) -> None:
        self.split = split
        self.cols = _ColumnSlabs(split.beta, split.m, col_slab)
        by_alpha = torch.argsort(split.alpha)
        self.slabs = list(torch.split(by_alpha, row_slab))
        # Coarse bounds per row slab, only to order and skip whole slabs.
        cols = self.cols
        lo = torch.stack([split.alpha[r].min() for r in self.slabs])
        hi = torch.stack([split.alpha[r].max() for r in self.slabs])
        n_max = torch.stack([split.n[r].max() for r in self.slabs])
        p_max, p_min = _corner_products(lo, hi, cols.beta_lo, cols.beta_hi)
        spread = n_max[:, None] * cols.m_max[None, :] + split.slack
        self.upper = (p_max + spread).amax(dim=1)
        self.lower = (p_min - spread).amin(dim=1)

    def seed_candidates(self, largest: bool, n_rows: int, n_cols: int) -> tuple[Tensor, Tensor]:
        """Rows and columns likely to hold extreme entries (positions).

        Any choice is correct (a seed only needs *some* k entries); this one ranks rows and
        columns by a cheap optimistic score against the other side's extremes.
        """
        s = self.split
        beta = torch.stack([s.beta.min(), s.beta.max()])
        alpha = torch.stack([s.alpha.min(), s.alpha.max()])
        sign = 1.0 if largest else -1.0
        row_score = (sign * s.alpha[:, None] * beta).amax(dim=1) + s.n * s.m.max()
        col_score = (sign * s.beta[:, None] * alpha).amax(dim=1) + s.m * s.n.max()
        n_rows, n_cols = min(n_rows, row_score.numel()), min(n_cols, col_score.numel())
        return row_score.topk(n_rows).indices, col_score.topk(n_cols).indices

    def slab_order(self, pools: list["_PairPool"]) -> list[int]:
        """Row slabs that may hold a qualifying entry, most promising first."""
        excess = torch.full_like(self.upper, -math.inf)
        for pool in pools:
            tau = pool.threshold()
            excess = torch.maximum(excess, self.upper - tau if pool.largest else tau - self.lower)
        keep = (excess >= 0).nonzero()[:, 0]
        return keep[torch.argsort(excess[keep], descending=True)].tolist()

    def needs(self, rows: Tensor, pool: "_PairPool") -> Tensor:
        """Per row and column slab, how many columns can reach the pool's threshold.

        Uses the exact ``alpha_i`` and ``n_i`` of each row and the slab's ``beta`` range; the
        columns are a prefix of the slab. Returns ``[len(rows), n_slabs]`` prefix lengths.
        """
        s, cols = self.split, self.cols
        alpha, n = s.alpha[rows, None], s.n[rows, None]
        counts = torch.zeros(rows.numel(), cols.count.numel(), dtype=torch.long, device=rows.device)
        tau = pool.threshold()
        if math.isinf(tau):
            return cols.count.expand_as(counts)
        if pool.largest:  # need alpha_i beta_j + n_i m_j + slack >= tau
            extreme = torch.maximum(alpha * cols.beta_lo, alpha * cols.beta_hi)
            need = tau - extreme - s.slack
        else:  # need alpha_i beta_j - n_i m_j - slack <= tau
            extreme = torch.minimum(alpha * cols.beta_lo, alpha * cols.beta_hi)
            need = extreme - s.slack - tau
        # Most rows reach no slab at all: spare them the binary searches.
        live = (n * cols.m_max >= need).any(dim=1).nonzero()[:, 0]
        if live.numel():
            counts[live] = cols.reaching(need[live], n[live])
        return counts

    def blocks(self, slab: int, pools: list["_PairPool"], max_rows: int):
        """Yield ``(rows, cols, pools)`` blocks covering the slab's entries that may matter.

        Together the blocks cover every entry of the slab that may enter one of the pools;
        each comes with the pools that may take entries from it. Rows are taken in decreasing
        order of need; a block grows (up to ``max_rows``) while its rectangle stays within
        ``_PRUNE_WASTE`` times the entries its rows need.
        """
        rows = self.slabs[slab]
        per_pool = [self.needs(rows, pool) for pool in pools]
        counts = torch.stack(per_pool).amax(dim=0)
        wanted = torch.stack([c.sum(dim=1) > 0 for c in per_pool], dim=1)  # [rows, pools]
        total = counts.sum(dim=1)
        order = torch.argsort(total, descending=True)
        order = order[total[order] > 0]
        rows, counts, total, wanted = rows[order], counts[order], total[order], wanted[order]
        start = 0
        while start < rows.numel():
            window = counts[start : start + max_rows]
            union = window.cummax(dim=0).values.sum(dim=1)
            needed = total[start : start + max_rows].cumsum(dim=0)
            size = torch.arange(1, window.shape[0] + 1, device=rows.device)
            fits = (size * union <= _PRUNE_WASTE * needed).nonzero()
            n_take = int(fits[-1, 0]) + 1  # size 1 always fits
            takers = wanted[start : start + n_take].any(dim=0).tolist()
            block_pools = [p for p, w in zip(pools, takers, strict=True) if w]
            cols = self.cols.take(window[:n_take].amax(dim=0))
            yield rows[start : start + n_take], cols, block_pools
            start += n_take


def _candidates(
    scores: Tensor,
    row_ids: Tensor,
    col_ids: Tensor,
    pool: _PairPool,
    k: int,
    exclude_same: bool,
    row_best: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Entries of a score block that may enter ``pool``, as flat (values, rows, cols).

    Usually the pool's threshold leaves only a handful: one comparison pass finds them. When it
    does not (no threshold yet, or massive ties), each row's exact best ``k`` (``k + 1`` with
    ``exclude_same``, which may drop one) are all a row can contribute. ``row_best`` is each
    row's best score for this pool when already known (one shared min/max pass for two pools).
    """
    tau = pool.threshold()
    if not math.isinf(tau):
        # One read-only pass finds the few rows with a qualifying entry.
        best = row_best
        if best is None:
            best = scores.amax(dim=1) if pool.largest else scores.amin(dim=1)
        live = ((best >= tau) if pool.largest else (best <= tau)).nonzero()[:, 0]
        scores, row_ids = scores[live], row_ids[live]
        hit = (scores >= tau) if pool.largest else (scores <= tau)
        if int(hit.sum()) <= max(4 * k, 1024):
            r, c = hit.nonzero().unbind(1)
            values, rows, cols = scores[r, c], row_ids[r], col_ids[c]
            if exclude_same:
                off = rows != cols
                values, rows, cols = values[off], rows[off], cols[off]
            return values, rows, cols
    per_row = k + 1 if exclude_same else k
    values, cols = _topk_rows(scores, col_ids, per_row, pool.largest)
    rows = row_ids[:, None].expand_as(cols)
    if exclude_same:
        off = rows != cols
        return values[off], rows[off], cols[off]
    return values.flatten(), rows.flatten(), cols.flatten()


def _seed(
    pools: list[_PairPool],
    pruner: _Pruner,
    lhs: Tensor,
    rhs: Tensor,
    row_ids: Tensor,
    col_ids: Tensor,
    k: int,
    exclude_same: bool,
    max_rows: int,
    size: int = _PRUNE_SEED,
) -> int:
    """Give each pool a starting threshold from its most promising rows x columns.

    The k-th best score of any k allowed entries bounds the final k-th best score, so pruning
    is effective from the first block. Only the threshold is kept, not the entries, which the
    main pass scores again (maybe rounded differently by a differently shaped matmul: hence
    the threshold is loosened by the slack). Returns the number of scores computed.
    """
    scored = 0
    for pool in pools:
        rows, cols = pruner.seed_candidates(pool.largest, min(size, max_rows), size)
        scores = _scores_block(lhs.index_select(0, rows), rhs.index_select(0, cols).T)
        scored += scores.numel()
        if exclude_same:
            same = row_ids[rows, None] == col_ids[None, cols]
            scores = scores.masked_fill(same, -math.inf if pool.largest else math.inf)
            if scores.numel() - int(same.sum()) < k:
                continue
        elif scores.numel() < k:
            continue
        # Row-wise first: a k-best over the flattened block is much slower than over rows.
        per_row = torch.topk(scores, min(k, scores.shape[1]), dim=1, largest=pool.largest).values
        kth = float(torch.topk(per_row.flatten(), k, largest=pool.largest).values[-1])
        slack = pruner.split.slack
        pool.seed = kth - slack if pool.largest else kth + slack
    return scored


def _pad_repeating(index: Tensor, size: int) -> Tensor:
    """``index`` extended to ``size`` entries by repeating its first one.

    Padding a product's rows or columns with repeats of one of them leaves every extreme of
    the product unchanged, so the padded product can be screened as a whole.
    """
    if size <= index.numel():
        return index
    return torch.cat([index, index[:1].expand(size - index.numel())])


def _rows_within(tile: Tensor, pools: list[_PairPool], margin: float) -> list[Tensor | None]:
    """Per pool, which rows of a bfloat16 tile come within ``margin`` of its threshold.

    None where no entry does (the usual case, told by one whole-tile reduction). Extremes come
    from whole-tensor reductions over groups of rows first: on bfloat16 these are vectorised,
    per-row reductions and comparisons are not (torch 2.13: ~2x and ~10x slower), so only the
    groups that come within the margin are reduced per row.
    """
    low, high = (float(v) for v in torch.aminmax(tile))
    bounds = [pool.threshold() + (-margin if pool.largest else margin) for pool in pools]
    reach = [
        (high >= bound) if pool.largest else (low <= bound)
        for pool, bound in zip(pools, bounds, strict=True)
    ]
    if not any(reach):
        return [None] * len(pools)
    starts = range(0, tile.shape[0], _SCREEN_GROUP)
    groups = [torch.aminmax(tile[g : g + _SCREEN_GROUP]) for g in starts]
    lows = torch.stack([g.min for g in groups]).double()
    highs = torch.stack([g.max for g in groups]).double()
    found: list[Tensor | None] = []
    for pool, bound, reached in zip(pools, bounds, reach, strict=True):
        if not reached:
            found.append(None)
            continue
        hit = torch.zeros(tile.shape[0], dtype=torch.bool, device=tile.device)
        near = (highs >= bound) if pool.largest else (lows <= bound)
        for g in near.nonzero()[:, 0].tolist():
            part = tile[g * _SCREEN_GROUP : (g + 1) * _SCREEN_GROUP]
            if pool.largest:
                hit[g * _SCREEN_GROUP : (g + 1) * _SCREEN_GROUP] = (
                    part.amax(dim=1).double() >= bound
                )
            else:
                hit[g * _SCREEN_GROUP : (g + 1) * _SCREEN_GROUP] = (
                    part.amin(dim=1).double() <= bound
                )
        found.append(hit)
    return found


def _pairs(
    left: Tensor,
    right: Tensor,
    k: int,
    sides: tuple[bool, ...],
    row_mask: Tensor | None,
    col_mask: Tensor | None,
    exclude_same: bool,
    block_rows: int,
    prune: bool,
    screen: bool | None,
) -> list[PairTopK]:
    """Shared implementation: one pass over blocks of rows feeds one pool per side."""
    _check_k(k)
    if block_rows <= 0:
        raise InvalidArgumentError(f"block_rows must be positive, got {block_rows}")
    if left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[1]:
        raise InvalidArgumentError(
            f"expected left [n_rows, rank] and right [n_cols, rank], got "
            f"{tuple(left.shape)} and {tuple(right.shape)}"
        )
    n_rows, n_cols = left.shape[0], right.shape[0]
    if exclude_same and n_rows != n_cols:
        raise InvalidArgumentError(
            f"exclude_same drops pairs (t, t), which needs one vocabulary on both sides, but "
            f"left has {n_rows} rows and right has {n_cols}"
        )
    for name, m, size in (("row_mask", row_mask, n_rows), ("col_mask", col_mask, n_cols)):
        if m is not None and tuple(m.shape) != (size,):
            raise InvalidArgumentError(f"{name} must have shape [{size}], got {tuple(m.shape)}")
    _check_same_device(left=left, right=right)
    _check_finite("left", left)
    _check_finite("right", right)

    device = left.device
    # Masks are tiny: one built on the CPU (as TokenFilter.mask does) follows the factors.
    row_mask = None if row_mask is None else row_mask.to(device)
    col_mask = None if col_mask is None else col_mask.to(device)
    row_ids = torch.arange(n_rows, device=device) if row_mask is None else row_mask.nonzero()[:, 0]
    col_ids = torch.arange(n_cols, device=device) if col_mask is None else col_mask.nonzero()[:, 0]
    n_pairs = row_ids.numel() * col_ids.numel()
    if exclude_same:
        both = torch.ones(n_rows, dtype=torch.bool, device=device)
        for m in (row_mask, col_mask):
            if m is not None:
                both &= m
        n_pairs -= int(both.sum())
    if k > n_pairs:
        same = ", excluding (t, t)" if exclude_same else ""
        raise FilterError(
            f"k={k} but only {n_pairs} pairs are allowed ({row_ids.numel()} of {n_rows} rows x "
            f"{col_ids.numel()} of {n_cols} columns{same}); lower k or loosen the filter"
        )

    lhs = (left if row_mask is None else left.index_select(0, row_ids)).float()
    rhs = (right if col_mask is None else right.index_select(0, col_ids)).float()
    pools = [_PairPool(k, largest, device) for largest in sides]
    scored = 0
    buffer_rows = min(block_rows, lhs.shape[0])
    buffer = _score_buffer(buffer_rows, rhs.shape[0], device)
    # Each block's columns are gathered into one reused buffer too, as its scores are: no
    # multi-MB allocation per block.
    gathered = torch.empty_like(rhs)

    def gather(factor: Tensor, index: Tensor, into: Tensor) -> Tensor:
        """``factor[index]`` written into the start of ``into`` (index_select: ~10x faster)."""
        out = _buffer_view(into, index.numel(), factor.shape[1])
        return torch.index_select(factor, 0, index, out=out)

    def score(rows: Tensor, cols: Tensor | None, to: list[_PairPool]) -> None:
        """Score rows x cols (positions; None = all columns) and offer them to pools ``to``."""
        nonlocal scored
        right_t = rhs.T if cols is None else gather(rhs, cols, gathered).T
        scores = _scores_block(lhs.index_select(0, rows), right_t, buffer)
        scored += scores.numel()
        block_row_ids = row_ids[rows]
        block_col_ids = col_ids if cols is None else col_ids[cols]
        best: dict[bool, Tensor] = {}
        if len(to) == 2 and scores.shape[1] > 0:
            # Two reductions, not torch.aminmax: its per-row form is not vectorised on the
            # CPU and costs ~10x amax + amin (measured, torch 2.13; see bench_pairs.py).
            best[False], best[True] = scores.amin(dim=1), scores.amax(dim=1)
        for pool in to:
            found = _candidates(
                scores, block_row_ids, block_col_ids, pool, k, exclude_same, best.get(pool.largest)
            )
            pool.offer(*found)

    if not prune or lhs.shape[1] == 0:
        for start in range(0, lhs.shape[0], block_rows):
            rows = torch.arange(start, min(start + block_rows, lhs.shape[0]), device=device)
            score(rows, None, pools)
        return [pool.result(scored) for pool in pools]

    with single_threaded():  # small rank x rank factorisations: see tl_embspace._linalg
        split = _split_bounds(lhs, rhs, screen=_use_screen(screen, device))
    pruner = _Pruner(split, row_slab=_PRUNE_ROW_SLAB, col_slab=_PRUNE_COL_SLAB)
    scored += _seed(pools, pruner, lhs, rhs, row_ids, col_ids, k, exclude_same, block_rows)
    rough = split.screen
    # The screen's products have few distinct shapes: rows padded to a multiple of
    # _SCREEN_GROUP, columns in tiles of _SCREEN_TILE. oneDNN, which runs bfloat16 products on
    # the CPU, caches a kernel per shape (~0.8 MB each, up to 1024 of them: measured +0.75 GiB
    # over one SmolLM2 layer with a shape per block); a tile's output also stays in cache.
    tile_cols = min(_SCREEN_TILE, rhs.shape[0])
    if rough is not None:
        rough_buffer = _score_buffer(buffer_rows, tile_cols, device, torch.bfloat16)
        rough_gathered = rough.right.new_empty(rhs.shape[0] + tile_cols, rhs.shape[1])

    def screened(rows: Tensor, cols: Tensor, to: list[_PairPool]) -> None:
        """Score rows x cols in bfloat16, then in float32 only the rows that may qualify."""
        nonlocal scored
        assert rough is not None
        if any(math.isinf(pool.threshold()) for pool in to):  # no threshold yet: all qualify
            score(rows, cols, to)
            return
        margin = rough.margin(rows, cols)
        n_rows = min(-(-rows.numel() // _SCREEN_GROUP) * _SCREEN_GROUP, buffer_rows)
        left_rows = rough.left.index_select(0, _pad_repeating(rows, n_rows))
        n_cols = -(-cols.numel() // tile_cols) * tile_cols
        right_cols = gather(rough.right, _pad_repeating(cols, n_cols), rough_gathered)
        live = torch.zeros(rows.numel(), dtype=torch.bool, device=device)
        takes = [False] * len(to)
        for c0 in range(0, n_cols, tile_cols):
            tile = _scores_block(left_rows, right_cols[c0 : c0 + tile_cols].T, rough_buffer)
            scored += tile.numel()
            for p, hit in enumerate(_rows_within(tile, to, margin)):
                if hit is not None:
                    takes[p] = True
                    live |= hit[: rows.numel()]  # padding rows repeat the first one
        takers = [pool for pool, take in zip(to, takes, strict=True) if take]
        if takers:
            score(rows[live], cols, takers)

    for slab in pruner.slab_order(pools):
        # The bookkeeping is thousands of small ops, which extra threads only slow down (each
        # op's fork/join costs more than its work, and far more on a busy machine); the
        # blocks depend on the thresholds at the slab's start only, so they are listed first.
        with single_threaded():
            blocks = list(pruner.blocks(slab, pools, block_rows))
        for rows, cols, block_pools in blocks:
            (score if rough is None else screened)(rows, cols, block_pools)
    return [pool.result(scored) for pool in pools]


def topk_pairs(
    left: Float[Tensor, "n_rows rank"],
    right: Float[Tensor, "n_cols rank"],
    k: int,
    *,
    largest: bool = True,
    row_mask: Bool[Tensor, " n_rows"] | None = None,
    col_mask: Bool[Tensor, " n_cols"] | None = None,
    exclude_same: bool = False,
    block_rows: int = 1024,
    prune: bool = True,
    screen: bool | None = None,
) -> PairTopK:
    """Exact top-k (or bottom-k) entries of the factored product ``left @ right.T``.

    ``score(i, j) = left[i] . right[j]``; the ``[n_rows, n_cols]`` product is never built.
    Rows are scored in blocks of at most ``block_rows * n_cols`` entries. With ``prune=True``
    (the default) regions are skipped when a bound proves that none of their entries can reach
    the current k-th best score. The bound comes from a balanced re-factorisation of the
    product: its leading singular direction exactly, Cauchy-Schwarz on the rest. The result is
    the dense computation's, only faster: on SmolLM2-135M QK/OV circuits (49k x 49k entries)
    2e-4..1e-1 of the entries are scored, 0.015..0.4 times the time of the plain product
    (``benchmarks/bench_pairs.py``; heads whose extremes are not along the leading direction
    are the slow ones). Factors whose rows all have similar norms (standardised bases, as in
    the job's hygiene view) leave the bound little to prune: there OV circuits score ~45% of
    their entries on average (``bench_pairs.py --job-view hygiene``), and the bfloat16 screen
    (``screen``) is what makes scoring them cheaper.

    Args:
        left: ``[n_rows, rank]`` row factor (e.g. ``W_E @ W_V``).
        right: ``[n_cols, rank]`` column factor (e.g. ``W_U.T @ W_O.T``), same device.
        k: How many entries; ``1 <= k <=`` number of allowed pairs.
        largest: True for the largest entries (descending), False for the smallest (ascending).
        row_mask: Optional ``[n_rows]`` bool mask of allowed rows.
        col_mask: Optional ``[n_cols]`` bool mask of allowed columns.
        exclude_same: Drop the diagonal ``i == j`` (needs ``n_rows == n_cols``).
        block_rows: Rows per block when every column must be scored; bounds peak memory to
            ``block_rows * n_cols`` float32 scores.
        prune: Skip regions proven irrelevant (exact). False scores every pair (for checks and
            benchmarks).
        screen: Score each region first as a bfloat16 product and in float32 only the rows
            that may qualify (exact: the bfloat16 error is bounded per block, see ``_Screen``;
            with ``prune`` only). None (the default) screens where it is exact and pays: on a
            CPU whose bfloat16 products accumulate in float32 and run at most 0.75x the time
            of float32 ones (both measured once per process). True forces it (refused where
            not exact, e.g. on CUDA, where cuBLAS may reduce in bfloat16); False never.

    Returns:
        A :class:`PairTopK` of ``k`` entries, ties broken by ``(row, col)`` ascending.

    Raises:
        ValueError: ``k <= 0``, mismatched shapes or devices, ``exclude_same`` with
            ``n_rows != n_cols``, or NaN/inf in the factors.
        FilterError: ``k`` exceeds the number of allowed pairs.
    """
    args = (row_mask, col_mask, exclude_same, block_rows, prune, screen)
    return _pairs(left, right, k, (largest,), *args)[0]


def topk_pairs_both(
    left: Float[Tensor, "n_rows rank"],
    right: Float[Tensor, "n_cols rank"],
    k: int,
    *,
    row_mask: Bool[Tensor, " n_rows"] | None = None,
    col_mask: Bool[Tensor, " n_cols"] | None = None,
    exclude_same: bool = False,
    block_rows: int = 1024,
    prune: bool = True,
    screen: bool | None = None,
) -> tuple[PairTopK, PairTopK]:
    """Largest and smallest ``k`` entries of ``left @ right.T`` in one shared pass.

    Same as ``(topk_pairs(..., largest=True), topk_pairs(..., largest=False))`` but each score
    block is computed once for both lists. See :func:`topk_pairs` for the arguments.

    Returns:
        ``(top, bottom)``: ``top.values`` descending, ``bottom.values`` ascending.
    """
    args = (row_mask, col_mask, exclude_same, block_rows, prune, screen)
    top, bottom = _pairs(left, right, k, (True, False), *args)
    return top, bottom


__all__ = [
    "TopK",
    "PairTopK",
    "VocabColumns",
    "scores_vocab",
    "topk_vocab",
    "topk_columns",
    "vocab_columns",
    "topk_pairs",
    "topk_pairs_both",
]
