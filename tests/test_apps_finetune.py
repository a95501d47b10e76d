"""Fine-tuning deltas (apps.finetune): a planted delta is ranked first and read back.

The "fine-tuned" model is the tiny model plus deltas we choose: an FF value pushed towards one
token's unembedding, an FF key towards another token's embedding, one O sub-head row towards a
third token. Each must be found as the only changed parameter, read as its token, and the delta
circuit's singular values must equal those of the dense d x d delta.
"""

import functools
import json
import math

import pytest
import torch

from tl_embspace import EmbeddingSpace, adapt
from tl_embspace.adapters import WeightView
from tl_embspace.adapters.weights import LayerWeights
from tl_embspace.apps import finetune_diff, parameter_changes
from tl_embspace.apps.finetune import _finite
from tl_embspace.errors import InvalidArgumentError

from . import tinymodels as tm

VALUE_TOKEN, KEY_TOKEN, O_TOKEN = 17, 23, 40


class PlantedView(WeightView):
    """The base view with ``deltas[(layer, field)]`` added to those layer fields."""

    def __init__(self, base: WeightView, deltas: dict[tuple[int, str], torch.Tensor]) -> None:
        super().__init__(base.spec, base.weights, base.tokenizer)
        self._base, self._deltas = base, deltas

    @property
    def hook_names(self):
        return self._base.hook_names

    def _read_globals(self):
        return self._base.globals

    def _read_layer(self, layer):
        f = dict(self._base.layer(layer).__dict__)
        for (at, name), delta in self._deltas.items():
            if at == layer:
                f[name] = f[name] + delta
        return LayerWeights(**f)


@functools.cache
def models():
    base = adapt(tm.bridge("llama-mha-untied")).folded()
    W_U, W_E = base.W_U.float(), base.W_E.float()
    l1, l0 = base.layer(1), base.layer(0)
    d_out = torch.zeros_like(l1.W_out)
    d_out[5] = 2 * W_U[:, VALUE_TOKEN]
    d_in = torch.zeros_like(l1.W_in)
    d_in[:, 9] = 1.5 * W_E[KEY_TOKEN]
    d_O = torch.zeros_like(l0.W_O)
    d_O[2, 3] = 3 * W_U[:, O_TOKEN]
    tuned = PlantedView(base, {(1, "W_out"): d_out, (1, "W_in"): d_in, (0, "W_O"): d_O})
    return base, tuned, {"L1.W_out": d_out, "L1.W_in": d_in, "L0.W_O": d_O}


def test_ranking_finds_exactly_the_planted_parameters():
    base, tuned, planted = models()
    changes = parameter_changes(tuned, base)
    moved = {c.name: c for c in changes if c.relative > 0}
    assert set(moved) == set(planted)
    for name, delta in planted.items():
        layer, field = int(name[1]), name.split(".")[1]
        want = float(delta.norm() / getattr(base.layer(layer), field).norm())
        assert moved[name].relative == pytest.approx(want, rel=1e-5)
    rel = [c.relative for c in changes]
    assert rel == sorted(rel, reverse=True)
    assert changes[0].name in planted and changes[len(planted)].relative == 0


def test_planted_vectors_are_read_as_their_tokens():
    base, tuned, _ = models()
    W_U, W_E = base.W_U.float(), base.W_E.float()
    # The known answers hold in these bases (each planted direction scores its own token best).
    assert int((W_U[:, VALUE_TOKEN] @ W_U).argmax()) == VALUE_TOKEN
    assert int((W_E @ W_E[KEY_TOKEN]).argmax()) == KEY_TOKEN
    assert int((W_U[:, O_TOKEN] @ W_U).argmax()) == O_TOKEN
    diff = finetune_diff(tuned, base, top_n=3, k=5)
    assert sorted({key.split(".")[0] for key in diff.readings}) == ["L0", "L1"]
    value = diff.readings["L1.ff_value"]
    assert value.labels == ("L1.ff_value[5]",)  # only one neuron's value moved
    assert value.top_ids[0, 0] == VALUE_TOKEN
    assert diff.readings["L1.ff_key"].labels == ("L1.ff_key[9]",)
    assert diff.readings["L1.ff_key"].top_ids[0, 0] == KEY_TOKEN
    o = diff.readings["L0.o"]
    assert o.labels == ("L0.H2.o[3]",) and o.top_ids[0, 0] == O_TOKEN
    assert "delta" in o.note and "base model" in o.note
    # The delta OV circuit of head 2 is rank one; its output direction is the planted token.
    out = diff.readings["L0.ov.output"]
    assert out.labels[0] == "L0.H2.delta_ov.output[0]"
    assert out.top_ids[0, 0] == O_TOKEN
    assert not any(key.startswith("L0.qk") for key in diff.readings)  # QK did not move
    assert "L0.q" not in diff.readings and "L1.o" not in diff.readings


def test_delta_circuit_singular_values_equal_the_dense_delta():
    base, tuned, _ = models()
    diff = finetune_diff(tuned, base, components=4)
    lt, lb = tuned.layer(0), base.layer(0)
    dense = lt.W_V[2] @ lt.W_O[2] - lb.W_V[2] @ lb.W_O[2]
    S = torch.linalg.svdvals(dense.double())
    got = diff.readings["L0.ov.output"].extras["singular_value"]
    assert got[0] == pytest.approx(float(S[0]), rel=1e-5)
    assert float(S[1]) < 1e-5 * float(S[0])  # rank one: only one real direction


def test_outputs_and_options():
    base, tuned, _ = models()
    diff = finetune_diff(tuned, EmbeddingSpace(base, read="W_U"), layers=[1], top_n=1, k=3)
    assert all(key.startswith("L1.") for key in diff.readings)
    assert diff.provenance["read_basis"] == "W_U"
    data = diff.to_dict(k=2)
    assert data["changes"][0]["name"] in {"L1.W_out", "L1.W_in", "L0.W_O"}
    assert len(data["readings"]["L1.ff_value"][0]["top"]) == 2
    assert json.loads(diff.to_json())["changes"][0]["relative"] > 0
    assert _finite({"x": [math.inf, 1.0], "y": (math.nan,)}) == {"x": [None, 1.0], "y": [None]}
    assert [c.name for c in diff.changed(0.0)] == [c.name for c in diff.changes[:3]]


def test_refusals():
    base, tuned, _ = models()
    other = adapt(tm.bridge("gpt2-mha-tied")).folded()
    with pytest.raises(InvalidArgumentError, match="same architecture"):
        finetune_diff(other, base)
    with pytest.raises(InvalidArgumentError, match="raw with raw"):
        finetune_diff(adapt(tm.bridge("llama-mha-untied")), base)
    with pytest.raises(InvalidArgumentError, match="top_n"):
        finetune_diff(tuned, base, top_n=0)
