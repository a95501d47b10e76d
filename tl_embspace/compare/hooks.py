"""Attach TransformerLens hooks for the length of a block, and always take them off again.

Every forward pass this package runs goes through :func:`attached`: it adds exactly the hooks it
was given, keeps their handles, and removes exactly those handles in a ``finally`` clause, so an
exception or a ``KeyboardInterrupt`` inside the block leaves the model as it was found. Hooks the
user attached before are never touched (TransformerLens's own ``model.hooks(...)`` context resets
*every* non-permanent hook on exit, which would remove the user's too).
"""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import InvalidArgumentError

HookFn = Callable[..., Any]


def hook_point(model: Any, name: str) -> Any:
    """The ``HookPoint`` called ``name`` (the bridge's alias names included).

    Raises:
        InvalidArgumentError: If the model has no hook point of that name.
    """
    hook_dict = getattr(model, "hook_dict", None)
    if not isinstance(hook_dict, dict) or name not in hook_dict:
        raise InvalidArgumentError(
            f"{type(model).__name__} has no hook point {name!r}; take hook names from "
            "tl_embspace.adapt(model).hook_names"
        )
    return hook_dict[name]


def active_hook_count(model: Any) -> int:
    """How many forward and backward hooks are attached to the model's hook points."""
    points = {id(hp): hp for hp in model.hook_dict.values()}.values()
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in points)


@contextlib.contextmanager
def attached(model: Any, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
    """Attach ``(hook name, fn)`` forward hooks for the block; remove exactly them afterwards.

    ``fn(activation, hook=hook_point)`` follows TransformerLens's convention: return None to
    only read the activation, or a tensor to replace it.
    """
    added: list[tuple[Any, Any]] = []
    try:
        for name, fn in hooks:
            hp = hook_point(model, name)
            before = list(hp.fwd_hooks)
            hp.add_hook(fn, dir="fwd")
            # TransformerLens 3.x's add_hook returns nothing: find the new handle(s) by identity.
            added += [(hp, h) for h in hp.fwd_hooks if not any(h is b for b in before)]
        yield
    finally:
        for hp, handle in reversed(added):
            handle.hook.remove()
            hp.fwd_hooks[:] = [h for h in hp.fwd_hooks if h is not handle]


__all__ = ["active_hook_count", "attached", "hook_point"]
