"""Real-weights tier: every interpreter on real layers of the offline zoo models.

Checks the adapters' spec against the known architectures, that every interpreter returns sane
output on a real layer, and that known-good behaviour is visible in embedding space: copying OV
heads far above chance, and FF value neurons whose top tokens share a word.
"""

import collections
import re

import pytest
import torch

import tl_embspace as te
from tl_embspace import zoo
from tl_embspace.interpreters import copying_scores

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def smollm2(require_zoo):
    # A missing wheel skips locally and fails in CI (CI=true), naming the pip command.
    require_zoo("smollm2-135m-instruct")
    return zoo.load("smollm2-135m-instruct", "bridge", device="cpu")


@pytest.fixture(scope="module")
def minilm(require_zoo):
    require_zoo("all-minilm-l6-v2")
    return zoo.load("all-minilm-l6-v2", "bridge", device="cpu")


def test_smollm2_spec_matches_the_known_architecture(smollm2):
    s = te.adapt(smollm2).spec
    assert (s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.d_head, s.d_mlp) == (
        30,
        576,
        9,
        3,
        64,
        1536,
    )
    assert (s.d_vocab, s.norm_type, s.positional, s.gated_mlp) == (49152, "RMS", "rotary", True)
    assert (
        s.tied_embeddings and s.unembed_trained and not s.is_encoder and s.norm_placement == "pre"
    )


def test_minilm_spec_matches_the_known_architecture(minilm):
    s = te.adapt(minilm).spec
    assert (s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.d_mlp, s.d_vocab) == (
        6,
        384,
        12,
        12,
        1536,
        30522,
    )
    assert (s.norm_type, s.norm_placement, s.positional, s.gated_mlp) == (
        "LN",
        "post",
        "standard",
        False,
    )
    assert s.is_encoder and not s.unembed_trained
    # Its W_U was never trained: refused as a basis, and the input embedding works instead.
    with pytest.raises(te.BasisError, match="never trained"):
        te.EmbeddingSpace(minilm)
    res = te.interpret("ff_value", minilm, layer=3, neurons=[0, 1], write="W_E", k=5)
    assert res.basis == "W_E^T" and torch.isfinite(res.top_scores).all()


def _sane(res, d_vocab):
    ids = (
        torch.cat([res.top_ids.flatten(), res.bottom_ids.flatten()])
        if hasattr(res, "top_ids")
        else torch.cat([res.top[1], res.top[2], res.bottom[1], res.bottom[2]])
    )
    assert ((ids >= 0) & (ids < d_vocab)).all()
    if hasattr(res, "top_scores"):
        assert torch.isfinite(res.top_scores).all() and torch.isfinite(res.bottom_scores).all()
        assert (res.top_scores[:, 0] >= res.bottom_scores[:, 0]).all()
        assert all(isinstance(res.vocab[i], str) and res.vocab[i] for i in ids.tolist())
    else:
        assert torch.isfinite(res.top[0]).all() and res.top[0][0] >= res.bottom[0][0]
        assert all(a and b for a, b, _ in res.pairs())


@pytest.mark.parametrize("weights", ["raw", "folded"])
def test_every_builtin_interpreter_runs_on_a_real_layer(smollm2, weights):
    view = te.adapt(smollm2)
    space = te.EmbeddingSpace(
        view.folded() if weights == "folded" else view, tokenizer=smollm2.tokenizer
    )
    layer, d_vocab = 12, view.spec.d_vocab
    calls = {
        "ff_key": dict(neurons=[0, 1, 2]),
        "ff_gate": dict(neurons=[0, 1, 2]),
        "ff_value": dict(neurons=[0, 1, 2]),
        "q": dict(heads=0),
        "k": dict(heads=0),
        "v": dict(heads=0),
        "o": dict(heads=0),
        "qk_pairs": dict(head=4),
        "ov_pairs": dict(head=4),
        "svd_ov": dict(head=4, components=[0, 1]),
        "svd_qk": dict(head=4, components=[0, 1]),
        "svd_in": dict(components=[0, 1]),
        "svd_out": dict(components=[0, 1]),
        "direction": dict(vectors=torch.randn(2, view.spec.d_model)),
        "embedding": dict(tokens=["Paris"]),
        "bias": None,  # Llama has no biases: a clear error, not zeros
        "router": None,  # a dense MLP has no router: a clear error
    }
    assert set(calls) == set(te.interpreters.names())
    for name, kw in calls.items():
        if kw is None:
            match = "no b_O or b_out" if name == "bias" else "router"
            with pytest.raises(te.MissingWeightError, match=match):
                te.interpret(name, space, layer=layer)
            continue
        if name not in ("direction", "embedding"):
            kw = dict(kw, layer=layer)
        _sane(te.interpret(name, space, k=10, **kw), d_vocab)


def test_copying_heads_are_visible_in_embedding_space(smollm2):
    space = te.EmbeddingSpace(te.adapt(smollm2).folded(), tokenizer=smollm2.tokenizer)
    layers = [1, 5, 9]
    scores = copying_scores(space, layers=layers, n_tokens=1024)
    chance = 1 / space.view.spec.d_vocab
    best = scores.max()
    # Some head copies hundreds of times more often than chance, and heads differ sharply.
    assert best > 500 * chance, scores
    assert best > 10 * scores.median().clamp_min(chance)
    # The measure is a property of the OV circuit: shuffling which token is "itself" kills it.
    layer_i, head = divmod(int(scores.argmax()), space.view.spec.n_heads)
    perm = torch.randperm(space.view.spec.d_vocab, generator=torch.Generator().manual_seed(0))
    shuffled = te.EmbeddingSpace(
        space.view,
        read=space.read.matrix[:, perm],
        write=space.write.matrix,
        tokenizer=smollm2.tokenizer,
    )
    assert copying_scores(shuffled, layers=[layers[layer_i]], n_tokens=1024)[0, head] < best / 10


def _stem(token: str) -> str:
    return re.sub(r"[^a-z0-9]", "", token.lower())


def _coherent(tokens: list[str]) -> bool:
    """At least 3 of the tokens are spellings of the same word (case, spaces, punctuation aside)."""
    stems = collections.Counter(_stem(t) for t in tokens if len(_stem(t)) >= 3)
    return bool(stems) and stems.most_common(1)[0][1] >= 3


def test_ff_value_neurons_promote_coherent_tokens(smollm2):
    space = te.EmbeddingSpace(te.adapt(smollm2).folded(), tokenizer=smollm2.tokenizer)
    res = te.interpret("ff_value", space, layer=15, k=10)
    coherent = sum(_coherent(res.top_tokens(i)) for i in range(len(res)))
    # Baseline: random sets of 10 tokens from the same vocabulary.
    gen = torch.Generator().manual_seed(0)
    random_sets = torch.randint(0, len(res.vocab), (len(res), 10), generator=gen)
    baseline = sum(_coherent([res.vocab[t] for t in row]) for row in random_sets.tolist())
    assert coherent >= 20 and coherent > 5 * max(baseline, 1), (coherent, baseline)
