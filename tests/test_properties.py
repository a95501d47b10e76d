"""Property-based tests (hypothesis): the engine, filters and bases against dense references.

Random shapes, dtypes, ties, masks, chunk sizes and k. Integer-valued inputs make every float32
score exact, so the streamed and pruned searches must return *exactly* the dense reference's
ids and scores, ties included (lower id, then lower (row, col), first). Gaussian inputs check
the same where no two scores are within float32 rounding of each other, and otherwise that
every returned score is a true top-k score up to that rounding.
"""

import os

import pytest
import torch

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the `test` extra
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise
    pytest.skip("hypothesis is not installed: pip install -e '.[test]'", allow_module_level=True)

from tl_embspace import engine
from tl_embspace.errors import FilterError
from tl_embspace.space import _pinv_t
from tl_embspace.tokens import TokenFilter

from . import tinymodels as tm
from .test_engine import dense_pairs_topk, dense_vocab_topk

# Few examples each: the suite runs on two CPU cores; derandomized so CI is reproducible.
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64])


@st.composite
def int_matrix(draw, rows, cols, low=-3, high=3):
    """An integer-valued float tensor (small values: many exact ties)."""
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, (rows, cols), generator=gen).float()


@st.composite
def mask_of(draw, size):
    """None, or a boolean mask over ``size`` ids."""
    if draw(st.booleans()):
        return None
    bits = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return torch.tensor(bits, dtype=torch.bool)


@st.composite
def vocab_case(draw):
    n, d, vocab = draw(st.integers(0, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 40))
    vectors = draw(int_matrix(n, d))
    matrix = draw(int_matrix(d, vocab))
    bias = draw(st.one_of(st.none(), int_matrix(1, vocab).map(lambda b: b[0])))
    mask = draw(mask_of(vocab))
    k = draw(st.integers(1, vocab + 2))
    chunk = draw(st.integers(1, vocab + 3))
    dtype = draw(DTYPES)
    return vectors.to(dtype), matrix.to(dtype), bias, mask, k, chunk


@PROPERTY
@given(vocab_case())
def test_topk_vocab_equals_the_dense_reference(case):
    vectors, matrix, bias, mask, k, chunk = case
    allowed = matrix.shape[1] if mask is None else int(mask.sum())
    if k > allowed:
        with pytest.raises(FilterError):
            engine.topk_vocab(vectors, matrix, k, bias=bias, mask=mask, chunk_size=chunk)
        return
    top, bottom = engine.topk_vocab(vectors, matrix, k, bias=bias, mask=mask, chunk_size=chunk)
    for got, largest in ((top, True), (bottom, False)):
        values, ids = dense_vocab_topk(vectors, matrix, k, largest, bias=bias, mask=mask)
        assert torch.equal(got.indices, ids)
        assert torch.equal(got.values, values)


@st.composite
def pair_case(draw, integer=True):
    n_rows, rank = draw(st.integers(1, 30)), draw(st.integers(0, 5))
    same = draw(st.booleans())
    n_cols = n_rows if same else draw(st.integers(1, 30))
    if integer:
        left, right = draw(int_matrix(n_rows, rank)), draw(int_matrix(n_cols, rank))
    else:
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        left, right = (
            torch.randn(n_rows, rank, generator=gen),
            torch.randn(n_cols, rank, generator=gen),
        )
    row_mask, col_mask = draw(mask_of(n_rows)), draw(mask_of(n_cols))
    exclude_same = same and draw(st.booleans())
    k = draw(st.integers(1, 12))
    block_rows = draw(st.integers(1, 32))
    return left, right, row_mask, col_mask, exclude_same, k, block_rows


def _allowed_pairs(left, right, row_mask, col_mask, exclude_same) -> int:
    return int(_allowed(left.shape[0], right.shape[0], row_mask, col_mask, exclude_same).sum())


# The bfloat16 screen is drawn too where this CPU supports it exactly (None: the default).
SCREEN_DRAW = st.sampled_from(
    [None, False, True] if engine._bfloat16_screen(torch.device("cpu"))[0] else [None, False]
)


@PROPERTY
@given(pair_case(), st.booleans(), SCREEN_DRAW)
def test_pair_search_equals_the_dense_reference(case, prune, screen):
    """Exact ties included: same ids and same scores as the dense product."""
    left, right, row_mask, col_mask, exclude_same, k, block_rows = case
    kw = dict(row_mask=row_mask, col_mask=col_mask, exclude_same=exclude_same)
    if k > _allowed_pairs(left, right, row_mask, col_mask, exclude_same):
        with pytest.raises(FilterError):
            engine.topk_pairs_both(left, right, k, block_rows=block_rows, prune=prune, **kw)
        return
    top, bottom = engine.topk_pairs_both(
        left, right, k, block_rows=block_rows, prune=prune, screen=screen, **kw
    )
    for got, largest in ((top, True), (bottom, False)):
        values, rows, cols = dense_pairs_topk(left, right, k, largest, **kw)
        assert torch.equal(got.rows, rows) and torch.equal(got.cols, cols)
        assert torch.equal(got.values, values)


def _allowed(n_rows, n_cols, row_mask, col_mask, exclude_same) -> torch.Tensor:
    allowed = torch.ones(n_rows, n_cols, dtype=torch.bool)
    if row_mask is not None:
        allowed &= row_mask[:, None]
    if col_mask is not None:
        allowed &= col_mask[None, :]
    if exclude_same:
        allowed &= ~torch.eye(n_rows, n_cols, dtype=torch.bool)
    return allowed


@PROPERTY
@given(pair_case(integer=False))
def test_pair_search_on_gaussian_factors_is_a_true_top_k(case):
    """Same ids as the float64 dense product unless two scores are within float32 rounding."""
    left, right, row_mask, col_mask, exclude_same, k, block_rows = case
    allowed = _allowed(left.shape[0], right.shape[0], row_mask, col_mask, exclude_same)
    if k > int(allowed.sum()):
        return
    got = engine.topk_pairs(
        left,
        right,
        k,
        block_rows=block_rows,
        row_mask=row_mask,
        col_mask=col_mask,
        exclude_same=exclude_same,
    )
    dense = left.double() @ right.double().T
    rank = left.shape[1]
    # A float32 dot product of length `rank` errs by at most ~rank eps sum |l_i r_i|.
    scale = float(left.abs().max() * right.abs().max()) if rank else 0.0
    tol = 2 * rank * rank * 2.0**-24 * scale + 1e-30
    torch.testing.assert_close(got.values.double(), dense[got.rows, got.cols], atol=tol, rtol=0)
    rows, cols = allowed.nonzero().unbind(1)
    ranked = torch.sort(dense[rows, cols], descending=True, stable=True)
    values = ranked.values[: k + 1]
    # Every returned entry is within rounding of a true top-k score ...
    assert bool((dense[got.rows, got.cols] >= values[k - 1] - 2 * tol).all())
    # ... and where the ranking has no near-ties, it is exactly the dense one.
    if bool((values[:-1] - values[1:] > 2 * tol).all()):
        order = ranked.indices[:k]
        assert got.rows.tolist() == rows[order].tolist()
        assert got.cols.tolist() == cols[order].tolist()


@PROPERTY
@given(
    st.lists(st.integers(0, tm.D_VOCAB - 1), max_size=8, unique=True),
    st.lists(st.integers(0, tm.D_VOCAB - 1), max_size=8, unique=True),
)
def test_include_and_exclude_ids_are_set_logic(include, exclude):
    """``include``/``exclude`` by id: allowed = (in include, if given) and not in exclude."""
    want = [(not include or i in include) and i not in exclude for i in range(tm.D_VOCAB)]
    flt = TokenFilter(include=include or None, exclude=tuple(exclude))
    if not any(want):
        with pytest.raises(FilterError):
            flt.mask(tm.tokenizer(), tm.D_VOCAB)
        return
    mask = flt.mask(tm.tokenizer(), tm.D_VOCAB)  # None: the filter allows every token
    assert (mask.tolist() if mask is not None else [True] * tm.D_VOCAB) == want


@PROPERTY
@given(
    st.integers(1, 12),
    st.integers(0, 40),
    st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    st.integers(0, 2**31 - 1),
)
def test_pinv_basis_is_a_right_inverse_in_any_stored_dtype(d_model, extra, dtype, seed):
    """``W pinv(W)ᵀᵀ = I`` for a full-rank ``W [d_model, d_vocab]`` stored in any dtype."""
    gen = torch.Generator().manual_seed(seed)
    d_vocab = d_model + extra
    # Well-conditioned: orthonormal rows scaled within a factor 4, then rounded to `dtype`.
    q, _ = torch.linalg.qr(torch.randn(d_vocab, d_model, generator=gen, dtype=torch.float64))
    scale = torch.linspace(1.0, 4.0, d_model, dtype=torch.float64)
    W = (q.T * scale[:, None]).to(dtype).float()
    P = _pinv_t(W)
    identity = W.double() @ P.double().T
    assert float((identity - torch.eye(d_model, dtype=torch.float64)).abs().max()) < 1e-4
