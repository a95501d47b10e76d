"""Vocabulary hygiene: corpus counts, token detection, mask filters and score normalisation.

Every quantity is checked against a dense reference on small vocabularies; pair searches under
normalisation against the dense vocab x vocab matrix.
"""

import collections
import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import tl_embspace as te
from tl_embspace import vocab
from tl_embspace.errors import BasisError, FilterError, InvalidArgumentError
from tl_embspace.job import interpret_model
from tl_embspace.vocab import corpus as corpus_module

from . import tinymodels as tm

TEXTS = ["w1 w2 w3", "w2 w2 w5", "", "w7 w1"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(vocab.corpus.CACHE_ENV, str(folder))
    return folder


# ---------------------------------------------------------------------------------------------
# corpus counts
# ---------------------------------------------------------------------------------------------


def test_counts_equal_a_dense_count_and_are_cached(cache, tmp_path, monkeypatch):
    tok = tm.tokenizer()
    ref = collections.Counter(i for t in TEXTS for i in tok.encode(t, add_special_tokens=False))
    counts = vocab.count_tokens(tok, TEXTS)
    assert counts.n_tokens == sum(ref.values()) == 8
    assert {i: int(c) for i, c in enumerate(counts.counts) if c} == dict(ref)
    assert len(list(cache.rglob("*.pt"))) == 1
    # A second call reads the cache (counting again would fail here); a file gives the same.
    monkeypatch.setattr(corpus_module, "_count", lambda *a: pytest.fail("not cached"))
    assert torch.equal(vocab.count_tokens(tok, TEXTS).counts, counts.counts)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(TEXTS), encoding="utf-8")
    from_file = vocab.count_tokens(tok, path)
    assert from_file.name == "corpus.txt" and torch.equal(from_file.counts, counts.counts)


def test_corpus_filter_keeps_tokens_seen_min_count_times(cache):
    tok = tm.tokenizer()
    counts = vocab.count_tokens(tok, TEXTS, cache=False)
    w = tok.convert_tokens_to_ids
    d_vocab = tm.D_VOCAB + 4  # the model pads its vocabulary: padding is never seen
    at_least_2 = vocab.corpus_filter(counts, d_vocab, min_count=2).mask(tok, d_vocab)
    assert at_least_2.nonzero().squeeze(1).tolist() == sorted([w("w1"), w("w2")])
    seen = vocab.corpus_filter(counts, d_vocab).mask(tok, d_vocab)
    assert set(seen.nonzero().squeeze(1).tolist()) == {w(f"w{i}") for i in (1, 2, 3, 5, 7)}
    with pytest.raises(InvalidArgumentError, match="min_count"):
        counts.seen(d_vocab, 0)
    assert not list(cache.rglob("*.pt"))  # cache=False writes nothing


def test_wikitext2_needs_a_folder_and_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(vocab.corpus.DATA_ENV, raising=False)
    with pytest.raises(InvalidArgumentError, match="TL_EMBSPACE_DATA"):
        vocab.wikitext2_counts(tm.tokenizer())
    with pytest.raises(InvalidArgumentError, match="lacks"):
        vocab.wikitext2_counts(tm.tokenizer(), tmp_path)
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        vocab.count_tokens(tm.tokenizer(), tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------
# detection from the weights and the tokenizer
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unreachable_bpe():
    """A BPE whose vocabulary holds ``abc`` and ``bc`` that no merge ever produces."""
    vocab_ = {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5, "bc": 6, " ": 7}
    tok = Tokenizer(models.BPE(vocab_, [("a", "b")]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def test_unreachable_tokens_are_the_ones_no_text_encodes_to(unreachable_bpe):
    unreachable, partial = vocab.reachability(unreachable_bpe, 10)
    # abc -> [ab, c] and bc -> [b, c]; " " is split away; ids 8, 9 are padding.
    assert unreachable.nonzero().squeeze(1).tolist() == [5, 6, 7, 8, 9]
    assert not partial.any()


def test_byte_pieces_of_multibyte_characters_are_partial_utf8_not_unreachable():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["café naïve 日本 hello hello world"] * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    unreachable, partial = vocab.reachability(fast, len(fast))
    # A lone byte >= 0x80 is never a whole UTF-8 character; one below is ASCII.
    byte_of = _gpt2_byte_of_char()
    raws = fast.convert_ids_to_tokens(list(range(len(fast))))
    lone_high = {i for i, raw in enumerate(raws) if len(raw) == 1 and byte_of[raw] >= 0x80}
    assert len(lone_high) == 128

    def invalid_utf8(raw: str) -> bool:
        try:
            bytes(byte_of[c] for c in raw).decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    invalid = {i for i, raw in enumerate(raws) if invalid_utf8(raw)}
    assert lone_high < invalid  # merged pieces of a character too, e.g. the first 2 of 3 bytes
    assert set(partial.nonzero().squeeze(1).tolist()) == invalid
    assert not (unreachable & partial).any()
    ascii_bytes = [i for i, raw in enumerate(raws) if len(raw) == 1 and byte_of[raw] < 0x80]
    assert len(ascii_bytes) == 128 and not unreachable[ascii_bytes].any()


def _gpt2_byte_of_char() -> dict[str, int]:
    """GPT-2's byte -> printable character table, inverted (Radford et al.'s encoder.py)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _dense_undertrained(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    centred = rows - rows.mean(0)
    pc = np.linalg.svd(centred, full_matrices=False)[2][0]
    x = rows - np.outer(rows @ pc, pc)
    ref = x[reference].mean(0)
    return (x @ ref) / (np.linalg.norm(x, axis=1) * np.linalg.norm(ref))


def test_undertrained_scores_equal_a_dense_reference_and_find_the_unused_cluster():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(101, 16, generator=gen, dtype=torch.float64)
    unused = torch.zeros(101, dtype=torch.bool)
    unused[90:] = True  # 11 untrained rows: one shared direction plus small noise
    rows[90:] = torch.randn(16, generator=gen, dtype=torch.float64) + 0.05 * rows[90:]
    reference = torch.zeros(101, dtype=torch.bool)
    reference[95:] = True  # the detector only knows 6 of them
    scores = vocab.undertrained_scores(rows.float(), reference)
    dense = _dense_undertrained(rows.numpy(), reference.numpy())
    np.testing.assert_allclose(scores.numpy(), dense, rtol=1e-4, atol=1e-5)
    assert set((scores >= 0.9).nonzero().squeeze(1).tolist()) == set(range(90, 101))
    with pytest.raises(FilterError, match="known to be unused"):
        vocab.undertrained_scores(rows.float(), torch.zeros(101, dtype=torch.bool))


def test_norm_z_scores_equal_a_dense_reference():
    rows = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    norms = np.linalg.norm(rows.double().numpy(), axis=1)
    median = np.median(norms)
    dense = (norms - median) / (1.4826 * np.median(np.abs(norms - median)))
    np.testing.assert_allclose(vocab.detect.norm_z_scores(rows).numpy(), dense, rtol=1e-5)


def test_detect_tokens_on_a_tiny_model_flags_special_padding_and_planted_outliers():
    model = tm.load("llama-gqa-untied", "bridge")
    view = te.adapt(model)
    report = vocab.detect_tokens(view)
    d_vocab = view.spec.d_vocab
    special = report.special.nonzero().squeeze(1).tolist()
    assert set(te.tokens.special_ids(model.tokenizer, d_vocab)) <= set(special)
    assert all(i >= len(model.tokenizer) for i in special if i > 3)  # beyond: padding only
    # Plant a fragment: one embedding row 10x longer is a norm outlier.
    W_E = view.W_E.float().clone()
    W_E[20] *= 10
    z = vocab.detect.norm_z_scores(W_E)
    assert z[20] > 3 and int((z > 3).sum()) <= 2
    rows = report.rows()
    assert {r["id"] for r in rows} == set(report.flagged.nonzero().squeeze(1).tolist())
    json.dumps(rows)  # plain values only
    assert report.summary()["special"] == len(special)


# ---------------------------------------------------------------------------------------------
# mask filters
# ---------------------------------------------------------------------------------------------


def test_mask_filter_intersects_with_inherited_conditions_and_records_a_label():
    tok = tm.tokenizer()
    d_vocab = tm.D_VOCAB
    allowed = torch.zeros(d_vocab, dtype=torch.bool)
    allowed[:10] = True
    f = vocab.MaskFilter(allowed=allowed, label="first ten", exclude_special=True)
    special = te.tokens.special_ids(tok, d_vocab)
    assert f.mask(tok, d_vocab).nonzero().squeeze(1).tolist() == [
        i for i in range(10) if i not in special
    ]
    record = vocab.describe_filter(f)
    assert record["label"] == "first ten" and record["allowed"] == 10
    json.dumps(record)
    with pytest.raises(FilterError, match="covers 96 tokens"):
        f.mask(tok, d_vocab + 4)
    none = vocab.MaskFilter(allowed=torch.zeros(d_vocab, dtype=torch.bool), label="nothing")
    with pytest.raises(FilterError, match="allows no token"):
        none.mask(tok, d_vocab)
    # restrict(): a user's filter and a mask filter, both must hold.
    user = te.TokenFilter(exclude=[3, 4], exclude_same=True)
    both = vocab.restrict(user, f)
    assert both.exclude_same and both.mask(tok, d_vocab).nonzero().squeeze(1).tolist() == [
        i for i in range(10) if i not in special and i not in (3, 4)
    ]


def test_rankings_under_a_mask_filter_equal_the_dense_masked_ranking():
    model = tm.load("llama-gqa-untied", "bridge")
    space = te.EmbeddingSpace(te.adapt(model))
    d_vocab = space.write.matrix.shape[1]
    allowed = torch.arange(d_vocab) % 3 != 0
    f = vocab.MaskFilter(allowed=allowed, label="not multiples of 3")
    res = te.interpret("ff_value", space, layer=0, neurons=[0, 1, 2], k=5, token_filter=f)
    dense = te.adapt(model).layer(0).W_out[:3].float() @ space.write.matrix
    dense[:, ~allowed] = -torch.inf
    assert torch.equal(res.top_ids, dense.topk(5, dim=1).indices)
    pairs = te.interpret("ov_pairs", space, layer=0, head=1, k=6, token_filter=f)
    assert bool(allowed[pairs.top[1]].all() and allowed[pairs.top[2]].all())


# ---------------------------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------------------------


def test_random_direction_standardisation_is_the_z_score_over_gaussian_directions():
    gen = torch.Generator().manual_seed(0)
    B = torch.randn(8, 30, generator=gen) * torch.linspace(0.1, 5, 30)
    basis = vocab.standardise(te.Basis("B", B))
    assert basis.linear and "standardised(random)" in basis.name
    torch.testing.assert_close(basis.matrix, B / B.norm(dim=0))
    # Empirically: scores of many Gaussian directions have mean ~0 and std ~1 per token.
    scores = torch.randn(40000, 8, generator=gen) @ basis.matrix
    assert scores.mean(0).abs().max() < 0.03 and (scores.std(0) - 1).abs().max() < 0.03


def test_reference_standardisation_and_centring_equal_the_dense_per_token_statistics():
    gen = torch.Generator().manual_seed(1)
    B = torch.randn(6, 20, generator=gen)
    bias = torch.randn(20, generator=gen)
    pre = torch.tanh  # any non-linear pre-map, as the readout basis has
    basis = te.Basis("B", B, bias=bias, pre=pre)
    reference = torch.randn(50, 6, generator=gen) + 2
    x = torch.randn(4, 6, generator=gen)
    ref_scores = (pre(reference).double() @ B.double()) + bias.double()
    mu, sigma = ref_scores.mean(0), ref_scores.std(0, unbiased=False)
    raw = pre(x).double() @ B.double() + bias.double()
    for scale, expected in ((True, (raw - mu) / sigma), (False, raw - mu)):
        b = vocab.standardise(basis, reference, scale=scale)
        got = b.prepare(x) @ b.matrix + b.bias
        torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(BasisError, match="linear basis"):
        vocab.standardise(basis)
    with pytest.raises(BasisError, match="zero spread"):
        vocab.standardise(te.Basis("B", B), reference[:, :6] * 0 + 1)


def test_contrastive_readout_is_the_logit_lens_minus_its_corpus_mean():
    model = tm.load("llama-gqa-untied", "bridge")
    space = te.EmbeddingSpace(te.adapt(model).folded())
    hidden = torch.randn(30, space.view.spec.d_model, generator=torch.Generator().manual_seed(2))
    lens = te.space.make_basis(space.view, "readout")
    logits = lambda h: lens.prepare(h) @ lens.matrix + (0 if lens.bias is None else lens.bias)  # noqa: E731
    basis = vocab.contrastive_readout(space, hidden)
    got = basis.prepare(hidden[:3]) @ basis.matrix + basis.bias
    expected = logits(hidden[:3]) - logits(hidden).mean(0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


# Every normalisation option that is a per-token scale: (read side, write side) of normalised_space.
SCALINGS = {"both sides": (True, True), "read side": (True, False), "write side": (False, True)}


@pytest.mark.parametrize("sides", list(SCALINGS))
@pytest.mark.parametrize("circuit", ["ov_pairs", "qk_pairs"])
def test_pair_search_is_exact_under_standardisation(circuit, sides):
    model = tm.load("llama-gqa-untied", "bridge")
    raw = te.EmbeddingSpace(te.adapt(model).folded())
    read, write = SCALINGS[sides]
    space = vocab.normalised_space(raw, read=read, write=write)
    for side, scaled in (("read", read), ("write", write)):
        B = raw.basis(side).matrix
        expected = B / B.norm(dim=0) if scaled else B
        torch.testing.assert_close(space.basis(side).matrix, expected)
    lw = space.view.layer(1)
    head = 2
    if circuit == "ov_pairs":
        left, right = lw.W_V[head], lw.W_O_written[head].T
        basis_sides = ("read", "write")
    else:
        left, right = lw.W_Q_qk[head], lw.W_K_qk[head]
        basis_sides = ("read", "read")
    L, R = (space.basis(s).matrix for s in basis_sides)
    dense = (L.T @ left) @ (R.T @ right).T
    res = te.interpret(circuit, space, layer=1, head=head, k=7)
    flat = dense.flatten()
    values, idx = flat.topk(7)
    d_vocab = dense.shape[1]
    assert res.top[1].tolist() == (idx // d_vocab).tolist()
    assert res.top[2].tolist() == (idx % d_vocab).tolist()
    torch.testing.assert_close(res.top[0], values, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [True, False], ids=["reference-standardised", "centred"])
@pytest.mark.parametrize("circuit", ["ov_pairs", "qk_pairs"])
def test_pair_search_refuses_a_per_token_offset(circuit, scale):
    # Centring (and standardising over a reference set, which centres) adds a per-token offset:
    # not a factored product, so pair searches refuse it rather than return another quantity.
    model = tm.load("llama-gqa-untied", "bridge")
    raw = te.EmbeddingSpace(te.adapt(model).folded())
    ref = torch.randn(10, raw.view.spec.d_model, generator=torch.Generator().manual_seed(3))
    offset = vocab.normalised_space(raw, read=ref, write=ref, scale=scale)
    with pytest.raises(BasisError, match="per-token offset"):
        te.interpret(circuit, offset, layer=1, head=2, k=3)


# ---------------------------------------------------------------------------------------------
# the job's default, and the way back to the raw view
# ---------------------------------------------------------------------------------------------


def test_job_uses_hygiene_by_default_and_raw_on_request(tmp_path):
    model = tm.load("gpt2-mha-tied", "bridge")
    opts = dict(k=4, pair_k=3, svd_components=2, copying_tokens=32, layers=[1], progress=False)
    clean = te.Atlas.open(interpret_model(model, tmp_path / "h", **opts))
    raw = te.Atlas.open(interpret_model(model, tmp_path / "r", vocab="raw", **opts))
    assert clean.options["vocab"]["mode"] == "hygiene"
    assert "standardised(random)" in clean.provenance["write_basis"]
    assert clean.options["vocab"]["filter"]["label"].startswith("hygiene:")
    assert raw.options["vocab"] == {"mode": "raw", "filter": None, "normalisation": None}
    assert raw.provenance["write_basis"] == "W_U"
    hygiene_page = (tmp_path / "h/index.html").read_text()
    assert "<th>vocabulary</th><td>hygiene (hygiene: not special" in hygiene_page
    assert "<th>vocabulary</th><td>raw (every token" in (tmp_path / "r/index.html").read_text()
    # No flagged token in any hygiene list; the raw job equals the plain interpreter.
    flagged = vocab.detect_tokens(te.adapt(model).folded()).flagged
    ids = clean.layer(1).vectors["ff_value"].top_ids
    assert not flagged[torch.from_numpy(ids).long()].any()
    space = te.EmbeddingSpace(te.adapt(model).folded(), tokenizer=model.tokenizer)
    ref = te.interpret("ff_value", space, layer=1, k=4)
    assert (raw.layer(1).vectors["ff_value"].top_ids == ref.top_ids.numpy()).all()
    assert clean.matches(model) and raw.matches(model)  # hashes the model's own unembedding
    with pytest.raises(InvalidArgumentError, match="vocab must be"):
        interpret_model(model, tmp_path / "x", vocab="clean", **opts)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# command line: --vocab, --corpus, --min-count
# ---------------------------------------------------------------------------------------------

from .test_cli import FAST, _run, tiny  # noqa: E402, F401 - the CLI's tiny-model fixture


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vocab", "clean"], "argument --vocab: invalid choice: 'clean'"),
        (["--min-count", "0"], "argument --min-count: expected a positive integer"),
        (["--vocab", "raw", "--corpus", "{corpus}"], "needs --vocab hygiene"),
        (["--corpus", "{missing}"], "no such file"),
    ],
)
def test_cli_vocab_arguments_are_refused_before_loading(tiny, tmp_path, capsys, args, message):  # noqa: F811
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("w1 w2\n", encoding="utf-8")
    args = [a.format(corpus=corpus, missing=tmp_path / "missing.txt") for a in args]
    assert _run(tmp_path, *args) == 2
    assert message in capsys.readouterr().err
    assert tiny == []


def test_cli_corpus_vocabulary_is_applied_and_recorded(tiny, tmp_path, cache):  # noqa: F811
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("w1 w2 w3 w4 w5\nw5 w6 w7 w8 w9 w10 w11\n", encoding="utf-8")
    assert _run(tmp_path, *FAST, "--layers", "1", "--corpus", str(corpus)) == 0
    atlas = te.Atlas.open(tmp_path / "out")
    record = atlas.options["vocab"]
    assert record["mode"] == "hygiene" and record["filter"]["label"].endswith("count>=1")
    tok = tm.tokenizer()
    allowed = {tok.convert_tokens_to_ids(f"w{i}") for i in range(1, 12)}
    assert record["filter"]["allowed"] <= len(allowed)
    ids = atlas.layer(1).vectors["ff_value"].top_ids
    assert set(ids.flatten().tolist()) <= allowed
