"""The interpreter registry: specs, selection, option checking, public functions, registration."""

import inspect

import pytest
import torch

import tl_embspace as te
from tl_embspace.adapters import adapt
from tl_embspace.interpreters import spec as spec_module
from tl_embspace.interpreters._base import select, select_one

from . import tinymodels as tm

#: The interpreters whole-model job writes, in its order (vectors, then pairs).
JOB_VECTORS = [
    "ff_key",
    "ff_gate",
    "ff_value",
    "q",
    "k",
    "v",
    "o",
    "svd_ov",
    "svd_qk",
    "svd_in",
    "svd_out",
]
JOB_PAIRS = ["qk_pairs", "ov_pairs"]

PUBLIC = {
    "ff_key": te.ff_key,
    "ff_gate": te.ff_gate,
    "ff_value": te.ff_value,
    "router": te.router,
    "q": te.query_subheads,
    "k": te.key_subheads,
    "v": te.value_subheads,
    "o": te.output_subheads,
    "qk_pairs": te.qk_pairs,
    "ov_pairs": te.ov_pairs,
    "svd_ov": te.svd_ov,
    "svd_qk": te.svd_qk,
    "svd_in": te.svd_in,
    "svd_out": te.svd_out,
    "direction": te.direction,
    "embedding": te.embedding,
    "bias": te.bias,
}


@pytest.fixture
def restore_interpreters():
    """Snapshot the registry and restore it afterwards, whatever the test registered."""
    saved = dict(te.interpreters._items)
    yield te.interpreters
    te.interpreters._items.clear()
    te.interpreters._items.update(saved)


@pytest.fixture(scope="module")
def gpt2():
    return tm.load("gpt2-mha-tied", "bridge")


@pytest.fixture(scope="module")
def llama():
    return tm.load("llama-gqa-untied", "bridge")


def test_every_builtin_is_a_public_typed_documented_function():
    assert set(PUBLIC) == set(te.interpreters.names())
    for name, function in PUBLIC.items():
        spec = te.interpreters[name]
        assert spec.function is function and spec.name == name
        assert function.__module__.startswith("tl_embspace.interpreters.")
        assert function.__doc__ and spec.description == inspect.getdoc(function).splitlines()[0]
        sig = inspect.signature(function)
        params = list(sig.parameters.values())
        assert params[-1].kind is inspect.Parameter.VAR_KEYWORD  # the basis options
        assert sig.return_annotation in (te.VectorProjection, te.PairProjection)
        assert (sig.return_annotation is te.PairProjection) == (spec.produces == "pairs")
        for p in params[1:-1]:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.annotation is not p.empty, p
        assert {"read", "write", "transport", "tokenizer", "k", "token_filter"} <= set(spec.options)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_a_function_call_equals_interpret(llama, name):
    view = adapt(llama)
    options = {
        "direction": dict(
            vectors=torch.randn(2, view.spec.d_model, generator=torch.Generator().manual_seed(0))
        ),
        "embedding": dict(tokens=[3, 4]),
        "bias": dict(layer=0),
    }.get(name, dict(layer=1))
    if te.interpreters[name].scope == "head":
        options["head"] = 2
    # Llama has no biases and no router (dense MLPs): the same clear error both ways.
    missing = {"bias": "no b_O or b_out", "router": "no router"}
    if name in missing:
        for call in (
            lambda: PUBLIC[name](llama, **options),
            lambda: te.interpret(name, llama, **options),
        ):
            with pytest.raises(te.MissingWeightError, match=missing[name]):
                call()
        return
    a = PUBLIC[name](llama, write="W_U", k=3, **options)
    b = te.interpret(name, te.EmbeddingSpace(llama, write="W_U"), k=3, **options)
    assert a.to_json() == b.to_json()


def test_specs_declare_what_the_job_and_atlas_select_on():
    s = te.interpreters
    assert [x.name for x in s.select(produces="pairs")] == JOB_PAIRS
    assert all(x.side in ("read×read", "read×write") for x in s.select(produces="pairs"))
    assert [x.name for x in s.select(indexed_by="neuron")] == ["ff_key", "ff_gate", "ff_value"]
    assert [x.name for x in s.select(indexed_by="kv_head")] == ["k", "v"]
    assert [x.name for x in s.select(indexed_by="expert")] == ["router"]
    assert [x.name for x in s.select(scope="model")] == ["direction", "embedding"]
    assert [x.name for x in s.select(scope="head")] == ["qk_pairs", "ov_pairs", "svd_ov", "svd_qk"]
    assert {x.name: x.side for x in s.select(indexed_by="neuron")} == {
        "ff_key": "read",
        "ff_gate": "read",
        "ff_value": "write",
    }
    with pytest.raises(te.InvalidArgumentError, match="expected one of"):
        s.select(produces="vector")


@pytest.mark.parametrize(
    "case,expected",
    [
        ("llama-gqa-untied", JOB_VECTORS),  # gated MLP
        ("gpt2-mha-tied", [n for n in JOB_VECTORS if n != "ff_gate"]),  # non-gated MLP
    ],
)
def test_the_job_selection_follows_the_layer(case, expected):
    lw = adapt(tm.load(case, "bridge")).layer(0)
    chosen = te.interpreters.select(
        produces="vectors", indexed_by=("neuron", "head", "kv_head", "component"), applies_to=lw
    )
    assert [x.name for x in chosen] == expected
    assert [x.name for x in te.interpreters.select(produces="pairs", applies_to=lw)] == JOB_PAIRS


def test_an_attention_only_layer_gets_no_mlp_interpreters(llama):
    from dataclasses import replace

    lw = replace(adapt(llama).layer(0), W_in=None, W_gate=None, W_out=None, b_in=None, b_out=None)
    names = [x.name for x in te.interpreters.select(applies_to=lw)]
    assert names == ["q", "k", "v", "o", "qk_pairs", "ov_pairs", "svd_ov", "svd_qk"]
    assert not te.interpreters["bias"].applies_to(lw)  # Llama has no b_O either
    assert te.interpreters["bias"].applies_to(adapt(tm.load("gpt2-mha-tied", "bridge")).layer(0))


@pytest.mark.parametrize(
    "options,match",
    [
        (
            dict(layr=1),
            r"'layr' \(did you mean 'layer'\?\).*valid options: layer, neurons, expert, k",
        ),
        (dict(layer=1, neuron=[0]), r"did you mean 'neurons'"),
        (dict(layer=1, wirte="W_U"), r"did you mean 'write'"),  # codespell:ignore
        (dict(layer=1, colour="red"), r"unknown option\(s\) 'colour'; valid options"),
        (dict(neurons=[0]), r"needs option\(s\) 'layer'"),
    ],
)
def test_interpret_checks_options_against_the_signature(gpt2, options, match):
    with pytest.raises(te.OptionError, match=match) as err:
        te.interpret("ff_value", gpt2, **options)
    assert isinstance(err.value, te.EmbSpaceError) and isinstance(err.value, TypeError)


def test_basis_options_are_checked_on_direct_calls(gpt2):
    with pytest.raises(te.OptionError, match=r"did you mean 'write'") as err:
        te.ff_value(gpt2, layer=0, wrte="W_U")  # codespell:ignore
    assert isinstance(err.value, te.EmbSpaceError)
    with pytest.raises(te.OptionError, match="not both") as err:
        te.ff_value(te.EmbeddingSpace(gpt2), layer=0, write="W_U")
    assert isinstance(err.value, te.EmbSpaceError)


def test_third_party_registration_as_documented(restore_interpreters, gpt2):
    @te.register_interpreter(
        "norm_of_values",
        produces="vectors",
        indexed_by="neuron",
        side="write",
        scope="layer",
        requires=("W_out",),
    )
    def norm_of_values(source, *, layer: int, **basis):
        """Norm of every FF value vector (a toy example)."""
        space = te.as_space(source, **basis)
        return space.view.layer(layer).W_out.norm(dim=-1)

    out = te.interpret("norm_of_values", gpt2, layer=1)
    assert torch.allclose(out, adapt(gpt2).layer(1).W_out.norm(dim=-1))
    spec = te.interpreters["norm_of_values"]
    assert spec.description == "Norm of every FF value vector (a toy example)."
    assert spec.options == ("layer", "read", "write", "transport", "tokenizer")
    assert te.interpreters.select(indexed_by="neuron")[-1] is spec  # registration order
    with pytest.raises(te.OptionError, match="did you mean 'layer'"):
        te.interpret("norm_of_values", gpt2, layers=1)
    with pytest.raises(te.RegistryError, match="already registered"):
        te.register_interpreter(
            "norm_of_values", produces="vectors", indexed_by="neuron", side="write", scope="layer"
        )(norm_of_values)


def test_the_documented_example_is_the_tested_one():
    # The module docstring is the third-party how-to; keep it in step with the test above.
    doc = spec_module.__doc__
    assert '@te.register_interpreter(\n        "norm_of_values"' in doc
    assert 'te.interpret("norm_of_values", model, layer=1)' in doc


def test_the_registry_is_restored(restore_interpreters):
    assert "norm_of_values" not in te.interpreters


@pytest.mark.parametrize(
    "field,value",
    [("produces", "vector"), ("indexed_by", "row"), ("side", "both"), ("scope", "layers")],
)
def test_a_spec_refuses_unknown_kinds(field, value):
    spec = te.InterpreterSpec(
        name="x", function=len, produces="vectors", indexed_by="neuron", side="read", scope="layer"
    )
    # The suite's runtime type checker refuses the Literal first; without it __post_init__ does.
    object.__setattr__(spec, field, value)
    with pytest.raises(te.InvalidArgumentError, match=f"{field}='{value}'"):
        spec.__post_init__()


# --- Index selections (issue 13): refused, never coerced ----------------------------------------


@pytest.mark.parametrize(
    "indices,error,match",
    [
        (True, te.OptionError, "bools, floats and strings are not indices"),
        ([1.5], te.OptionError, "got 1.5"),
        ([0, True], te.OptionError, "got True"),
        ("3", te.OptionError, "got '3'"),
        (torch.tensor([True, False, True, False]), te.OptionError, "boolean mask"),
        (torch.tensor([1.0, 2.0]), te.OptionError, "float32"),
        (torch.tensor([[0, 1]]), te.OptionError, "1-D"),
        ([1, 1], te.InvalidArgumentError, r"selects \[1\] more than once"),
        ([3, -1], te.InvalidArgumentError, r"selects \[3\] more than once"),
        ([4], te.SelectionError, r"\[4\] out of range \(there are 4\)"),
        (-5, te.SelectionError, "out of range"),
    ],
)
def test_select_refuses_bools_floats_and_duplicates(indices, error, match):
    with pytest.raises(error, match=match) as err:
        select(indices, 4, "neurons")
    assert isinstance(err.value, te.EmbSpaceError)


def test_select_normalises_valid_selections():
    assert select(None, 3, "x") == [0, 1, 2]
    assert select(-1, 3, "x") == [2]
    assert select(torch.tensor([2, 0]), 3, "x") == [2, 0]
    assert select(torch.tensor(1), 3, "x") == [1]
    assert select_one(torch.tensor(-1), 3, "x") == 2
    with pytest.raises(te.OptionError, match="one int"):
        select_one([0], 3, "head")


@pytest.mark.parametrize(
    "name,options,error,match",
    [
        ("ff_value", dict(layer=True), te.OptionError, "layer must be one int, got True"),
        ("ff_value", dict(layer=2), te.SelectionError, r"layer \[2\] out of range"),
        (
            "ff_value",
            dict(layer=0, neurons=torch.zeros(32, dtype=torch.bool)),
            te.OptionError,
            "boolean mask",
        ),
        ("ff_value", dict(layer=0, neurons=torch.tensor([1.5])), te.OptionError, "float32"),
        ("ff_key", dict(layer=0, neurons=[2, 2]), te.InvalidArgumentError, "more than once"),
        ("q", dict(layer=0, heads=[0, 4]), te.SelectionError, "out of range"),
        ("ov_pairs", dict(layer=0, head=True), te.OptionError, "head must be one int"),
        ("svd_ov", dict(layer=0, head=0, which="outputs"), te.InvalidArgumentError, "which must"),
        ("svd_qk", dict(layer=0, head=0, components=[0, 0]), te.InvalidArgumentError, "once"),
        ("embedding", dict(tokens=[1], matrix="W_Q"), te.InvalidArgumentError, "matrix must"),
        (
            "direction",
            dict(vectors=torch.ones(2, 32), labels=["a"]),
            te.InvalidArgumentError,
            "1 labels for 2 vectors",
        ),
        (
            "direction",
            dict(vectors=torch.ones(32), side="left"),
            te.InvalidArgumentError,
            "side must be 'read' or 'write'",
        ),
    ],
)
def test_bad_inputs_raise_the_error_family(gpt2, name, options, error, match):
    with pytest.raises(error, match=match) as err:
        te.interpret(name, gpt2, **options)
    assert isinstance(err.value, te.EmbSpaceError)
