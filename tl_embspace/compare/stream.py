"""Run a model over token windows and keep only small per-position summaries of activations.

A *reducer* names the hook points it needs and turns their activations (for one batch) into a
small ``[batch, pos, m]`` tensor, e.g. the top-k token ids of the logit lens or the ids of the
most active neurons. Activations are dropped as soon as every reducer that needs them has run,
so a long corpus never holds a ``[batch, pos, d_vocab]`` tensor, nor any activation of more
than one batch. Once every reducer of a batch has run, the rest of the forward pass (the
unembedding included) is skipped.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import InvalidArgumentError
from .hooks import attached

DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class Reducer:
    """Summarise the activations at ``hooks`` (in that order) into ``[batch, pos, ...]``.

    Attributes:
        hooks: Concrete hook names; ``fn`` receives their activations in this order.
        fn: ``fn(*activations) -> Tensor`` whose first two dims are ``[batch, pos]``.
    """

    hooks: tuple[str, ...]
    fn: Callable[..., Tensor]


class _StopForward(Exception):
    """Raised from the last hook a batch needs, to skip the rest of the forward pass."""


def stream(
    model: Any,
    tokens: Tensor,
    reducers: Mapping[str, Reducer],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    desc: str = "streaming",
) -> dict[str, Tensor]:
    """Run ``model`` over ``tokens`` in batches; return each reducer's outputs, concatenated.

    Args:
        model: A TransformerLens model (``HookedTransformer``, ``HookedEncoder`` or
            ``TransformerBridge``).
        tokens: ``[n, seq_len]`` token ids.
        reducers: Output name -> :class:`Reducer`.
        batch_size: Windows per forward pass.
        progress: Show a tqdm bar over batches.
        desc: The bar's label.

    Returns:
        Output name -> ``[n, seq_len, ...]`` tensor on the CPU.

    Raises:
        InvalidArgumentError: Bad batch size or no reducers; a hook that never fired.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive int, got {batch_size!r}")
    if not reducers:
        raise InvalidArgumentError("stream() needs at least one reducer")
    needed = sorted({h for r in reducers.values() for h in r.hooks})
    outputs: dict[str, list[Tensor]] = {name: [] for name in reducers}
    # Per batch: activations not yet consumed, and reducers not yet run.
    stash: dict[str, Tensor] = {}
    pending: dict[str, Reducer] = {}

    def on_hook(activation: Tensor, hook: Any, *, name: str) -> None:
        stash[name] = activation.detach()
        for out_name, reducer in list(pending.items()):
            if all(h in stash for h in reducer.hooks):
                result = reducer.fn(*(stash[h] for h in reducer.hooks))
                outputs[out_name].append(result.detach().cpu())
                del pending[out_name]
        still_needed = {h for r in pending.values() for h in r.hooks}
        for h in list(stash):
            if h not in still_needed:
                del stash[h]
        if not pending:
            raise _StopForward

    def make(name: str) -> Callable[..., None]:
        return lambda activation, hook: on_hook(activation, hook, name=name)

    hooks: Sequence[tuple[str, Callable[..., None]]] = [(h, make(h)) for h in needed]
    starts = range(0, tokens.shape[0], batch_size)
    device = _device(model)
    with attached(model, hooks), torch.no_grad():
        for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
            stash.clear()
            pending.clear()
            pending.update(reducers)
            try:
                model(tokens[start : start + batch_size].to(device))
            except _StopForward:
                pass
            if pending:
                raise InvalidArgumentError(
                    f"hook(s) {sorted({h for r in pending.values() for h in r.hooks} - set(stash))}"
                    " never fired during the forward pass"
                )
    stash.clear()
    return {name: torch.cat(parts) for name, parts in outputs.items()}


def _device(model: Any) -> torch.device:
    cfg_device = getattr(getattr(model, "cfg", None), "device", None)
    if cfg_device is not None:
        return torch.device(cfg_device)
    return next(model.parameters()).device


__all__ = ["DEFAULT_BATCH_SIZE", "Reducer", "stream"]
