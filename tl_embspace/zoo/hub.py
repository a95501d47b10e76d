"""Names outside the offline zoo: passed through to TransformerLens's own loaders, with a guard.

TransformerLens loads by name from the Hugging Face hub (or its local cache). In offline mode
(``HF_HUB_OFFLINE``) a name that is not cached would otherwise retry the network for ~25 s and
end in an unrelated-looking error; the guard fails at once with a :class:`ZooError` that names
the fix.
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from .._facts import declare
from ..errors import UnsupportedModelError, ZooError
from .entries import available
from .tl_build import NO_ENCODER_PROCESSING, require_hooked


def load_passthrough(
    name: str, backend: str, processed: bool, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """Load ``name`` with TransformerLens's own loaders (see :func:`tl_embspace.zoo.load`)."""
    with offline_guard(name):
        if backend == "bridge":
            from transformer_lens.model_bridge import TransformerBridge

            model = TransformerBridge.boot_transformers(name, device=device, dtype=dtype)
            if processed:
                model.enable_compatibility_mode()
        elif name.lower().rsplit("/", 1)[-1].startswith("bert"):
            # HookedTransformer refuses BERT names; HookedEncoder does no weight processing.
            if processed:
                raise UnsupportedModelError(NO_ENCODER_PROCESSING.format(name=name))
            model = require_hooked().HookedEncoder.from_pretrained(name, device=device, dtype=dtype)
        else:
            hooked = require_hooked().HookedTransformer
            loader = hooked.from_pretrained if processed else hooked.from_pretrained_no_processing
            model = loader(name, device=device, dtype=dtype)
    declare(model, model_name=name, source=name)
    return model


def hub_offline() -> bool:
    """Offline mode, read now: the hub library reads HF_HUB_OFFLINE only once, at import."""
    import huggingface_hub.constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return huggingface_hub.constants.HF_HUB_OFFLINE or any(
        flag.upper() in {"1", "ON", "YES", "TRUE"} for flag in flags
    )


@contextlib.contextmanager
def offline_guard(name: str) -> Iterator[None]:
    """In offline mode, fail fast with a ZooError unless ``name`` is in the local HF cache.

    Also forces the hub library offline for the load: if HF_HUB_OFFLINE was set after it was
    imported it would otherwise still try the network (and retry for ~25 s).
    """
    if not hub_offline() or Path(name).is_dir():
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


def _official_name(name: str) -> str:
    """TL's official hub id for an alias such as ``gpt2-small`` (the name itself if unknown)."""
    # The function moved in TransformerLens 4; a type checker sees only the installed version.
    try:
        from transformer_lens.supported_models import get_official_model_name  # pyright: ignore
    except ImportError:
        from transformer_lens.loading_from_pretrained import get_official_model_name  # pyright: ignore
    try:
        return get_official_model_name(name)
    except ValueError:
        return name
