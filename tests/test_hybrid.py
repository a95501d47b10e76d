"""Hybrid models: attention on some layers, a state-space or convolution mixer on the others.

Tiny LFM2 (attention, short convolution, attention; dense MLPs) and Jamba (Mamba, attention,
Mamba, attention; sparse MoE MLPs on the attention layers) from the architecture zoo's builder.
The view serves the attention layers' weights and every layer's MLP, refuses the attention
weights of a mixer layer by name (``UnsupportedLayerError``), and the interpreters, copying
scores and the whole-model job skip those layers and record it. The hook checks of the weights
served run here on the tiny models (and on every hybrid in the coverage harness).
"""

import functools

import pytest
import torch

import tl_embspace as te
from tl_embspace.adapters import adapt
from tl_embspace.adapters.bridge import _layer_mixers
from tl_embspace.adapters.families import FAMILIES
from tl_embspace.job import interpret_model, merge_atlases

from .archzoo import checks, models


@functools.cache
def _bridge(name):
    return models.bridge(name)


def test_spec_records_which_layers_have_attention_and_mlps():
    lfm2 = adapt(_bridge("Lfm2ForCausalLM")).spec
    assert lfm2.mixers == ("attention", "short_conv", "attention")
    assert lfm2.attention_layers == (0, 2) and lfm2.mlp_layers == (0, 1, 2)
    assert lfm2.is_hybrid and lfm2.non_attention_layers() == {1: "short_conv"}
    jamba = adapt(_bridge("JambaForCausalLM")).spec
    assert jamba.mixers == ("mamba", "attention", "mamba", "attention")
    assert jamba.attention_layers == (1, 3) and jamba.moe_layers == (1, 3)
    llama = adapt(_bridge("LlamaForCausalLM")).spec
    assert not llama.is_hybrid and llama.attention_layers == tuple(range(llama.n_layers))


@pytest.mark.parametrize("folded", [False, True])
def test_mixer_layer_refuses_attention_by_name_and_serves_its_mlp(folded):
    view = adapt(_bridge("Lfm2ForCausalLM"))
    view = view.folded() if folded else view
    lw = view.layer(1)
    assert not lw.has_attention and view.layer(0).has_attention
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_O", "W_Q_qk", "W_O_written", "q_norm_w"):
        with pytest.raises(te.UnsupportedLayerError, match=r"Lfm2ForCausalLM: blocks\[1\] is a "):
            getattr(lw, name)
    with pytest.raises(te.UnsupportedModelError, match="short_conv.*Attention layers of this"):
        _ = lw.W_Q
    assert lw.W_in is not None and lw.W_gate is not None and lw.W_out is not None
    assert "no_attention=" in repr(lw) and "W_in=(64, " in repr(lw)  # reads no attention field


def test_mixer_layer_mlp_is_the_hugging_face_feed_forward():
    view, hf = adapt(_bridge("Lfm2ForCausalLM")), models.hf_model("Lfm2ForCausalLM")
    ff = hf.model.layers[1].feed_forward  # LFM2: w1 gate, w3 up, w2 down
    lw = view.layer(1)
    torch.testing.assert_close(lw.W_gate, ff.w1.weight.T, rtol=0, atol=0)
    torch.testing.assert_close(lw.W_in, ff.w3.weight.T, rtol=0, atol=0)
    torch.testing.assert_close(lw.W_out, ff.w2.weight.T, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["Lfm2ForCausalLM", "JambaForCausalLM"])
def test_hook_checks_cover_attention_layers_and_every_mlp(name):
    model = _bridge(name)
    view = adapt(model)
    result = checks.forward_checks(model, view)
    assert {k: s.kind for k, s in result.items()} == dict.fromkeys(result, "pass"), result
    for layer, kind in view.spec.non_attention_layers().items():
        assert f"{layer} ({kind} layer: no attention)" in result["attention"].reason
    assert result["mlp"].reason == ""  # no layer skipped: the mixer layers' MLPs are checked


def test_hook_check_catches_a_wrong_mlp_on_a_mixer_layer():
    model = _bridge("Lfm2ForCausalLM")
    view = adapt(model)
    good = view.layer(1)
    wrong = type(good)(**{**vars(good), "W_out": good.W_out * 1.01})
    view._layers[1] = wrong  # the cached read, replaced: the check must see the difference
    view._seen_version = view.source_version()
    assert checks.forward_checks(model, view)["mlp"].kind == "fail"


def test_interpreters_skip_or_refuse_mixer_layers():
    space = te.EmbeddingSpace(adapt(_bridge("Lfm2ForCausalLM")).folded())
    chosen = {s.name for s in te.interpreters.select(applies_to=space.view.layer(1))}
    assert {"ff_key", "ff_value", "ff_gate"} <= chosen
    assert not chosen & {"q", "k", "v", "o", "qk_pairs", "ov_pairs", "svd_qk", "svd_ov"}
    assert {"q", "qk_pairs", "ov_pairs"} <= {
        s.name for s in te.interpreters.select(applies_to=space.view.layer(0))
    }
    with pytest.raises(te.UnsupportedLayerError, match=r"blocks\[1\]"):
        te.interpret("qk_pairs", space, layer=1, head=0, k=3)
    assert te.interpret("ff_key", space, layer=1, k=3).top_ids.shape[0] == space.view.spec.d_mlp
    scores = te.copying_scores(space, n_tokens=16)  # every attention layer by default
    assert scores.shape == (2, space.view.spec.n_heads)
    with pytest.raises(te.UnsupportedLayerError):
        te.copying_scores(space, layers=[1], n_tokens=16)


def test_job_reads_every_layer_and_records_the_skipped_attention(tmp_path):
    model = _bridge("JambaForCausalLM")
    out = interpret_model(model, tmp_path / "run", k=3, pair_k=3, svd_components=2, progress=False)
    atlas = te.Atlas.open(out)
    assert atlas.layers == (0, 1, 2, 3)
    assert atlas.options["attention_skipped"] == {"0": "mamba", "2": "mamba"}
    assert atlas.copying_scores.layers == (1, 3)
    assert atlas.manifest["spec"]["mixers"] == ["mamba", "attention", "mamba", "attention"]
    mamba, attention = atlas.layer(0), atlas.layer(1)
    assert {"ff_key", "ff_value"} <= set(mamba.vectors) and not {"q", "o"} & set(mamba.vectors)
    assert not mamba.pairs and attention.pairs and {"q", "router"} <= set(attention.vectors)


def test_hybrid_shards_merge_into_the_single_run(tmp_path):
    model = _bridge("JambaForCausalLM")
    opts = dict(k=3, pair_k=3, svd_components=2, progress=False)
    single = interpret_model(model, tmp_path / "single", **opts)
    shards = [interpret_model(model, tmp_path / f"s{i}", layers=ls, **opts)
              for i, ls in enumerate([[2, 3], [0, 1]])]  # fmt: skip
    merged = merge_atlases(tmp_path / "merged", shards)
    a, b = te.Atlas.open(merged), te.Atlas.open(single)
    assert a.options == b.options  # attention_skipped joined over the shards, in layer order
    assert a.copying_scores.layers == b.copying_scores.layers == (1, 3)
    torch.testing.assert_close(
        torch.as_tensor(a.copying_scores.scores), torch.as_tensor(b.copying_scores.scores)
    )


class _Block(torch.nn.Module):
    def __init__(self, *names: str) -> None:
        super().__init__()
        for n in names:
            self.add_module(n, torch.nn.Identity())


class _Model(torch.nn.Module):
    def __init__(self, blocks, layer_types=None) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.cfg = type("Cfg", (), {"layer_types": layer_types})()


def test_layer_mixers_are_read_from_modules_and_checked_against_the_config():
    jamba = FAMILIES["jamba"]
    ok = _Model([_Block("ln1", "mixer"), _Block("ln1", "attn")], ["mamba", "full_attention"])
    assert _layer_mixers(ok, jamba, "JambaForCausalLM") == ("mamba", "attention")
    both = _Model([_Block("attn", "mixer")])
    with pytest.raises(te.UnsupportedModelError, match=r"blocks\[0\] runs attention and 'mixer'"):
        _layer_mixers(both, jamba, "JambaForCausalLM")
    unknown = _Model([_Block("ln1", "linear_attn")])
    with pytest.raises(te.UnsupportedModelError, match=r"no token mixer.*'linear_attn'"):
        _layer_mixers(unknown, jamba, "JambaForCausalLM")
    disagree = _Model([_Block("mixer"), _Block("attn")], ["full_attention", "mamba"])
    with pytest.raises(te.UnsupportedModelError, match=r"layer_types\[0\] is 'full_attention'"):
        _layer_mixers(disagree, jamba, "JambaForCausalLM")
    with pytest.raises(te.UnsupportedModelError, match="no token mixer"):
        _layer_mixers(_Model([_Block("mixer")]), FAMILIES["llama"], "LlamaForCausalLM")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Zamba2ForCausalLM", "concatenation of the residual stream and the original embeddings"),
        ("FalconH1ForCausalLM", "attention and a Mamba-2 mixer side by side"),
        ("GraniteMoeHybridForCausalLM", "shared_mlp"),
        ("MambaForCausalLM", "no attention layer at all"),
    ],
)
def test_hybrids_not_read_are_refused_with_the_reason(name, why):
    with pytest.raises(te.UnsupportedModelError, match=name) as e:
        adapt(_bridge(name))
    assert why in str(e.value)


def test_permuted_and_noisy_views_keep_the_mixer_layers_refusal_and_mlp():
    from tl_embspace.adapters.permuted import NoisyView, PermutedView

    view = adapt(_bridge("Lfm2ForCausalLM"))
    for derived in (PermutedView.shuffled(view, seed=1), NoisyView(view, sigma=0.1)):
        mixer = next(derived.layer(i) for i in range(3) if not derived.layer(i).has_attention)
        assert derived.spec.mixers[mixer.layer] == "short_conv"  # per-layer facts move too
        assert mixer.layer not in derived.spec.attention_layers
        with pytest.raises(te.UnsupportedLayerError, match="short_conv"):
            _ = mixer.W_O
        assert mixer.W_out is not None and mixer.W_out.shape == view.layer(1).W_out.shape
