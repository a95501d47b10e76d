"""The view's hook names carry what its weights act on: rebuild sublayer outputs from hooks.

A smoke test of the ``HookNames`` contract on the tiny cases of ``tinymodels`` (the coverage
harness does the same over every architecture).
"""

import pytest
import torch

from tl_embspace.adapters import adapt

from . import tinymodels as tm

CASES = ["llama-gqa-untied", "gpt2-mha-tied", "neox-parallel", "bert-encoder"]
TOKENS = torch.tensor([[2, 5, 7, 9, 11, 13, 17]])


def _cache(model, view):
    names = view.hook_names
    fields = ("attn_in", "pattern", "attn_out", "mlp_in", "mlp_pre", "mlp_post", "mlp_out")
    wanted = {names.at(f, layer) for f in fields for layer in range(view.spec.n_layers)}
    wanted.add(names.final_resid)
    with torch.no_grad():
        logits, cache = model.run_with_cache(TOKENS, names_filter=lambda n: n in wanted)
    return logits, cache


def _weighted(view, names, field, layer, x):
    norm = names.norm_for(field)
    if norm is None:
        return x
    lw = view.layer(layer)
    w, b = getattr(lw, f"{norm}_w"), getattr(lw, f"{norm}_b")
    return x * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("backend", tm.backends())
@pytest.mark.parametrize("case", CASES)
def test_hooks_rebuild_sublayer_outputs(case, backend):
    """Attention and MLP outputs rebuilt from the view's weights and the named hooks."""
    model = tm.load(case, backend)
    view = adapt(model)
    names = view.hook_names
    logits, cache = _cache(model, view)
    for layer in range(view.spec.n_layers):
        lw = view.layer(layer)
        x = _weighted(view, names, "attn_in", layer, cache[names.at("attn_in", layer)])
        v = torch.einsum("bpm,hmd->bphd", x, lw.W_V)
        if lw.b_V is not None:
            v = v + lw.b_V
        pattern = cache[names.at("pattern", layer)]
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        out = torch.einsum("bqhd,hdm->bqm", z, lw.W_O) + (0 if lw.b_O is None else lw.b_O)
        torch.testing.assert_close(out, cache[names.at("attn_out", layer)], atol=1e-5, rtol=1e-4)
        x = _weighted(view, names, "mlp_in", layer, cache[names.at("mlp_in", layer)])
        gated = lw.W_gate is not None
        pre = x @ (lw.W_gate if gated else lw.W_in) + (0 if gated or lw.b_in is None else lw.b_in)
        torch.testing.assert_close(pre, cache[names.at("mlp_pre", layer)], atol=1e-5, rtol=1e-4)
        post = cache[names.at("mlp_post", layer)]
        mlp = post @ lw.W_out + (0 if lw.b_out is None else lw.b_out)
        torch.testing.assert_close(mlp, cache[names.at("mlp_out", layer)], atol=1e-5, rtol=1e-4)
    if not view.spec.is_encoder or backend == "bridge":
        torch.testing.assert_close(
            view.logits(cache[names.final_resid]), logits, atol=1e-4, rtol=1e-4
        )
