"""Sparse mixture-of-experts: the weights read per expert, the FF and router interpreters, the job.

Tiny Qwen2-MoE (every layer sparse, a shared expert with a sigmoid gate), Ernie-4.5-MoE (layer 0
dense, layer 1 sparse, a selection-only correction bias, an ungated shared expert), Mixtral,
FlexOlmo (post-sublayer norms) and Granite-MoE/Granite (muP multipliers) from the architecture
zoo's builder. The hook checks that
rebuild each MoE layer through its router live in the coverage harness (tests/archzoo); here:
the weights against the Hugging Face tensors, the interpreters against dense references, and the
harness's MoE rebuild against mutations it must catch.
"""

import dataclasses
import functools

import pytest
import torch

import tl_embspace as te
from tl_embspace.adapters import adapt
from tl_embspace.job import interpret_model

from .archzoo import checks, models
from .test_interpreters import check_vectors

K = 5


@functools.cache
def _bridge(name):
    return models.bridge(name)


@functools.cache
def _space(name, folded=True):
    view = adapt(_bridge(name))
    return te.EmbeddingSpace(view.folded() if folded else view, tokenizer=_bridge(name).tokenizer)


def _dense_bases(space):
    """The default space's read (W_Eᵀ) and write (W_U) bases, dense."""
    return space.view.W_E.float().T, space.view.W_U.float()


# -- the spec and the weights ----------------------------------------------------------------
def test_moe_spec_is_read_from_the_config():
    qwen = adapt(_bridge("Qwen2MoeForCausalLM")).spec
    hf = _bridge("Qwen2MoeForCausalLM").original_model.config
    assert (qwen.n_experts, qwen.experts_per_token) == (hf.num_experts, hf.num_experts_per_tok)
    assert qwen.norm_topk_prob is bool(hf.norm_topk_prob)
    assert qwen.d_mlp == hf.moe_intermediate_size != hf.intermediate_size
    assert qwen.shared_expert and qwen.moe_layers == (0, 1)
    ernie = adapt(_bridge("Ernie4_5_MoeForCausalLM")).spec
    assert ernie.moe_layers == (1,) and ernie.norm_topk_prob and ernie.shared_expert
    mixtral = adapt(_bridge("MixtralForCausalLM")).spec
    assert mixtral.norm_topk_prob and not mixtral.shared_expert


def test_expert_weights_are_the_hugging_face_expert_slices():
    name = "Qwen2MoeForCausalLM"
    view, hf = adapt(_bridge(name)), models.hf_model(name)
    m = view.spec.d_mlp
    for layer in view.spec.moe_layers:
        lw, block = view.layer(layer), hf.model.layers[layer].mlp
        assert lw.is_moe and lw.W_in is None and len(lw.experts) == view.spec.n_experts
        for e, expert in enumerate(lw.experts):
            gate_up, down = block.experts.gate_up_proj[e], block.experts.down_proj[e]
            torch.testing.assert_close(expert.W_gate, gate_up[:m].T)
            torch.testing.assert_close(expert.W_in, gate_up[m:].T)
            torch.testing.assert_close(expert.W_out, down.T)
        torch.testing.assert_close(lw.W_router, block.gate.weight.T)
        torch.testing.assert_close(lw.shared_expert.W_in, block.shared_expert.up_proj.weight.T)
        torch.testing.assert_close(lw.W_shared_gate, block.shared_expert_gate.weight.T)


def test_ernie_reads_a_dense_layer_and_the_selection_bias():
    name = "Ernie4_5_MoeForCausalLM"
    view, hf = adapt(_bridge(name)), models.hf_model(name)
    dense, sparse = view.layer(0), view.layer(1)
    assert not dense.is_moe and dense.W_in is not None and dense.W_router is None
    bias = hf.model.layers[1].mlp.gate.moe_statics.e_score_correction_bias
    torch.testing.assert_close(sparse.router_selection_bias, bias.reshape(-1))
    assert sparse.W_shared_gate is None and sparse.shared_expert is not None


def test_the_view_never_aliases_the_experts():
    bridge = _bridge("MixtralForCausalLM")
    before = [p.detach().clone() for p in bridge.parameters()]
    lw = adapt(bridge).layer(0)
    with torch.no_grad():
        lw.experts[0].W_in.add_(1.0)
        lw.W_router.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, bridge.parameters(), strict=True))


def test_granite_multipliers_are_recorded_and_folded_into_what_is_written():
    bridge = _bridge("GraniteMoeForCausalLM")
    hf = bridge.original_model.config
    view = adapt(bridge)
    s = view.spec
    assert (s.embed_scale, s.residual_multiplier, s.attn_scale) == (
        hf.embedding_multiplier,
        hf.residual_multiplier,
        hf.attention_multiplier,
    )
    assert s.logit_scale == pytest.approx(1 / hf.logits_scaling)
    lw = view.layer(0)
    torch.testing.assert_close(lw.W_O, bridge.blocks[0].attn.W_O * hf.residual_multiplier)
    hf_layer = models.hf_model("GraniteMoeForCausalLM").model.layers[0]
    down = hf_layer.block_sparse_moe.experts.down_proj[1]
    torch.testing.assert_close(lw.experts[1].W_out, down.T * hf.residual_multiplier)


# -- the harness's MoE rebuild catches what it must ------------------------------------------
def _mlp_problem(name, layer, mutate=lambda lw: lw, spec=None):
    bridge = _bridge(name)
    view = adapt(bridge)
    names = view.hook_names
    wanted = {names.at(f, layer) for f in ("mlp_in", "mlp_out")}
    _, cache = checks._record(bridge, checks._tokens(view, 0), wanted)
    fake = view if spec is None else type("V", (), {"spec": spec(view.spec)})()
    return checks._mlp(fake, mutate(view.layer(layer)), cache, names, layer)


@pytest.mark.parametrize(
    "name,layer,mutation",
    [
        ("Qwen2MoeForCausalLM", 0, "swap gate and up"),
        ("Qwen2MoeForCausalLM", 0, "drop the shared gate"),
        ("Qwen2MoeForCausalLM", 1, "flip norm_topk_prob"),
        ("Ernie4_5_MoeForCausalLM", 1, "drop the selection bias"),
        ("Ernie4_5_MoeForCausalLM", 1, "drop the shared expert"),
        ("MixtralForCausalLM", 1, "flip norm_topk_prob"),
    ],
)
def test_the_moe_check_passes_and_catches_a_wrong_reading(name, layer, mutation):
    assert _mlp_problem(name, layer) == ""
    mutate, spec = (lambda lw: lw), None
    if mutation == "swap gate and up":

        def mutate(lw):
            swapped = [dataclasses.replace(e, W_in=e.W_gate, W_gate=e.W_in) for e in lw.experts]
            return dataclasses.replace(lw, experts=tuple(swapped))

    elif mutation == "drop the shared gate":
        mutate = lambda lw: dataclasses.replace(lw, W_shared_gate=None)  # noqa: E731
    elif mutation == "drop the selection bias":
        mutate = lambda lw: dataclasses.replace(lw, router_selection_bias=None)  # noqa: E731
    elif mutation == "drop the shared expert":
        mutate = lambda lw: dataclasses.replace(lw, shared_expert=None)  # noqa: E731
    else:
        spec = lambda s: dataclasses.replace(s, norm_topk_prob=not s.norm_topk_prob)  # noqa: E731
    assert "MLP output off by" in _mlp_problem(name, layer, mutate, spec)


# -- interpreters ----------------------------------------------------------------------------
@pytest.mark.parametrize("expert", [0, 3, -1, "shared", None])
@pytest.mark.parametrize("name", ["ff_key", "ff_gate", "ff_value"])
def test_ff_interpreters_read_each_expert_as_its_dense_formula(name, expert):
    space = _space("Qwen2MoeForCausalLM")
    R, W = _dense_bases(space)
    lw = space.view.layer(1)
    if expert is None:
        chosen = [*enumerate(lw.experts), (-1, lw.shared_expert)]
    elif expert == "shared":
        chosen = [(-1, lw.shared_expert)]
    else:
        chosen = [(expert % len(lw.experts), lw.experts[expert])]
    weight = {"ff_key": "W_in", "ff_gate": "W_gate", "ff_value": "W_out"}[name]
    neurons = [0, 5, 31]
    parts = []
    for _, mlp in chosen:
        w = getattr(mlp, weight).float()
        parts.append(w[neurons] @ W if name == "ff_value" else w.T[neurons] @ R)
    res = te.interpret(name, space, layer=1, expert=expert, neurons=neurons, k=K)
    check_vectors(res, torch.cat(parts))
    prefixes = ["shared" if e == -1 else f"E{e}" for e, _ in chosen]
    assert res.labels == tuple(f"L1.{p}.{name}[{i}]" for p in prefixes for i in neurons)
    assert res.extras["expert"] == [e for e, _ in chosen for _ in neurons]
    assert res.extras["neuron"] == neurons * len(chosen)


def test_router_interpreter_projects_each_router_column():
    space = _space("Qwen2MoeForCausalLM")
    R, _ = _dense_bases(space)
    lw = space.view.layer(0)
    res = te.interpret("router", space, layer=0, k=K)
    check_vectors(res, torch.cat([lw.W_router.T.float(), lw.W_shared_gate.T.float()]) @ R)
    assert res.labels == (*(f"L0.router[{e}]" for e in range(4)), "L0.shared_gate")
    assert res.extras["expert"] == [0, 1, 2, 3, -1] and res.side == "read"
    two = te.router(space, layer=0, experts=[2, 1], k=K)
    check_vectors(two, lw.W_router.T.float()[[2, 1]] @ R)


def test_expert_options_are_refused_where_they_do_not_apply():
    ernie = _space("Ernie4_5_MoeForCausalLM")
    with pytest.raises(te.SelectionError, match="dense MLP"):
        te.ff_value(ernie, layer=0, expert=0)
    with pytest.raises(te.MissingWeightError, match="no router"):
        te.router(ernie, layer=0)
    assert not te.interpreters["router"].applies_to(ernie.view.layer(0))
    assert te.interpreters["ff_value"].applies_to(ernie.view.layer(1))
    with pytest.raises(te.SelectionError):
        te.ff_key(ernie, layer=1, expert=4)
    with pytest.raises(te.OptionError, match="'shared' or None"):
        te.ff_key(ernie, layer=1, expert="all")
    with pytest.raises(te.SelectionError, match="no shared expert"):
        te.ff_key(_space("MixtralForCausalLM"), layer=0, expert="shared")
    # A dense layer reads as before, without expert labels.
    dense = te.ff_value(ernie, layer=0, neurons=[0, 1], k=K)
    assert dense.labels == ("L0.ff_value[0]", "L0.ff_value[1]") and not dense.extras


def test_the_job_interprets_every_expert_labelled(tmp_path):
    bridge = _bridge("Ernie4_5_MoeForCausalLM")
    out = interpret_model(
        bridge, tmp_path / "atlas", k=3, pair_k=3, svd_components=2, copying_tokens=8,
        progress=False,
    )  # fmt: skip
    atlas = te.Atlas.open(out)
    lw = adapt(bridge).layer(1)
    sparse, dense = atlas.layer(1).vectors, atlas.layer(0).vectors
    values = sparse["ff_value"]
    widths = [e.W_out.shape[0] for e in (*lw.experts, lw.shared_expert)]  # routed, then shared
    assert len(values.labels) == sum(widths)
    assert values.labels[0] == "L1.E0.ff_value[0]" and values.labels[-1].startswith("L1.shared.")
    assert sorted(set(values.extras["expert"].tolist())) == [-1, 0, 1, 2, 3]
    assert sparse["router"].labels == tuple(f"L1.router[{e}]" for e in range(4))
    assert "router" not in dense and dense["ff_value"].labels[0] == "L0.ff_value[0]"


def test_post_norm_experts_are_read_as_written():
    """FlexOlmo normalises the MoE output before the residual add: values carry that gain."""
    space = _space("FlexOlmoForCausalLM", folded=False)
    _, W = _dense_bases(space)
    lw = space.view.layer(0)
    assert lw.ln2_post_w is not None and lw.ln1_w is None
    res = te.ff_value(space, layer=0, expert=1, neurons=[0, 3], k=K)
    check_vectors(res, (lw.experts[1].W_out.float() * lw.ln2_post_w.float())[[0, 3]] @ W)
