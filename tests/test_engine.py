"""The streamed vocabulary top-k and the pruned pair top-k against dense references.

Exactness is checked bit for bit on integer-valued inputs (every float32 sum is then exact, so
any blocking gives the dense result, and ties are plentiful); continuous inputs are checked for
being a correct top-k up to float32 rounding.
"""

import math

import pytest
import torch

from tl_embspace import engine
from tl_embspace.engine import PairTopK, scores_vocab, topk_pairs, topk_pairs_both, topk_vocab
from tl_embspace.errors import FilterError, OptionError

# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def dense_vocab_topk(vectors, matrix, k, largest, bias=None, mask=None):
    """Per row: (score best-first, id ascending), the k first; dense and sort-based."""
    scores = vectors.float() @ matrix.float()
    if bias is not None:
        scores = scores + bias.float()
    ids = torch.arange(matrix.shape[1]) if mask is None else mask.nonzero()[:, 0]
    scores = scores[:, ids]
    # Columns are in id order, so a stable sort on the score alone breaks ties by id.
    order = torch.argsort(scores, dim=1, descending=largest, stable=True)[:, :k]
    return scores.gather(1, order), ids[order]


def lexsort_pairs(values, rows, cols, largest):
    order = torch.argsort(cols, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]
    return order[torch.argsort(values[order], descending=largest, stable=True)]


def dense_pairs_topk(left, right, k, largest, row_mask=None, col_mask=None, exclude_same=False):
    """The k first entries of left @ right.T by (score best-first, row, col), densely."""
    scores = left.float() @ right.float().T
    allowed = torch.ones_like(scores, dtype=torch.bool)
    if row_mask is not None:
        allowed &= row_mask[:, None]
    if col_mask is not None:
        allowed &= col_mask[None, :]
    if exclude_same:
        allowed &= ~torch.eye(*scores.shape, dtype=torch.bool)
    rows, cols = allowed.nonzero().unbind(1)
    values = scores[rows, cols]
    # Only entries reaching the k-th value (ties included) can be in the answer.
    kth = torch.topk(values, k, largest=largest).values[-1]
    near = (values >= kth) if largest else (values <= kth)
    values, rows, cols = values[near], rows[near], cols[near]
    order = lexsort_pairs(values, rows, cols, largest)[:k]
    return values[order], rows[order], cols[order]


def assert_pairs_equal(result: PairTopK, reference):
    values, rows, cols = reference
    assert result.values.dtype == torch.float32
    assert torch.equal(result.rows, rows)
    assert torch.equal(result.cols, cols)
    assert torch.equal(result.values, values)


# The pair search with and without its bfloat16 screen; the screen only where this CPU
# accumulates bfloat16 products in float32 (the engine refuses to force it elsewhere).
SCREEN_EXACT = engine._bfloat16_screen(torch.device("cpu"))[0]
SCREENS = [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not SCREEN_EXACT, reason="no exact bf16 here")),
]


def heavy_tailed_ints(gen, n, rank, spread=2.0, cap=60):
    """Integer-valued rows whose norms span orders of magnitude (low/high-norm mixtures)."""
    scale = torch.exp(spread * torch.randn(n, 1, generator=gen))
    values = (torch.randn(n, rank, generator=gen) * scale).round().clamp(-cap, cap)
    # A shared offset direction, as real embeddings have: stresses the split bound.
    offset = torch.randint(-3, 4, (1, rank), generator=gen).float()
    return (values + offset * (torch.rand(n, 1, generator=gen) < 0.7)).clamp(-cap, cap)


# ---------------------------------------------------------------------------------------------
# topk_vocab
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_topk_vocab_matches_dense_exactly(seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 40, (1,), generator=gen))
    d = int(torch.randint(1, 24, (1,), generator=gen))
    vocab = int(torch.randint(1, 3000, (1,), generator=gen))
    span = [1, 3, 40][seed % 3]  # small spans: many ties
    vectors = torch.randint(-span, span + 1, (n, d), generator=gen).float()
    matrix = torch.randint(-span, span + 1, (d, vocab), generator=gen).float()
    bias = torch.randint(-span, span + 1, (vocab,), generator=gen).float() if seed % 2 else None
    mask = None
    if seed % 4 >= 2:
        mask = torch.rand(vocab, generator=gen) < 0.6
        mask[int(torch.randint(0, vocab, (1,), generator=gen))] = True
    n_allowed = vocab if mask is None else int(mask.sum())
    k = int(torch.randint(1, n_allowed + 1, (1,), generator=gen))
    chunk = int(torch.randint(1, 700, (1,), generator=gen))

    top, bottom = topk_vocab(vectors, matrix, k, bias=bias, mask=mask, chunk_size=chunk)

    for result, largest in ((top, True), (bottom, False)):
        values, ids = dense_vocab_topk(vectors, matrix, k, largest, bias, mask)
        assert result.values.shape == result.indices.shape == (n, k)
        assert result.values.dtype == torch.float32 and result.indices.dtype == torch.int64
        assert torch.equal(result.indices, ids)
        assert torch.equal(result.values, values)


def test_topk_vocab_all_ties_go_to_lowest_ids_both_ways():
    vectors = torch.ones(3, 4)
    matrix = torch.zeros(4, 1000)
    top, bottom = topk_vocab(vectors, matrix, 7, chunk_size=33)
    expected = torch.arange(7).expand(3, 7)
    assert torch.equal(top.indices, expected)
    assert torch.equal(bottom.indices, expected)


def test_topk_vocab_ties_straddling_chunks_keep_id_order():
    # Scores 5 at ids 10, 20, ..., 90 (one per chunk of 10) and everything else 0.
    matrix = torch.zeros(1, 100)
    matrix[0, 10:100:10] = 5.0
    top, bottom = topk_vocab(torch.ones(1, 1), matrix, 12, chunk_size=10)
    assert top.indices[0].tolist() == [10, 20, 30, 40, 50, 60, 70, 80, 90, 0, 1, 2]
    assert top.values[0].tolist() == [5.0] * 9 + [0.0] * 3
    assert bottom.indices[0].tolist() == list(range(10)) + [11, 12]


def test_topk_vocab_negative_scores_and_bottom_order():
    matrix = -torch.arange(1, 51, dtype=torch.float32)[None, :]  # scores -1 .. -50
    top, bottom = topk_vocab(torch.ones(1, 1), matrix, 3, chunk_size=7)
    assert top.values[0].tolist() == [-1.0, -2.0, -3.0]
    assert bottom.values[0].tolist() == [-50.0, -49.0, -48.0]  # most negative first
    assert bottom.indices[0].tolist() == [49, 48, 47]


@pytest.mark.parametrize("seed", range(6))
def test_topk_vocab_continuous_inputs_give_a_correct_topk(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    vectors = torch.randn(17, 32, generator=gen)
    matrix = torch.randn(32, 2500, generator=gen)
    bias = torch.randn(2500, generator=gen)
    mask = torch.rand(2500, generator=gen) < 0.5
    k = 25
    top, bottom = topk_vocab(vectors, matrix, k, bias=bias, mask=mask, chunk_size=999)
    dense = vectors @ matrix + bias
    for result, sign in ((top, 1.0), (bottom, -1.0)):
        assert bool(mask[result.indices].all())
        assert torch.allclose(dense.gather(1, result.indices), result.values, atol=1e-4)
        ordered = sign * result.values
        assert bool((ordered[:, :-1] >= ordered[:, 1:]).all())
        for row in range(17):
            chosen = set(result.indices[row].tolist())
            assert len(chosen) == k
            others = [i for i in mask.nonzero()[:, 0].tolist() if i not in chosen]
            # Nothing left out beats the k-th kept score (beyond rounding).
            assert float((sign * dense[row, others]).max()) <= float(ordered[row, -1]) + 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_topk_vocab_low_precision_inputs_accumulate_in_float32(dtype):
    gen = torch.Generator().manual_seed(7)
    # Integers up to 64 are exact in both formats; products sum beyond float16's range of exact
    # integers (2048), so float16 accumulation would round where float32 does not.
    vectors = torch.randint(-64, 65, (9, 48), generator=gen).to(dtype)
    matrix = torch.randint(-64, 65, (48, 700), generator=gen).to(dtype)
    top, bottom = topk_vocab(vectors, matrix, 11, chunk_size=128)
    for result, largest in ((top, True), (bottom, False)):
        values, ids = dense_vocab_topk(vectors.float(), matrix.float(), 11, largest)
        assert result.values.dtype == torch.float32
        assert torch.equal(result.values, values)
        assert torch.equal(result.indices, ids)


def test_topk_vocab_k_equal_to_allowed_returns_every_allowed_token():
    gen = torch.Generator().manual_seed(3)
    mask = torch.zeros(300, dtype=torch.bool)
    mask[torch.randperm(300, generator=gen)[:13]] = True
    vectors, matrix = torch.randn(4, 8, generator=gen), torch.randn(8, 300, generator=gen)
    top, bottom = topk_vocab(vectors, matrix, 13, mask=mask, chunk_size=50)
    allowed = set(mask.nonzero()[:, 0].tolist())
    for row in range(4):
        assert set(top.indices[row].tolist()) == allowed
        assert top.indices[row].tolist() == bottom.indices[row].flip(0).tolist()


def test_topk_vocab_no_rows():
    top, bottom = topk_vocab(torch.empty(0, 8), torch.randn(8, 100), 5)
    assert top.values.shape == top.indices.shape == bottom.indices.shape == (0, 5)


def test_topk_vocab_k_beyond_the_filter_raises_filter_error():
    mask = torch.zeros(100, dtype=torch.bool)
    mask[:4] = True
    with pytest.raises(FilterError, match=r"k=5.*only 4 of 100.*lower k or loosen the filter"):
        topk_vocab(torch.randn(2, 3), torch.randn(3, 100), 5, mask=mask)
    with pytest.raises(FilterError, match=r"k=101"):
        topk_vocab(torch.randn(2, 3), torch.randn(3, 100), 101)


@pytest.mark.parametrize("k", [0, -3])
def test_topk_vocab_rejects_non_positive_k(k):
    with pytest.raises(ValueError, match="k must be positive"):
        topk_vocab(torch.randn(2, 3), torch.randn(3, 10), k)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["vectors", "matrix", "bias"])
def test_topk_vocab_rejects_non_finite_inputs(bad, where):
    tensors = {"vectors": torch.randn(2, 3), "matrix": torch.randn(3, 10), "bias": torch.randn(10)}
    tensors[where].view(-1)[1] = bad
    with pytest.raises(ValueError, match=where):
        topk_vocab(tensors["vectors"], tensors["matrix"], 2, bias=tensors["bias"])


def test_scores_vocab_is_float32_and_dense():
    vectors = torch.randint(-3, 4, (3, 5)).half()
    matrix = torch.randint(-3, 4, (5, 11)).half()
    bias = torch.arange(11.0)
    scores = scores_vocab(vectors, matrix, bias=bias)
    assert scores.dtype == torch.float32
    assert torch.equal(scores, vectors.float() @ matrix.float() + bias)


@pytest.fixture
def block_sizes(monkeypatch):
    """Sizes (entries) of every score block the engine materialises, in order."""
    sizes = []
    real = engine._scores_block

    def spy(a, b, buffer=None):
        out = real(a, b, buffer)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(engine, "_scores_block", spy)
    return sizes


def test_topk_vocab_memory_is_bounded_by_chunks(monkeypatch, block_sizes):
    monkeypatch.setattr(engine, "_MAX_BLOCK_ELEMENTS", 64 * 40)  # => 40 rows per block
    vectors, matrix = torch.randn(300, 8), torch.randn(8, 5000)
    top, _ = topk_vocab(vectors, matrix, 5, chunk_size=64)
    assert max(block_sizes) <= 40 * 64  # never the [300, 5000] product
    assert len(block_sizes) == math.ceil(300 / 40) * math.ceil(5000 / 64)
    assert torch.equal(top.indices, (vectors @ matrix).topk(5, dim=1).indices)


# ---------------------------------------------------------------------------------------------
# topk_pairs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize("seed", range(40))
def test_topk_pairs_matches_dense_exactly(seed, screen):
    gen = torch.Generator().manual_seed(seed)
    square = seed % 3 == 0
    n_rows = int(torch.randint(1, 400, (1,), generator=gen))
    n_cols = n_rows if square else int(torch.randint(1, 400, (1,), generator=gen))
    rank = int(torch.randint(1, 17, (1,), generator=gen))
    left = heavy_tailed_ints(gen, n_rows, rank)
    right = heavy_tailed_ints(gen, n_cols, rank, spread=float(seed % 4))
    if seed % 5 == 1:  # few distinct values: ties everywhere
        left, right = left.sign(), right.sign()
    row_mask = torch.rand(n_rows, generator=gen) < 0.7 if seed % 4 == 1 else None
    col_mask = torch.rand(n_cols, generator=gen) < 0.7 if seed % 4 >= 2 else None
    if row_mask is not None:
        row_mask[0] = True
    if col_mask is not None:
        col_mask[-1] = True
    exclude_same = square and seed % 2 == 0 and n_rows > 1
    allowed = (n_rows if row_mask is None else int(row_mask.sum())) * (
        n_cols if col_mask is None else int(col_mask.sum())
    )
    if exclude_same:
        both = torch.ones(n_rows, dtype=torch.bool)
        for m in (row_mask, col_mask):
            if m is not None:
                both &= m
        allowed -= int(both.sum())
    k = int(torch.randint(1, min(allowed, 300) + 1, (1,), generator=gen))
    kwargs = dict(row_mask=row_mask, col_mask=col_mask, exclude_same=exclude_same)
    block_rows = int(torch.randint(1, 300, (1,), generator=gen))

    top, bottom = topk_pairs_both(left, right, k, block_rows=block_rows, screen=screen, **kwargs)
    assert_pairs_equal(top, dense_pairs_topk(left, right, k, True, **kwargs))
    assert_pairs_equal(bottom, dense_pairs_topk(left, right, k, False, **kwargs))
    # The one-sided calls and the unpruned path agree with the shared pass.
    for largest, both_result in ((True, top), (False, bottom)):
        one = topk_pairs(
            left, right, k, largest=largest, block_rows=block_rows, screen=screen, **kwargs
        )
        brute = topk_pairs(left, right, k, largest=largest, prune=False, **kwargs)
        for other in (one, brute):
            assert_pairs_equal(other, (both_result.values, both_result.rows, both_result.cols))


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize("seed", range(4))
def test_topk_pairs_exact_beyond_the_seed_block_and_actually_prunes(seed, screen):
    # Larger than the 1024 x 1024 seed, so thresholds start loose and the slabs matter.
    gen = torch.Generator().manual_seed(1000 + seed)
    left = heavy_tailed_ints(gen, 2600, 8, spread=1.5, cap=40)
    right = heavy_tailed_ints(gen, 2300, 8, spread=1.5, cap=40)
    k = [1, 50, 200, 7][seed]
    top, bottom = topk_pairs_both(left, right, k, exclude_same=False, screen=screen)
    assert_pairs_equal(top, dense_pairs_topk(left, right, k, True))
    assert_pairs_equal(bottom, dense_pairs_topk(left, right, k, False))
    assert top.scored < 0.5 * 2600 * 2300


@pytest.mark.parametrize("screen", SCREENS)
def test_topk_pairs_continuous_heavy_tailed_factors_give_a_correct_topk(screen):
    gen = torch.Generator().manual_seed(5)
    mix = torch.randn(12, 12, generator=gen) * torch.logspace(0, -1, 12)

    def factor(n):
        scale = torch.exp(torch.randn(n, 1, generator=gen))  # heavy-tailed row norms
        return torch.randn(n, 12, generator=gen) @ mix * scale

    left, right = factor(1500), factor(1800)
    right = right + 0.5  # a shared offset: the bottom entries hide behind it
    dense = left @ right.T
    for largest in (True, False):
        result = topk_pairs(left, right, 40, largest=largest, screen=screen)
        sign = 1.0 if largest else -1.0
        assert torch.allclose(dense[result.rows, result.cols], result.values, rtol=1e-5, atol=1e-4)
        assert len(set(zip(result.rows.tolist(), result.cols.tolist(), strict=True))) == 40
        kth = float(sign * result.values[-1])
        outside = sign * dense
        outside[result.rows, result.cols] = -math.inf
        assert float(outside.max()) <= kth + 1e-4
        assert bool((sign * result.values[:-1] >= sign * result.values[1:]).all())


def test_topk_pairs_all_ties_break_by_row_then_col():
    left, right = torch.ones(30, 2), torch.ones(20, 2)
    top, bottom = topk_pairs_both(left, right, 25)
    expected_rows = [0] * 20 + [1] * 5
    expected_cols = list(range(20)) + list(range(5))
    for result in (top, bottom):
        assert result.rows.tolist() == expected_rows
        assert result.cols.tolist() == expected_cols
        assert result.values.tolist() == [2.0] * 25


def test_topk_pairs_exclude_same_drops_the_diagonal():
    # The diagonal holds the largest entries; excluding it must fall back to the next ones.
    basis = torch.eye(6) * 10
    left = torch.cat([basis, torch.ones(6, 6)])
    right = torch.cat([basis, -torch.ones(6, 6)])
    top = topk_pairs(left, right, 3, exclude_same=True)
    assert bool((top.rows != top.cols).all())
    assert_pairs_equal(top, dense_pairs_topk(left, right, 3, True, exclude_same=True))
    with pytest.raises(ValueError, match="exclude_same"):
        topk_pairs(torch.randn(5, 2), torch.randn(6, 2), 1, exclude_same=True)


def test_topk_pairs_masks_are_respected():
    gen = torch.Generator().manual_seed(11)
    left, right = torch.randn(200, 6, generator=gen), torch.randn(150, 6, generator=gen)
    row_mask = torch.rand(200, generator=gen) < 0.2
    col_mask = torch.rand(150, generator=gen) < 0.3
    top, bottom = topk_pairs_both(left, right, 30, row_mask=row_mask, col_mask=col_mask)
    for result in (top, bottom):
        assert bool(row_mask[result.rows].all()) and bool(col_mask[result.cols].all())


def test_topk_pairs_k_beyond_allowed_pairs_raises_filter_error():
    row_mask = torch.tensor([True, False, True])
    col_mask = torch.tensor([True, True, False])
    left, right = torch.randn(3, 2), torch.randn(3, 2)
    with pytest.raises(FilterError, match=r"k=5 but only 4 pairs.*2 of 3 rows x 2 of 3 c.*lower k"):
        topk_pairs(left, right, 5, row_mask=row_mask, col_mask=col_mask)
    # Row 0 / col 0 is the only allowed diagonal pair: 4 - 1 = 3 left.
    with pytest.raises(FilterError, match=r"k=4 but only 3 pairs.*excluding \(t, t\)"):
        topk_pairs(left, right, 4, row_mask=row_mask, col_mask=col_mask, exclude_same=True)
    fits = topk_pairs(left, right, 3, row_mask=row_mask, col_mask=col_mask, exclude_same=True)
    assert fits.values.shape == (3,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_topk_pairs_low_precision_factors_accumulate_in_float32(dtype):
    gen = torch.Generator().manual_seed(2)
    left = torch.randint(-64, 65, (120, 32), generator=gen).to(dtype)
    right = torch.randint(-64, 65, (90, 32), generator=gen).to(dtype)
    top, bottom = topk_pairs_both(left, right, 10)
    assert_pairs_equal(top, dense_pairs_topk(left.float(), right.float(), 10, True))
    assert_pairs_equal(bottom, dense_pairs_topk(left.float(), right.float(), 10, False))


@pytest.mark.parametrize(
    "case",
    [
        "rank_one",
        "zero_left",
        "duplicate_columns",
        "unbalanced_scales",
        "zero_rows",
        "rank_exceeds_rows",
        "parallel",
        "duplicate_rows",
        "tiny_scores",
        "one_sign",
        "planted_extremes",
    ],
)
@pytest.mark.parametrize("screen", SCREENS)
def test_topk_pairs_degenerate_factors_stay_exact(case, screen):
    gen = torch.Generator().manual_seed(4)
    left = torch.randint(-9, 10, (180, 6), generator=gen).float()
    right = torch.randint(-9, 10, (160, 6), generator=gen).float()
    if case == "rank_one":
        left, right = left[:, :1], right[:, :1]
    elif case == "zero_left":
        left = torch.zeros_like(left)
    elif case == "duplicate_columns":  # rank-deficient factors
        left[:, 3:] = left[:, :3]
        right[:, 3:] = 0
    elif case == "unbalanced_scales":  # powers of two keep the arithmetic exact
        left, right = left * 2.0**12, right * 2.0**-12
    elif case == "zero_rows":
        left[::2] = 0
    elif case == "rank_exceeds_rows":
        left, right = left[:3], torch.randint(-9, 10, (4, 6), generator=gen).float()
    elif case == "parallel":  # every row along one direction: the bounds are attained exactly
        direction = torch.tensor([1.0, -2.0, 0.0, 3.0, 1.0, 1.0])
        left = left[:, :1] * direction
        right = right[:, :1] * direction
    elif case == "duplicate_rows":  # repeated tokens: equal scores tie, broken by (row, col)
        left[90:] = left[:90]
        right[1::2] = right[::2]
    elif case == "tiny_scores":  # products near 2**-110: the slack must not swamp them
        left, right = left * 2.0**-55, right * 2.0**-55
    elif case == "one_sign":  # every score >= 0: the bottom list is all near zero
        left, right = left.abs(), right.abs()
    elif case == "planted_extremes":  # small-norm rows/cols hiding the extremes among large ones
        left, right = left * 2.0**-7, right * 2.0**-7  # powers of two: exact arithmetic
        left[177], right[3] = torch.full((6,), 0.5), torch.full((6,), 0.5)
        left[5], right[150] = torch.full((6,), -0.25), torch.full((6,), 0.75)
    k = min(20, left.shape[0] * right.shape[0])
    top, bottom = topk_pairs_both(left, right, k, screen=screen)
    assert_pairs_equal(top, dense_pairs_topk(left, right, k, True))
    assert_pairs_equal(bottom, dense_pairs_topk(left, right, k, False))


@pytest.mark.parametrize("k", [0, -1])
def test_topk_pairs_rejects_non_positive_k(k):
    with pytest.raises(ValueError, match="k must be positive"):
        topk_pairs(torch.randn(3, 2), torch.randn(3, 2), k)


@pytest.mark.parametrize("where", ["left", "right"])
def test_topk_pairs_rejects_non_finite_factors(where):
    factors = {"left": torch.randn(4, 2), "right": torch.randn(5, 2)}
    factors[where][2, 1] = math.nan
    with pytest.raises(ValueError, match=where):
        topk_pairs(factors["left"], factors["right"], 2)


def test_topk_pairs_memory_is_bounded_by_row_blocks(block_sizes):
    gen = torch.Generator().manual_seed(9)
    left = heavy_tailed_ints(gen, 700, 5)
    right = heavy_tailed_ints(gen, 600, 5)
    reference = dense_pairs_topk(left, right, 10, True)
    for prune in (False, True):
        block_sizes.clear()
        result = topk_pairs(left, right, 10, block_rows=16, prune=prune)
        assert max(block_sizes) <= 16 * 600  # never the [700, 600] product
        assert sum(block_sizes) == result.scored
        assert_pairs_equal(result, reference)


# ---------------------------------------------------------------------------------------------
# The bfloat16 screen of the pair search
# ---------------------------------------------------------------------------------------------


def _screen_factors(case: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(21)
    left, right = torch.randn(300, 64, generator=gen), torch.randn(280, 64, generator=gen)
    if case == "unbalanced":
        left, right = left * 2.0**12, right * 2.0**-12
    elif case == "tiny":  # scores near 2**-110, well inside float32's normal range
        left, right = left * 2.0**-55, right * 2.0**-55
    elif case == "heavy_tailed":
        left = left * torch.exp(2 * torch.randn(300, 1, generator=gen))
        right = right * torch.exp(2 * torch.randn(280, 1, generator=gen))
    elif case == "offset":  # one shared direction dominates every row, as in embeddings
        left, right = left + 30.0, right - 20.0
    elif case == "ill_conditioned":  # factors at very different scales per coordinate
        scales = torch.logspace(-4, 4, 64)
        left, right = left * scales, right / scales
    elif case == "rank_128":
        left, right = torch.randn(300, 128, generator=gen), torch.randn(280, 128, generator=gen)
    elif case == "rank_1":
        left, right = left[:, :1], right[:, :1]
    return left, right


@pytest.mark.skipif(not SCREEN_EXACT, reason="this CPU does not accumulate bf16 in float32")
@pytest.mark.parametrize(
    "case",
    [
        "gaussian",
        "unbalanced",
        "tiny",
        "heavy_tailed",
        "offset",
        "ill_conditioned",
        "rank_128",
        "rank_1",
    ],
)
def test_screen_margin_bounds_every_rough_score_and_is_tight(case):
    """Every bfloat16 score lies within the margin of the float32 one, on every sub-block."""
    left, right = _screen_factors(case)
    screen = engine._split_bounds(left, right, screen=True).screen
    rough = (screen.left @ screen.right.T).double()  # bfloat16 product, as the engine's blocks
    exact = left.double() @ right.double().T
    score = (left @ right.T).double()
    gap = (rough - score).abs()
    all_rows, all_cols = torch.arange(left.shape[0]), torch.arange(right.shape[0])
    assert float(gap.max()) <= screen.margin(all_rows, all_cols)
    # Per block the margin uses only that block's norms: check blocks of small-norm rows too.
    order = torch.argsort(left.norm(dim=1))
    rows, cols = order[:40], torch.argsort(right.norm(dim=1))[:50]
    assert float(gap[rows][:, cols].max()) <= screen.margin(rows, cols)
    # Tight enough to be useful: within ~1% of the largest possible entry (|l| |r| in the
    # balanced factors), so entries far from the top/bottom threshold are never rescored.
    scale = float(left.double().norm(dim=1).max() * right.double().norm(dim=1).max())
    if case not in ("unbalanced", "ill_conditioned"):
        assert screen.margin(all_rows, all_cols) <= 0.02 * float(exact.abs().max()) + 1e-3 * scale


@pytest.mark.skipif(not SCREEN_EXACT, reason="this CPU does not accumulate bf16 in float32")
def test_screen_rescores_only_a_few_entries_in_float32(monkeypatch):
    # Rows of equal norm (standardised bases): the norm bound prunes little, the screen a lot.
    gen = torch.Generator().manual_seed(1001)
    left = torch.nn.functional.normalize(torch.randn(3000, 64, generator=gen), dim=1)
    right = torch.nn.functional.normalize(torch.randn(2500, 64, generator=gen), dim=1)
    entries = {torch.bfloat16: 0, torch.float32: 0, "seed": 0}
    real = engine._scores_block

    def spy(a, b, buffer=None):
        out = real(a, b, buffer)
        entries[out.dtype if buffer is not None else "seed"] += out.numel()
        return out

    monkeypatch.setattr(engine, "_scores_block", spy)
    # k small against the seed's 512 x 512 entries, as k = 50 is against 49k x 49k: the seed's
    # threshold is then close enough that few rows come within the margin.
    top, bottom = topk_pairs_both(left, right, 5, screen=True)
    brute = topk_pairs_both(left, right, 5, prune=False)
    for got, want in zip((top, bottom), brute, strict=True):
        assert torch.equal(got.rows, want.rows) and torch.equal(got.cols, want.cols)
        assert torch.allclose(got.values, want.values, rtol=0, atol=1e-6)
    screened = entries[torch.bfloat16]
    assert screened > 0.1 * 3000 * 2500  # the bound alone leaves much to score ...
    assert entries[torch.float32] - 3000 * 2500 < 0.05 * screened  # ... the screen, not much
    assert top.scored == screened + entries[torch.float32] - 3000 * 2500 + entries["seed"]


def test_screen_option_is_checked_and_refused_where_not_exact(monkeypatch):
    left, right = torch.randn(40, 4), torch.randn(30, 4)
    # Not a CPU: never screened automatically, and refused when forced.
    assert engine._bfloat16_screen(torch.device("cuda")) == (False, False)
    # A CPU whose bfloat16 products fail the float32-accumulation canary: the same.
    monkeypatch.setattr(engine, "_bfloat16_screen", lambda device: (False, False))
    with pytest.raises(OptionError, match="screen=True: the bfloat16 screen is exact on CPUs"):
        topk_pairs(left, right, 3, screen=True)
    expected = topk_pairs(left, right, 3, screen=False)
    assert_pairs_equal(topk_pairs(left, right, 3), (expected.values, expected.rows, expected.cols))
