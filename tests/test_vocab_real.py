"""Vocabulary hygiene on the real SmolLM2-135M-Instruct weights (offline zoo).

The detector must find the tokens anyone can check by eye (code identifiers never seen in text,
intermediate BPE merges), flag no special token as under-trained, and, against WikiText-2 counts
(when the data folder is there), flag almost only tokens that never occur in text.
"""

import os
from pathlib import Path

import pytest
import torch

import tl_embspace as te
from tl_embspace import vocab, zoo

pytestmark = pytest.mark.real

DATA = Path(os.environ.get(vocab.corpus.DATA_ENV) or Path(__file__).parents[1] / "../shared/data")


@pytest.fixture(scope="module")
def smollm2(require_zoo):
    require_zoo("smollm2-135m-instruct")
    return zoo.load("smollm2-135m-instruct", "bridge", device="cpu")


@pytest.fixture(scope="module")
def report(smollm2):
    return vocab.detect_tokens(te.adapt(smollm2).folded())


@pytest.fixture(scope="module")
def seen(smollm2, tmp_path_factory):
    if not (DATA / "wikitext-2" / "valid.txt").is_file():
        pytest.skip(f"WikiText-2 not found under {DATA}; set {vocab.corpus.DATA_ENV}")
    counts = vocab.wikitext2_counts(smollm2.tokenizer, DATA, cache=False)
    assert counts.n_tokens > 500_000
    return counts.seen(te.adapt(smollm2).spec.d_vocab)


def _ids(tokenizer, texts):
    return [tokenizer.convert_tokens_to_ids(t) for t in texts]


def test_known_under_trained_and_fragment_tokens_are_flagged(smollm2, report):
    tok = smollm2.tokenizer
    for token in ("ĠInstancePreprocess", "ManagementPlaneProtection", "swigfaiss"):
        assert report.undertrained[tok.convert_tokens_to_ids(token)], token
    for token in ("Ġstrugg", "Ġinterpre", "Ġaffili"):
        assert report.fragment[tok.convert_tokens_to_ids(token)], token
    for token in ("Ġthe", "ĠParis", "Ġhouse"):
        assert not report.flagged[tok.convert_tokens_to_ids(token)], token
    s = report.summary()
    # Byte-level BPE: nothing is unreachable; lone bytes >= 0x80 are partial UTF-8.
    assert s["unreachable"] == 0 and s["partial_utf8"] >= 128
    assert s["special"] == 17 and not (report.special & report.undertrained).any()


def test_flagged_tokens_almost_never_occur_in_wikitext(report, seen):
    for name in ("undertrained", "fragment"):
        mask = getattr(report, name)
        assert float((~seen[mask]).float().mean()) > 0.95, name  # base rate: 65%


def test_hygiene_cleans_the_quick_start_head(smollm2, report, seen):
    raw = te.EmbeddingSpace(te.adapt(smollm2).folded())
    choice = vocab.choose_vocabulary(raw, "hygiene")
    before = te.interpret("ov_pairs", raw, layer=5, head=1, k=10)
    after = te.interpret(
        "ov_pairs", choice.space, layer=5, head=1, k=10, token_filter=choice.token_filter
    )
    ids = lambda r: torch.cat([r.top[1], r.top[2]])  # noqa: E731
    assert report.flagged[ids(before)].any() and not report.flagged[ids(after)].any()
    assert float((~seen[ids(after)]).float().mean()) < float((~seen[ids(before)]).float().mean())
