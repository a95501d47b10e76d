"""Adapters: declared facts, GQA layout, read-only guarantee, on-the-fly folding, logit lens."""

import re

import pytest
import torch

import tl_embspace as te
from tl_embspace.adapters import adapt

from . import tinymodels as tm

DECODERS = [c for c in tm.CASES if not c.startswith("bert")]
LAYER_FIELDS = [
    "W_Q", "W_K", "W_V", "W_O", "W_K_grouped", "W_V_grouped",
    "b_Q", "b_K_grouped", "b_V_grouped", "b_O",
    "W_in", "W_gate", "W_out", "b_in", "b_out",
]  # fmt: skip
GLOBAL_FIELDS = ["W_E", "W_U", "b_U", "W_pos"]


def _close(a, b, what, atol=1e-5):
    # A bias the checkpoint lacks is None on the bridge and zeros on HookedTransformer.
    if a is None or b is None:
        other = b if a is None else a
        assert other is None or float(other.abs().max()) < atol, f"{what}: None vs non-zero"
        return
    assert a.shape == b.shape, f"{what}: {tuple(a.shape)} vs {tuple(b.shape)}"
    torch.testing.assert_close(
        a.float(), b.float(), atol=atol, rtol=1e-4, msg=lambda m: f"{what}: {m}"
    )


def assert_same_weights(v1, v2, atol=1e-5):
    for f in GLOBAL_FIELDS:
        _close(getattr(v1.globals, f), getattr(v2.globals, f), f, atol)
    for layer in range(v1.spec.n_layers):
        a, b = v1.layer(layer), v2.layer(layer)
        for f in LAYER_FIELDS:
            _close(getattr(a, f), getattr(b, f), f"L{layer}.{f}", atol)


@pytest.mark.parametrize("backend", tm.backends())
@pytest.mark.parametrize("case", list(tm.CASES))
def test_spec_declares_architecture(case, backend):
    c = tm.CASES[case]
    spec = adapt(tm.load(case, backend)).spec
    assert spec.n_heads == c.n_heads and spec.n_kv_heads == c.n_kv_heads
    assert spec.tied_embeddings == c.tied
    assert spec.is_encoder == (c.family == "bert")
    assert spec.norm_placement == ("post" if c.family == "bert" else "pre")
    assert spec.norm_type == ("RMS" if c.family == "llama" else "LN")
    assert spec.gated_mlp == (c.family == "llama")
    assert spec.positional == ("rotary" if c.family in ("llama", "neox") else "standard")
    assert spec.parallel_attn_mlp == (c.family == "neox")
    assert spec.ln_folded is False and spec.weights_processed is False
    assert spec.d_vocab == tm.D_VOCAB


@pytest.mark.parametrize("backend", tm.backends())
@pytest.mark.parametrize("case", ["llama-gqa-untied", "llama-mqa-tied"])
def test_kv_heads_expand_with_repeat_interleave(case, backend):
    view = adapt(tm.load(case, backend))
    g = view.spec.group_size
    lw = view.layer(0)
    assert lw.W_K_grouped.shape[0] == view.spec.n_kv_heads
    for h in range(view.spec.n_heads):
        assert view.spec.kv_head(h) == h // g
        assert torch.equal(lw.W_K[h], lw.W_K_grouped[h // g])
        assert torch.equal(lw.W_V[h], lw.W_V_grouped[h // g])


@pytest.mark.parametrize("case", list(tm.CASES))
def test_hooked_and_bridge_read_the_same_raw_weights(case):
    if not tm.has_hooked():
        pytest.skip("HookedTransformer was removed in TransformerLens 4")
    assert_same_weights(adapt(tm.load(case, "hooked")), adapt(tm.load(case, "bridge")))


@pytest.mark.parametrize("case", DECODERS)
def test_hooked_and_bridge_processed_weights_agree(case):
    if not tm.has_hooked():
        pytest.skip("HookedTransformer was removed in TransformerLens 4")
    assert_same_weights(
        adapt(tm.load(case, "hooked", True)), adapt(tm.load(case, "bridge", True)), atol=1e-4
    )


@pytest.mark.parametrize("backend", tm.backends())
@pytest.mark.parametrize("case", DECODERS)
def test_folding_on_the_fly_matches_transformer_lens_processing(case, backend):
    ours = adapt(tm.load(case, backend)).folded()
    theirs = adapt(tm.load(case, backend, processed=True))
    assert ours.spec.ln_folded and theirs.spec.ln_folded
    assert ours.weights.startswith("folded(") and theirs.weights == "tl-processed"
    assert_same_weights(ours, theirs, atol=1e-4)
    # Folding is idempotent: processed weights fold to themselves.
    assert_same_weights(theirs.folded(), theirs, atol=1e-5)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("backend", tm.backends())
@pytest.mark.parametrize("case", ["llama-gqa-untied", "gpt2-mha-tied", "bert-encoder"])
def test_reading_never_mutates_the_model(case, backend):
    model = tm.load(case, backend)
    before = _params(model)
    view = adapt(model)
    views = [view] if view.spec.is_encoder else [view, view.folded()]
    for v in views:
        for layer in range(v.spec.n_layers):
            lw = v.layer(layer)
            lw.W_Q.mul_(0)  # even writing into a view must not reach the model
        v.globals.W_E.add_(1)
        space = te.EmbeddingSpace(v, tokenizer=model.tokenizer, write="W_E")
        te.interpret("ff_value", space, layer=0, k=3)
        te.interpret("ov_pairs", space, layer=0, head=0, k=3)
        te.interpret("svd_ov", space, layer=0, head=0, k=3)
    after = _params(model)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def _final_resid_and_logits(model, tokens):
    # HookedEncoder's resid_post is taken before the block's closing LayerNorm; the residual
    # stream a BERT block hands on is its normalized_resid_post (the bridge's resid_post).
    hook = (
        "hook_normalized_resid_post"
        if type(model).__name__ == "HookedEncoder"
        else "hook_resid_post"
    )
    name = f"blocks.{model.cfg.n_layers - 1}.{hook}"
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    return cache[name], logits


@pytest.mark.parametrize("processed", [False, True])
@pytest.mark.parametrize("backend", tm.backends())
@pytest.mark.parametrize("case", DECODERS)
def test_logit_lens_on_final_residual_reproduces_model_logits(case, backend, processed):
    model = tm.load(case, backend, processed)
    tokens = torch.tensor([[7]])
    with torch.no_grad():
        resid, logits = _final_resid_and_logits(model, tokens)
    view = adapt(model)
    torch.testing.assert_close(view.logits(resid), logits.float(), atol=1e-4, rtol=1e-4)
    # The readout basis gives the same numbers through the public projection path.
    space = te.EmbeddingSpace(model, write="readout")
    res = te.interpret("direction", space, vectors=resid[0, -1], k=5)
    top = logits[0, -1].float().topk(5)
    assert res.top_ids[0].tolist() == top.indices.tolist()
    torch.testing.assert_close(res.top_scores[0], top.values, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", tm.backends())
def test_encoder_readout_goes_through_mlm_head(backend):
    model = tm.load("bert-encoder", backend)
    tokens = torch.tensor([[5, 9, 11]])
    with torch.no_grad():
        resid, logits = _final_resid_and_logits(model, tokens)
    torch.testing.assert_close(adapt(model).logits(resid), logits.float(), atol=1e-4, rtol=1e-4)


def test_post_norm_models_refuse_folding():
    with pytest.raises(te.UnsupportedModelError, match="post-norm"):
        adapt(tm.load("bert-encoder", "bridge")).folded()


def test_unknown_objects_are_refused_with_the_supported_list():
    with pytest.raises(
        te.UnsupportedModelError, match="HookedTransformer.*TransformerBridge|TransformerBridge"
    ):
        adapt(torch.nn.Linear(2, 2))


def test_rotary_models_have_no_positional_embedding():
    view = adapt(tm.load("llama-mha-untied", "bridge"))
    with pytest.raises(te.MissingWeightError, match="rotary"):
        _ = view.W_pos


def test_declared_untrained_unembedding_is_refused_as_a_basis():
    from tl_embspace import _facts

    model = tm.load("bert-encoder", "bridge")
    _facts.declare(model, unembed_trained=False)
    with pytest.raises(te.BasisError, match="never trained"):
        te.EmbeddingSpace(model, write="W_U")
    # The input embedding stays usable.
    res = te.interpret("ff_value", model, layer=0, neurons=[0], write="W_E", k=3)
    assert res.basis == "W_E^T"


def test_views_carry_the_tokenizer_into_spaces():
    model = tm.load("gpt2-mha-tied", "bridge")
    folded = adapt(model).folded()
    assert folded.tokenizer is model.tokenizer
    res = te.interpret("ff_value", te.EmbeddingSpace(folded), layer=0, neurons=[0], k=3)
    assert not any(t.startswith("<id ") for t in res.top_tokens(0))


@pytest.mark.parametrize(
    "overrides,architecture,match",
    [
        (dict(num_experts=8), "LlamaForCausalLM", "cfg.num_experts=8"),
        (dict(normalization_type=None), "LlamaForCausalLM", "cfg.normalization_type=None"),
        (dict(act_fn="solu_ln"), "GPT2LMHeadModel", "cfg.act_fn='solu_ln'"),
        (dict(n_key_value_heads=3), "LlamaForCausalLM", "n_key_value_heads=3"),
        (dict(output_logits_soft_cap=30.0), "LlamaForCausalLM", "cfg.output_logits_soft_cap=30.0"),
        (dict(parallel_attn_mlp=True), "LlamaForCausalLM", "cfg.parallel_attn_mlp=True"),
        ({}, "VaultGemmaForCausalLM", "architecture='VaultGemmaForCausalLM'"),
        (dict(attn_scores_soft_cap=50.0), "LlamaForCausalLM", "cfg.attn_scores_soft_cap=50.0"),
        ({}, "DeepseekV3ForCausalLM", "latent attention"),
        ({}, "NoSuchModelForCausalLM", "architecture='NoSuchModelForCausalLM'"),
    ],
)
def test_unsupported_configs_are_refused_naming_the_attribute(overrides, architecture, match):
    from types import SimpleNamespace

    from tl_embspace.adapters._common import accept

    cfg = SimpleNamespace(
        **{
            "num_experts": None,
            "normalization_type": "RMS",
            "act_fn": "silu",
            "n_heads": 4,
            "n_key_value_heads": 2,
            **overrides,
        }
    )
    with pytest.raises(te.UnsupportedModelError, match=re.escape(match) if "=" in match else match):
        accept(cfg, architecture)
