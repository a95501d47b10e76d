"""Adapter families: allow-list refusals, facts, folded options, q/k norms, every-layer layout."""

import copy
import dataclasses
import re

import pytest
import torch

import tl_embspace as te
from tl_embspace import _facts
from tl_embspace.adapters import ModelFacts, adapt
from tl_embspace.adapters.families import FAMILIES, family_for, supported_architectures
from tl_embspace.space import make_basis

from . import tinymodels as tm

QWEN3 = "Qwen3ForCausalLM"


@pytest.fixture(scope="module")
def qwen3():
    return tm.arch_bridge(QWEN3)


# -- facts -----------------------------------------------------------------------------------
def test_declared_facts_survive_deepcopy():
    model = tm.bridge("bert-encoder")
    _facts.declare(model, unembed_trained=False, model_name="tiny-bert")
    clone = copy.deepcopy(model)
    spec = adapt(clone).spec
    assert spec.unembed_trained is False and spec.model_name == "tiny-bert"
    with pytest.raises(te.BasisError, match="never trained"):
        te.EmbeddingSpace(clone, write="W_U")


def test_undeclared_model_has_no_facts():
    assert _facts.declared(tm.bridge("gpt2-mha-tied")) == {}
    assert adapt(tm.bridge("gpt2-mha-tied")).spec.unembed_trained is True


@pytest.mark.parametrize("declared", [True, False])
def test_explicit_facts_override_declared_ones(declared):
    model = tm.bridge("bert-encoder")
    _facts.declare(model, unembed_trained=declared, model_name="declared-name")
    spec = adapt(model, facts=ModelFacts(unembed_trained=not declared)).spec
    assert spec.unembed_trained is (not declared)
    assert spec.model_name == "declared-name"  # a fact not given explicitly stays declared


def test_facts_for_an_existing_view_are_refused():
    view = adapt(tm.bridge("gpt2-mha-tied"))
    with pytest.raises(te.UnsupportedModelError, match="facts="):
        adapt(view, facts=ModelFacts(unembed_trained=False))


def test_declaring_an_unknown_fact_raises():
    with pytest.raises(TypeError, match="unknown model facts"):
        _facts.declare(tm.bridge("gpt2-mha-tied"), trained=True)


# -- folded options ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option", ["center_writing_weights", "center_unembed", "fold_value_biases"]
)
def test_refolding_with_other_options_honours_them(option):
    base = adapt(tm.bridge("gpt2-mha-tied"))
    folded = base.folded()
    assert folded.folded() is folded
    assert folded.folded(**{option: True}) is folded  # the same options: the same view
    other = folded.folded(**{option: False})
    direct = base.folded(**{option: False})
    assert option not in other.weights and other.weights == direct.weights
    assert other.weights.endswith("of raw")
    changed = False
    for layer in range(base.spec.n_layers):
        a, b = other.layer(layer), direct.layer(layer)
        for f in ("W_O", "b_O", "W_out", "b_out", "b_V_grouped"):
            x, y = getattr(a, f), getattr(b, f)
            assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), f
            z = getattr(folded.layer(layer), f)
            changed |= x is not None and not torch.allclose(x, z)
    changed |= not torch.allclose(other.W_U, folded.W_U)
    assert changed, f"{option}=False produced the default folding"


def test_folded_rejects_unknown_options():
    with pytest.raises(TypeError):
        adapt(tm.bridge("gpt2-mha-tied")).folded().folded(fold_ln=False)


# -- allow-list and refusals ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "architecture,reason",
    [
        ("MambaForCausalLM", "state-space"),
        ("DeepseekV2ForCausalLM", "multi-head latent attention"),
        ("VaultGemmaForCausalLM", "not verified"),
        ("JetMoeForCausalLM", "mixture-of-attention"),
    ],
)
def test_families_without_a_verified_adapter_are_refused_by_name(architecture, reason):
    named = re.escape(f"architecture={architecture!r}")
    with pytest.raises(te.UnsupportedModelError, match=named) as e:
        adapt(tm.arch_bridge(architecture))
    assert reason in str(e.value)


def test_an_unlisted_architecture_is_refused_with_the_supported_list():
    with pytest.raises(te.UnsupportedModelError, match="on no adapter family's allow-list") as e:
        family_for("MadeUpForCausalLM")
    assert "LlamaForCausalLM" in str(e.value)


def test_every_listed_architecture_belongs_to_exactly_one_family():
    archs = supported_architectures()
    assert len(archs) == len(set(archs))
    assert {family_for(a).name for a in archs} == set(FAMILIES.names())


def test_layout_is_checked_on_every_layer():
    model = tm.arch_bridge(QWEN3)
    # Our own tiny model: drop layer 1's q-norm so only that layer disagrees with its family.
    del model.blocks[1].attn._modules["q_norm"]
    message = re.escape("blocks[1].attn has q/k norms ['k_norm']")
    with pytest.raises(te.UnsupportedModelError, match=message):
        adapt(model)


# -- Qwen3: q/k norms ----------------------------------------------------------------------------
def test_qwen3_spec_records_its_features(qwen3):
    spec = adapt(qwen3).spec
    assert spec.family == "qwen3" and spec.qk_norm is True
    assert spec.rotary_dim == spec.d_head == 8
    assert spec.attention_layers == (0, 1)
    assert spec.n_experts == 0 and spec.norm_offset == 0.0 and spec.final_softcap is None


@pytest.mark.parametrize("layer", [0, 1])
def test_qwen3_qk_norm_gains_are_read_from_the_model(qwen3, layer):
    hf = tm.arch_hf(QWEN3).model.layers[layer].self_attn
    lw = adapt(qwen3).layer(layer)
    torch.testing.assert_close(lw.q_norm_w, hf.q_norm.weight.detach())
    torch.testing.assert_close(lw.k_norm_w, hf.k_norm.weight.detach())
    assert not torch.allclose(lw.q_norm_w, torch.ones_like(lw.q_norm_w))


@pytest.mark.parametrize("layer", [0, 1])
def test_qwen3_qk_circuit_includes_the_norm_gains(qwen3, layer):
    """Content QK scores from the view equal the model's, up to the per-head normalisations."""
    hf = tm.arch_hf(QWEN3).model.layers[layer].self_attn
    view = adapt(qwen3)
    lw = view.layer(layer)
    x = torch.randn(5, view.spec.d_model)
    with torch.no_grad():
        q = (x @ lw.W_Q).transpose(0, 1)  # [pos, head, d_head]
        k = (x @ lw.W_K).transpose(0, 1)
        true = torch.einsum("qhd,khd->hqk", hf.q_norm(q), hf.k_norm(k))
        rms = lambda t: torch.rsqrt(t.pow(2).mean(-1) + hf.q_norm.variance_epsilon)  # noqa: E731
        # Undo the per-head normalisation (a positive scalar per query and per key).
        dense = true / rms(q).T[:, :, None] / rms(k).T[:, None, :]
    ours = torch.einsum("qm,hmd,hnd,kn->hqk", x, lw.W_Q_qk, lw.W_K_qk, x)
    torch.testing.assert_close(ours, dense, atol=1e-4, rtol=1e-4)
    without = torch.einsum("qm,hmd,hnd,kn->hqk", x, lw.W_Q, lw.W_K, x)
    assert not torch.allclose(without, dense, atol=1e-2), "gains must matter in this tiny model"


def test_qwen3_folded_view_keeps_the_qk_norm_gains_in_the_circuit(qwen3):
    view = adapt(qwen3)
    raw, folded = view.layer(1), view.folded().layer(1)
    # Folding moves ln1 into W_Q/W_K; the q/k-norm gains stay separate (as in TransformerLens)
    # and enter the QK circuit through W_Q_qk / W_K_qk.
    torch.testing.assert_close(folded.W_Q, raw.W_Q * raw.ln1_w[:, None])
    torch.testing.assert_close(folded.q_norm_w, raw.q_norm_w)
    torch.testing.assert_close(folded.W_Q_qk, raw.W_Q * raw.ln1_w[:, None] * raw.q_norm_w)
    torch.testing.assert_close(folded.W_K_qk, raw.W_K * raw.ln1_w[:, None] * raw.k_norm_w)


# -- Gemma: norm offset, embedding scale, soft-caps, post-norms ----------------------------------
@pytest.mark.parametrize("architecture", ["GemmaForCausalLM", "Gemma2ForCausalLM"])
def test_gemma_spec_records_offset_scale_and_caps(architecture):
    hf = tm.arch_hf(architecture)
    spec = adapt(tm.arch_bridge(architecture)).spec
    assert spec.norm_offset == 1.0
    assert spec.embed_scale == pytest.approx(float(hf.model.embed_tokens.embed_scale))
    caps = (
        getattr(hf.config, "attn_logit_softcapping", None),
        getattr(hf.config, "final_logit_softcapping", None),
    )
    assert (architecture == "Gemma2ForCausalLM") == (caps[1] is not None)
    assert (spec.attn_softcap, spec.final_softcap) == caps


def test_gemma2_norm_gains_include_the_offset_and_post_norms_are_read():
    hf = tm.arch_hf("Gemma2ForCausalLM").model
    view = adapt(tm.arch_bridge("Gemma2ForCausalLM"))
    lw, block = view.layer(1), hf.layers[1]
    torch.testing.assert_close(lw.ln1_w, 1 + block.input_layernorm.weight.detach())
    torch.testing.assert_close(lw.ln1_post_w, 1 + block.post_attention_layernorm.weight.detach())
    torch.testing.assert_close(lw.ln2_post_w, 1 + block.post_feedforward_layernorm.weight.detach())
    torch.testing.assert_close(view.globals.ln_final_w, 1 + hf.norm.weight.detach())
    torch.testing.assert_close(lw.W_O_written, lw.W_O * lw.ln1_post_w)
    torch.testing.assert_close(lw.W_out_written, lw.W_out * lw.ln2_post_w)
    plain = adapt(tm.bridge("llama-gqa-untied")).layer(0)
    assert plain.W_O_written is plain.W_O and plain.W_out_written is plain.W_out


def test_gemma2_logits_are_soft_capped_and_unembed_centring_is_refused():
    model = tm.arch_bridge("Gemma2ForCausalLM")
    view = adapt(model)
    name = view.hook_names.final_resid
    with torch.no_grad():
        logits, cache = model.run_with_cache(torch.tensor([[3, 8, 13]]), names_filter=[name])
    torch.testing.assert_close(view.logits(cache[name]), logits, atol=1e-4, rtol=1e-4)
    assert float(logits.abs().max()) <= view.spec.final_softcap
    assert "center_unembed" not in view.folded().weights
    with pytest.raises(te.UnsupportedModelError, match="soft-capped"):
        view.folded(center_unembed=True)


def test_qwen3_qk_pairs_equal_the_dense_circuit_with_the_gains(qwen3):
    """The interpreter (not only the view) reads the q/k-norm gains: top pairs = dense reference."""
    view = adapt(qwen3)
    lw, B = view.layer(1), view.W_E.float().T  # default read basis W_E
    dense = (B.T @ lw.W_Q_qk[0].float()) @ (lw.W_K_qk[0].float().T @ B)
    res = te.qk_pairs(qwen3, layer=1, head=0, k=10)
    scores, rows, cols = res.top
    torch.testing.assert_close(scores, dense.flatten().topk(10).values, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dense[rows, cols], scores, atol=1e-4, rtol=1e-4)


# -- OLMo-2: post-sublayer norms only, q/k norms over the whole projection ----------------------
OLMO2 = "Olmo2ForCausalLM"


@pytest.fixture(scope="module")
def olmo2():
    return tm.arch_bridge(OLMO2)


def test_olmo2_view_reports_no_pre_norms_and_reads_the_post_norm_gains(olmo2):
    hf = tm.arch_hf(OLMO2).model
    view = adapt(olmo2)
    spec = view.spec
    assert (spec.norm_placement, spec.qk_norm, spec.qk_norm_scope) == (
        "sublayer",
        True,
        "projection",
    )
    assert not spec.residual_normalised_in_place
    for layer, block in enumerate(hf.layers):
        lw = view.layer(layer)
        assert (lw.ln1_w, lw.ln1_b, lw.ln2_w, lw.ln2_b) == (None, None, None, None)
        torch.testing.assert_close(lw.ln1_post_w, block.post_attention_layernorm.weight.detach())
        torch.testing.assert_close(lw.ln2_post_w, block.post_feedforward_layernorm.weight.detach())
        torch.testing.assert_close(lw.W_O_written, lw.W_O * lw.ln1_post_w)
    # Sublayers read the residual itself: no hook is read "before a norm's weights".
    names = view.hook_names
    assert names.norm_after == ()
    assert names.at("attn_in", 0) == names.at("resid_pre", 0)


def test_olmo2_folded_view_folds_only_the_final_norm(olmo2):
    view = adapt(olmo2)
    folded = view.folded()
    lw, flw = view.layer(1), folded.layer(1)
    # Nothing precedes the sublayers, so their read weights are unchanged ...
    torch.testing.assert_close(flw.W_Q, lw.W_Q.float())
    torch.testing.assert_close(flw.W_in, lw.W_in.float())
    # ... the post-norm and q/k-norm gains stay, and ln_final moves into W_U (RMS: no centring).
    torch.testing.assert_close(flw.ln2_post_w, lw.ln2_post_w.float())
    torch.testing.assert_close(flw.W_K_qk, lw.W_K_qk.float())
    g = view.globals
    expected = g.W_U.float() * g.ln_final_w.float()[:, None]
    torch.testing.assert_close(folded.W_U, expected - expected.mean(-1, keepdim=True))


def test_olmo2_qk_norm_gains_are_per_projection_and_match_the_forward_pass(olmo2):
    """The q/k norms normalise each token's whole projection (all heads at once), as OLMo-2 does.

    Rebuilt from the view: ``normalise(x W_Q over all heads) * q_norm_w`` equals the model's
    normalised queries; normalising each head on its own (the Qwen3 reading) does not.
    """
    view = adapt(olmo2)
    spec = view.spec
    layer = 1
    lw = view.layer(layer)
    assert lw.q_norm_w.shape == (spec.n_heads, spec.d_head)
    assert lw.k_norm_w.shape == (spec.n_kv_heads, spec.d_head)
    names = [f"blocks.{layer}.hook_resid_pre"]
    names += [f"blocks.{layer}.attn.{n}_norm.hook_out" for n in ("q", "k")]
    with torch.no_grad():
        _, cache = olmo2.run_with_cache(torch.tensor([[3, 8, 13, 21, 5]]), names_filter=names)
    x = cache[names[0]].float()

    def normed(w, gain, per_head):
        raw = torch.einsum("bpd,hde->bphe", x, w.float())  # [batch, pos, heads, d_head]
        flat = raw.flatten(-2)
        rms = (raw if per_head else flat).pow(2).mean(-1, keepdim=True) + spec.eps
        out = (
            (raw * torch.rsqrt(rms))
            if per_head
            else (flat * torch.rsqrt(rms)).unflatten(-1, raw.shape[-2:])
        )
        return out * gain.float()

    q, k = (cache[n].float().reshape(1, 5, -1, spec.d_head) for n in names[1:])
    torch.testing.assert_close(normed(lw.W_Q, lw.q_norm_w, False), q, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(normed(lw.W_K_grouped, lw.k_norm_w, False), k, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(normed(lw.W_Q, lw.q_norm_w, True), q, atol=1e-3)
    # The QK circuit folds each head's slice of the gain into W_Q / the expanded W_K.
    torch.testing.assert_close(lw.W_Q_qk, lw.W_Q * lw.q_norm_w[:, None, :])
    kv = [spec.kv_head(h) for h in range(spec.n_heads)]
    torch.testing.assert_close(lw.W_K_qk, lw.W_K * lw.k_norm_w[kv][:, None, :])


def test_post_norm_check_catches_a_wrong_post_norm_gain(olmo2):
    """The harness's post-norm check compares with the forward pass: a wrong gain fails it."""
    from .archzoo import checks

    assert checks.forward_checks(olmo2, adapt(olmo2))["mlp"].kind == "pass"

    class WrongGain:
        def __init__(self, view):
            self._view, self.spec, self.hook_names = view, view.spec, view.hook_names

        def layer(self, layer):
            lw = self._view.layer(layer)
            return dataclasses.replace(lw, ln2_post_w=lw.ln2_post_w * 1.01)

        def __getattr__(self, name):
            return getattr(self._view, name)

    status = checks.forward_checks(olmo2, WrongGain(adapt(olmo2)))
    assert status["mlp"].kind == "fail" and "post-norm output off" in status["mlp"].reason
    assert status["attention"].kind == "pass"


# -- Cohere: logit_scale, recorded once and folded once ------------------------------------------
COHERE = "CohereForCausalLM"


@pytest.mark.mutates_model  # it lets TransformerLens process the model in place
def test_cohere_logit_scale_is_applied_once_raw_and_processed():
    model = tm.arch_bridge(COHERE, logit_scale=0.25)
    view = adapt(model)
    assert view.spec.logit_scale == 0.25 and view.spec.parallel_attn_mlp
    name = view.hook_names.final_resid
    tokens = torch.tensor([[3, 8, 13, 21]])
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=[name])
    resid = cache[name]
    torch.testing.assert_close(view.logits(resid), logits, atol=1e-4, rtol=1e-4)
    # folded() moves the scale into W_U (its spec then records 1.0): the same logits.
    folded = view.folded(center_unembed=False)
    assert folded.spec.logit_scale == 1.0 and "logit_scale" in folded.weights
    torch.testing.assert_close(folded.logits(resid), logits, atol=1e-4, rtol=1e-4)
    # TransformerLens's own processing folds it too; the processed view must not apply it again.
    model.enable_compatibility_mode(disable_warnings=True)
    processed = adapt(model)
    assert processed.spec.logit_scale == 1.0
    with torch.no_grad():
        logits2, cache2 = model.run_with_cache(tokens, names_filter=[name])
    torch.testing.assert_close(processed.logits(cache2[name]), logits2, atol=1e-4, rtol=1e-4)


def test_cohere_projection_rankings_do_not_depend_on_the_logit_scale():
    """A positive scale multiplies scores: the top tokens read through W_U are the same."""
    small = adapt(tm.arch_bridge(COHERE, logit_scale=0.25))
    large = adapt(tm.arch_bridge(COHERE, logit_scale=4.0))
    torch.testing.assert_close(small.W_U, large.W_U)  # the raw readout is the same basis
    x = torch.randn(3, small.spec.d_model, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(large.logits(x), 16 * small.logits(x), atol=1e-4, rtol=1e-4)
    assert torch.equal(large.logits(x).topk(5).indices, small.logits(x).topk(5).indices)


# -- NanoChat: norms without weights ---------------------------------------------------------------
def test_nanochat_norms_have_no_gains_and_the_embedding_norm_is_recorded():
    view = adapt(tm.arch_bridge("NanoChatForCausalLM"))
    spec, lw = view.spec, view.layer(0)
    assert spec.embed_norm and spec.qk_norm and spec.final_softcap is not None
    assert (lw.ln1_w, lw.ln2_w, lw.q_norm_w, lw.k_norm_w, view.globals.ln_final_w) == (None,) * 5
    assert lw.W_Q_qk is lw.W_Q


# -- OLMo: clip_qkv ------------------------------------------------------------------------------
def test_olmo_clip_qkv_is_recorded_and_the_attention_check_models_it():
    """The spec records OLMo's clamp; the hook check applies it (and needs to: it fires here)."""
    from .archzoo import checks

    model = tm.arch_bridge("OlmoForCausalLM", clip_qkv=0.3)
    view = adapt(model)
    assert view.spec.qkv_clip == 0.3
    assert checks.forward_checks(model, view)["attention"].kind == "pass"

    class Unclipped:
        spec = dataclasses.replace(view.spec, qkv_clip=None)

        def __getattr__(self, name):
            return getattr(view, name)

    assert checks.forward_checks(model, Unclipped())["attention"].kind == "fail"


def test_olmo2_qk_pairs_equal_the_dense_circuit_with_per_head_gains(olmo2):
    """The interpreter reads OLMo-2's per-head slices of the whole-projection q/k gains."""
    view = adapt(olmo2)
    lw, B = view.layer(1), view.W_E.float().T
    head = 3  # reads kv head 1: the second slice of the key gain
    dense = (B.T @ lw.W_Q_qk[head].float()) @ (lw.W_K_qk[head].float().T @ B)
    res = te.qk_pairs(olmo2, layer=1, head=head, k=10)
    scores, rows, cols = res.top
    torch.testing.assert_close(scores, dense.flatten().topk(10).values, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dense[rows, cols], scores, atol=1e-4, rtol=1e-4)


def test_qk_norm_check_catches_a_wrong_gain_or_scope(olmo2):
    """The harness's q/k-norm check compares with the forward pass.

    A wrong gain fails it, and so does reading OLMo-2's whole-projection key gain as one
    per-head gain.
    """
    from .archzoo import checks

    view = adapt(olmo2)
    assert checks.forward_checks(olmo2, view)["qk"].kind == "pass"

    class Altered:
        def __init__(self, **changes):
            self.spec, self.hook_names, self._changes = view.spec, view.hook_names, changes

        def layer(self, layer):
            lw = view.layer(layer)
            return dataclasses.replace(lw, **{k: f(lw) for k, f in self._changes.items()})

        def __getattr__(self, name):
            return getattr(view, name)

    wrong_gain = Altered(q_norm_w=lambda lw: lw.q_norm_w * 1.01)
    status = checks.forward_checks(olmo2, wrong_gain)["qk"]
    assert status.kind == "fail" and "q-norm output off" in status.reason
    # One [d_head] gain for every head cannot even be applied to the whole projection.
    per_head = Altered(k_norm_w=lambda lw: lw.k_norm_w[0])
    assert checks.forward_checks(olmo2, per_head)["qk"].kind == "fail"


# -- position / embedding families (OPT, RoBERTa, XGLM) --------------------------------------------
def _zoo_variant(architecture: str, **changes):
    """The coverage zoo's tiny ``architecture`` with config ``changes``, as a bridge."""
    import transformers
    from transformer_lens.model_bridge import TransformerBridge

    from .archzoo import models

    cfg = models._config(architecture)
    for path, value in changes.items():  # "attn_config.clip_qkv": a nested config's attribute
        *parents, key = path.split(".")
        target = cfg
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, key, value)
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(cfg).eval()
    folder = models._tempdir("tl-es-variant-")
    model.save_pretrained(folder)
    models.tokenizer().save_pretrained(folder)
    return TransformerBridge.boot_transformers(
        folder, tokenizer=models.tokenizer(), dtype=torch.float32
    )


def _added_positions(model, seq: int = 7) -> torch.Tensor:
    """What the model adds at positions 0..seq-1: its position module's output, through a hook."""
    with torch.no_grad():
        _, cache = model.run_with_cache(
            torch.arange(4, 4 + seq)[None], names_filter=["pos_embed.hook_out"]
        )
    return cache["pos_embed.hook_out"][0]


@pytest.mark.parametrize(
    "architecture,offset", [("OPTForCausalLM", 2), ("RobertaForMaskedLM", "padding_idx+1")]
)
def test_W_pos_row_p_is_what_the_model_adds_at_position_p(architecture, offset):
    """OPT's table starts position 0 at row 2, RoBERTa's at padding_idx + 1: W_pos starts there."""
    from .archzoo import models

    if architecture == "RobertaForMaskedLM" and models.tl_major() < 4:
        pytest.skip("TransformerLens 3.9's bridge cannot build RoBERTa (see the coverage table)")
    model = models.bridge(architecture)
    view = adapt(model)
    table = model.pos_embed.original_component
    rows = 2 if offset == 2 else table.padding_idx + 1
    assert view.spec.position_offset == rows
    torch.testing.assert_close(view.W_pos[0], table.weight[rows].detach())
    assert view.W_pos.shape[0] == table.weight.shape[0] - rows
    added = _added_positions(model)
    torch.testing.assert_close(view.W_pos[: added.shape[0]], added)
    assert not torch.allclose(table.weight[: added.shape[0]], added)  # the offset matters


def test_xglm_W_pos_is_the_sinusoidal_table_from_position_0():
    """XGLM's positions are a fixed sinusoidal buffer (offset 2), exposed as W_pos."""
    from .archzoo import models

    model = models.bridge("XGLMForCausalLM")
    view = adapt(model)
    positions = model.original_model.model.embed_positions
    assert view.spec.positional == "sinusoidal" and view.spec.position_offset == 2
    assert view.spec.embed_scale == pytest.approx(view.spec.d_model**0.5)
    expected = positions.weights[2 : 2 + positions.num_positions]
    torch.testing.assert_close(view.W_pos, expected)
    with torch.no_grad():
        added = positions(torch.arange(5)[None])[0]
    torch.testing.assert_close(view.W_pos[:5], added)


@pytest.mark.parametrize(
    "architecture,changes,reason",
    [
        ("OPTForCausalLM", dict(do_layer_norm_before=False), "do_layer_norm_before"),
        ("OPTForCausalLM", dict(word_embed_proj_dim=32), "project_in"),
        ("XGLMForCausalLM", dict(scale_embedding=False), "scales token embeddings by 1"),
        ("OpenAIGPTLMHeadModel", dict(afn="relu"), "config.afn='relu'"),
        (
            "FalconForCausalLM",
            dict(new_decoder_architecture=True, num_kv_heads=2, multi_query=False),
            "config.new_decoder_architecture=True",
        ),
        ("FalconForCausalLM", dict(parallel_attn=False), "config.parallel_attn=False"),
    ],
)
def test_position_family_variants_it_cannot_read_are_refused(architecture, changes, reason):
    """Variants a family does not read are refused, not read wrongly.

    OPT-350m's post-norm layers and projections, an unscaled XGLM, a GPT-1 whose activation
    is not the one its family spells, Falcon-40B's new decoder architecture and sequential
    Falcon blocks.
    """
    with pytest.raises(te.UnsupportedModelError, match=re.escape(reason)):
        adapt(_zoo_variant(architecture, **changes))


def test_bloom_W_E_basis_is_the_embedding_as_the_residual_receives_it():
    """Bloom's word_embeddings_layernorm: the W_E basis is embed_ln(W_E), block 0's input."""
    from .archzoo import models

    model = models.bridge("BloomForCausalLM")
    view = adapt(model)
    assert view.spec.embed_norm and view.spec.positional == "alibi" and view.globals.W_pos is None
    tokens = torch.tensor([[5, 9, 17, 33, 60]])
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_pre"])
    torch.testing.assert_close(view.W_E_resid[tokens[0]], cache["blocks.0.hook_resid_pre"][0])
    assert not torch.allclose(view.W_E[tokens[0]], cache["blocks.0.hook_resid_pre"][0])
    basis = make_basis(view, "W_E")
    assert basis.name == "embed_ln(W_E)^T"
    torch.testing.assert_close(basis.matrix, view.W_E_resid.float().T)
    # Folding leaves the embedding norm in place (nothing but the residual reads it).
    folded = view.folded()
    torch.testing.assert_close(folded.W_E_resid, view.W_E_resid, atol=1e-5, rtol=1e-5)
    plain = adapt(tm.bridge("gpt2-mha-tied"))
    assert plain.W_E_resid is plain.W_E


def test_mpt_with_clipped_qkv_is_refused():
    """MPT's clip_qkv clamps queries, keys and values: not a linear read, so refused by name."""
    with pytest.raises(te.UnsupportedModelError, match=re.escape("attn_config.clip_qkv=6.0")):
        adapt(_zoo_variant("MptForCausalLM", **{"attn_config.clip_qkv": 6.0}))
