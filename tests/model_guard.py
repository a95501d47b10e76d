"""What a test's models looked like when first handed to ``tl_embspace``, to check afterwards.

``conftest.no_model_mutation`` (autouse) wraps every test: each model adapted during the test
(``adapt``, ``EmbeddingSpace``, ``interpret``, the job, the CLI: all go through a weight view)
is snapshotted when first adapted, and must be the same at teardown: parameters bit-identical
(a float64 checksum for models over ``_CLONE_LIMIT`` elements), dtype, device and
``requires_grad`` unchanged, every module's ``training`` flag as it was, and no hook of
``tl_embspace``'s left attached (a test's own forward passes may leave TransformerLens's).
"""

from dataclasses import dataclass
from typing import Any

import torch

# Models up to this many parameter elements are cloned and compared bit for bit; larger ones
# (the real-weights tier) by version counter, storage and a float64 checksum.
_CLONE_LIMIT = 20_000_000


def _bits(t: torch.Tensor) -> tuple[Any, ...]:
    """A tensor's exact contents (NaN payloads included: ``torch.equal`` says NaN != NaN)."""
    flat = t.detach().contiguous().reshape(-1)
    return (t.dtype, tuple(t.shape), flat.view(torch.uint8).numpy().tobytes())


def _is_ours(hook: Any) -> bool:
    fn = getattr(hook, "func", hook)  # functools.partial
    return str(getattr(fn, "__module__", "") or "").startswith("tl_embspace")


def _hooks(model: Any) -> int:
    """Hooks attached by tl_embspace (a test's own forward passes may leave TransformerLens's)."""
    return sum(
        _is_ours(hook)
        for m in model.modules()
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks)
        for hook in hooks.values()
    )


@dataclass
class Snapshot:
    """One model's observable state."""

    params: dict[str, Any]
    meta: dict[str, tuple[Any, ...]]
    training: dict[str, bool]
    hooks: int

    @classmethod
    def of(cls, model: Any) -> "Snapshot":
        named = dict(model.named_parameters())
        clone = sum(p.numel() for p in named.values()) <= _CLONE_LIMIT
        with torch.no_grad():
            params = {
                n: p.detach().clone() if clone else (p._version, float(p.double().sum()))
                for n, p in named.items()
            }
        return cls(
            params=params,
            meta={n: (p.dtype, p.device, p.requires_grad) for n, p in named.items()},
            training={n: m.training for n, m in model.named_modules()},
            hooks=_hooks(model),
        )

    def differences(self, model: Any) -> list[str]:
        """What changed since the snapshot, in words (empty when nothing did)."""
        now = Snapshot.of(model)
        out = []
        if now.meta != self.meta:
            changed = [n for n in self.meta if now.meta.get(n) != self.meta[n]]
            out.append(f"dtype/device/requires_grad or the parameter set changed: {changed[:5]}")
        for n, before in self.params.items():
            after = now.params.get(n)
            same = (
                _bits(before) == _bits(after)
                if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor)
                else before == after
            )
            if not same:
                out.append(f"parameter {n} changed")
                break
        if now.training != self.training:
            out.append("a module's training flag changed")
        if now.hooks != self.hooks:
            out.append(f"{now.hooks - self.hooks} hook(s) left attached")
        return out


class Watch:
    """Snapshots of every model adapted while it is installed (see ``conftest``)."""

    def __init__(self) -> None:
        self.models: dict[int, tuple[Any, Snapshot]] = {}

    def see(self, model: Any) -> None:
        if model is not None and id(model) not in self.models:
            self.models[id(model)] = (model, Snapshot.of(model))

    def problems(self) -> list[str]:
        out = []
        for model, snap in self.models.values():
            out += [f"{type(model).__name__}: {d}" for d in snap.differences(model)]
        return out
