"""Coverage harness: every text architecture of TransformerLens's factory, never silently wrong.

For each in-scope architecture (see ``archzoo.models.scope``) a tiny random model is built once
per session, wrapped as a ``TransformerBridge`` and checked against its own forward pass through
hooks (``archzoo.checks``). The contract: ``adapt()`` either refuses with an
``UnsupportedModelError`` naming the architecture, or every check that applies passes.

``tests/coverage_expected.json`` snapshots each architecture's outcome per TransformerLens line,
so a regression (verified -> refused, a check that passed and now does not) fails here. Regenerate
it, with the README table, by ``bash scripts/coverage_table.sh``.
"""

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tl_embspace

from .archzoo import checks, coverage, models

ARCHITECTURES = models.text_architectures()
SNAPSHOT = Path(__file__).with_name("coverage_expected.json")
REGENERATE = (
    "if the change is intended, regenerate the snapshot and the table with "
    "`bash scripts/coverage_table.sh` and commit tests/coverage_expected.json, "
    "docs/coverage.md and README.md"
)
# Fully verified families (level "verified") each TransformerLens line must keep reaching.
MIN_VERIFIED = {4: 53, 3: 52}


def _short(name: str) -> str:
    """The family part of an architecture name ("Qwen2" for "Qwen2ForCausalLM")."""
    for suffix in ("ForCausalLM", "ForMaskedLM", "LMHeadModel", "Model"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_never_silently_wrong(name):
    """adapt() refuses by name, or every hook check that applies passes."""
    result = coverage.outcome(name)
    adapts = result["adapts"]
    if adapts.kind == "refused":
        assert name in adapts.reason or _short(name) in adapts.reason, (
            f"{name} is refused without being named: {adapts.reason}"
        )
        return
    failures = {k: s.reason for k, s in result.items() if s.kind == "fail"}
    assert not failures, f"{name}: {failures}"


def _snapshot() -> dict:
    if not SNAPSHOT.exists():
        return {}
    return json.loads(SNAPSHOT.read_text()).get(str(models.tl_major()), {})


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_outcome_matches_snapshot(name):
    """Each architecture's outcome is the one recorded in tests/coverage_expected.json."""
    expected = _snapshot().get(name)
    result = coverage.outcome(name)
    got = {"level": coverage.level(result), "checks": {k: s.kind for k, s in result.items()}}
    assert expected is not None, f"{name} is not in {SNAPSHOT.name}; {REGENERATE}"
    assert got == expected, f"{name}: {got} differs from the snapshot {expected}; {REGENERATE}"


def test_minimum_verified_families():
    """At least MIN_VERIFIED families are fully verified on this TransformerLens line."""
    levels = {name: coverage.level(coverage.outcome(name)) for name in ARCHITECTURES}
    verified = sorted(n for n, lv in levels.items() if lv == "verified")
    assert len(verified) >= MIN_VERIFIED[models.tl_major()], verified


def test_every_factory_architecture_is_accounted_for():
    """Each factory name is in scope or out of scope with a reason: none dropped silently."""
    for name in models.factory_architectures():
        assert name in ARCHITECTURES or models.scope(name), name


def test_tiny_models_are_tiny():
    """A misspelt size key would leave a full-size model: every tiny model stays under 1M."""
    sizes = {n: models.n_params(n) for n in ARCHITECTURES}
    assert max(sizes.values()) < models.MAX_PARAMS, sizes


def test_norm_weights_are_randomised():
    """Norm gains are not all ones nor biases all zeros, so folding bugs are visible."""
    model = models.hf_model("LlamaForCausalLM")
    gain = model.model.layers[0].input_layernorm.weight
    assert not torch.allclose(gain, torch.ones_like(gain))


def test_no_hook_left_attached():
    """verify() borrows hooks and returns them."""
    bridge = models.bridge("LlamaForCausalLM")
    checks.verify(bridge)
    attached = [
        name for name, hp in bridge.hook_dict.items() if hp._forward_hooks or hp._backward_hooks
    ]
    assert not attached


# -- the checks can fail: each one catches a deliberately broken view ----------------------------
def _broken(monkeypatch, name: str, **changes) -> dict:
    """verify() with adapt() returning a view whose layers have ``changes`` applied."""
    real_adapt = tl_embspace.adapt

    def adapt(model):
        view = real_adapt(model)
        layer = view.layer

        def broken_layer(i):
            lw = layer(i)
            return dataclasses.replace(lw, **{k: f(lw) for k, f in changes.items()})

        view.layer = broken_layer
        return view

    monkeypatch.setattr(checks.tl_embspace, "adapt", adapt)
    return checks.verify(models.bridge(name))


def test_attention_check_catches_tiled_kv_heads(monkeypatch):
    """Query head h must read kv head h // group; tiling (h % n_kv) is caught."""
    result = _broken(monkeypatch, "LlamaForCausalLM", W_V=lambda lw: lw.W_V_grouped.repeat(2, 1, 1))
    assert result["attention"].kind == "fail" and "off by" in result["attention"].reason


def test_attention_check_catches_a_dropped_norm_gain(monkeypatch):
    """Forgetting the norm's gain (ln1_w) is caught."""
    result = _broken(monkeypatch, "LlamaForCausalLM", ln1_w=lambda lw: None)
    assert result["attention"].kind == "fail" and "off by" in result["attention"].reason


def test_mlp_check_catches_swapped_gate(monkeypatch):
    """Swapping W_gate and W_in is caught."""
    result = _broken(
        monkeypatch, "LlamaForCausalLM", W_in=lambda lw: lw.W_gate, W_gate=lambda lw: lw.W_in
    )
    assert result["mlp"].kind == "fail" and "off by" in result["mlp"].reason


def test_mlp_check_catches_a_missing_bias(monkeypatch):
    """Dropping b_out (GPT-2 has MLP biases) is caught."""
    result = _broken(monkeypatch, "GPT2LMHeadModel", b_out=lambda lw: None)
    assert result["mlp"].kind == "fail" and "off by" in result["mlp"].reason


def test_embedding_check_catches_a_W_pos_read_without_its_offset(monkeypatch):
    """OPT's raw position table (rows 0, 1 before position 0's) as W_pos is caught."""
    real_adapt = tl_embspace.adapt

    def adapt(model):
        view = real_adapt(model)
        g = view.globals
        raw = model.pos_embed.original_component.weight.detach()
        # The view caches its globals until the model's parameters change: replace the cache.
        view._globals = dataclasses.replace(g, W_pos=raw[: g.W_pos.shape[0]])
        return view

    monkeypatch.setattr(checks.tl_embspace, "adapt", adapt)
    result = checks.verify(models.bridge("OPTForCausalLM"))
    assert result["embedding"].kind == "fail" and "off by" in result["embedding"].reason


def test_a_processing_that_changes_outputs_is_no_reference():
    """Falcon's TransformerLens processing changes its outputs (n/a); GPT-2's does not."""
    for name, changes in (("FalconForCausalLM", True), ("GPT2LMHeadModel", False)):
        model = models.bridge(name)
        view = tl_embspace.adapt(model)
        reason = checks._processing_changes_outputs(model, checks._tl_process(model), view)
        assert bool(reason) is changes, (name, reason)


@pytest.mark.parametrize(
    "name", ["MixtralForCausalLM", "OlmoeForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"]
)
def test_moe_rebuild_matches_transformers(name):
    """The harness's MoE rebuild, fed the Hugging Face block's own weights, reproduces it."""
    model = models.hf_model(name)
    block, cfg = model.model.layers[0].mlp, model.config

    def expert(gate, up, down):
        return SimpleNamespace(W_gate=gate.T, W_in=up.T, W_out=down.T, b_in=None, b_out=None)

    gate_up, down = block.experts.gate_up_proj, block.experts.down_proj
    half = gate_up.shape[1] // 2
    lw = SimpleNamespace(
        experts=[expert(gate_up[e, :half], gate_up[e, half:], down[e]) for e in range(len(down))],
        W_router=block.gate.weight.T,
    )
    if hasattr(block, "shared_expert"):
        s = block.shared_expert
        lw.shared_expert = expert(s.gate_proj.weight, s.up_proj.weight, s.down_proj.weight)
        lw.W_shared_gate = block.shared_expert_gate.weight.T
    spec = SimpleNamespace(
        act_fn=cfg.hidden_act,
        experts_per_token=cfg.num_experts_per_tok,
        norm_topk_prob=getattr(cfg, "norm_topk_prob", True),
    )
    x = torch.randn(1, 7, cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = block(x)
        got = checks._moe(SimpleNamespace(spec=spec), lw, x)
    expected = expected[0] if isinstance(expected, tuple) else expected
    assert checks.deviation(got, expected) < checks.RTOL
