"""Interventions driven by weights: promote or suppress FF neurons, sub-heads or directions.

As LM-Debugger does, without its server: while the context manager is open, chosen FF neuron
coefficients or attention sub-head coordinates of ``z`` are set or scaled, and chosen vectors
(e.g. a token's unembedding direction) are added to the residual stream, through TransformerLens
hooks. The model's weights are never written, and every hook is removed on exit, also when the
wrapped call raises. Use it around a forward pass, ``run_with_cache`` or ``generate``; or call
:func:`run_intervention` for the outputs before and after.

* :class:`Neuron` edits ``mlp_post`` (the coefficient that multiplies ``W_out[i]``).
* :class:`SubHead` edits coordinate ``j`` of head ``h``'s ``z``: ``z`` is rebuilt from the
  hooked attention input and pattern, and the attention output gets ``Δz · W_O[h, j]`` (not
  every backend hooks ``z`` under one name). Refused for models with a norm after attention.
* :class:`Direction` adds ``coefficient · vector`` to the residual leaving a layer.
"""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..adapters import WeightView, adapt
from ..errors import InvalidArgumentError, UnsupportedModelError
from .collect import z_from
from .hooks import attached


@dataclass(frozen=True)
class Neuron:
    """Set (``value``) or scale (``scale``) FF neuron ``index`` of ``layer`` at every position."""

    layer: int
    index: int
    value: float | None = None
    scale: float | None = None


@dataclass(frozen=True)
class SubHead:
    """Set (``value``) or scale (``scale``) coordinate ``dim`` of head ``head``'s z."""

    layer: int
    head: int
    dim: int
    value: float | None = None
    scale: float | None = None


@dataclass(frozen=True)
class Direction:
    """Add ``coefficient * vector`` (``[d_model]``) to the residual leaving ``layer``."""

    layer: int
    vector: Tensor
    coefficient: float = 1.0


Edit = Neuron | SubHead | Direction


def token_direction(model: Any, token: int) -> Tensor:
    """The unit vector along ``W_U[:, token]``: adding it promotes ``token`` (LM-Debugger-style)."""
    view = adapt(model)
    if not 0 <= token < view.spec.d_vocab_out:
        raise InvalidArgumentError(
            f"token {token} is not in a vocabulary of {view.spec.d_vocab_out}"
        )
    column = view.W_U[:, token].float()
    return column / column.norm()


def _new_value(old: Tensor, edit: "Neuron | SubHead") -> Tensor:
    if (edit.value is None) == (edit.scale is None):
        raise InvalidArgumentError(f"{edit}: give exactly one of value= and scale=")
    if edit.value is not None:
        return torch.full_like(old, float(edit.value))
    return old * float(edit.scale)  # type: ignore[arg-type]


def _check(view: WeightView, edit: Edit) -> None:
    s = view.spec
    if not 0 <= edit.layer < s.n_layers:
        raise InvalidArgumentError(f"{edit}: layer out of range for {s.n_layers} layers")
    if isinstance(edit, Neuron) and not 0 <= edit.index < s.d_mlp:
        raise InvalidArgumentError(f"{edit}: neuron out of range for d_mlp={s.d_mlp}")
    if isinstance(edit, SubHead):
        if not (0 <= edit.head < s.n_heads and 0 <= edit.dim < s.d_head):
            raise InvalidArgumentError(f"{edit}: head/dim out of range")
        if view.layer(edit.layer).ln1_post_w is not None:
            raise UnsupportedModelError(
                f"{s.model_name} normalises attention's output before the residual; a z edit "
                "would not be linear in the output"
            )
    if isinstance(edit, Direction) and tuple(edit.vector.shape) != (s.d_model,):
        raise InvalidArgumentError(f"a Direction needs a [d_model={s.d_model}] vector")


def _hooks(view: WeightView, edits: Sequence[Edit]) -> list[tuple[str, Any]]:
    names = view.hook_names
    hooks: list[tuple[str, Any]] = []
    for edit in edits:
        _check(view, edit)
        if isinstance(edit, Neuron):

            def neuron_hook(x: Tensor, hook: Any, edit: Neuron = edit) -> Tensor:
                x = x.clone()
                x[..., edit.index] = _new_value(x[..., edit.index], edit).to(x.dtype)
                return x

            hooks.append((names.at("mlp_post", edit.layer), neuron_hook))
        elif isinstance(edit, Direction):

            def direction_hook(x: Tensor, hook: Any, edit: Direction = edit) -> Tensor:
                return x + (edit.coefficient * edit.vector).to(x.device, x.dtype)

            hooks.append((names.at("resid_post", edit.layer), direction_hook))
        else:
            stash: dict[str, Tensor] = {}

            def keep(x: Tensor, hook: Any, key: str, stash: dict[str, Tensor] = stash) -> None:
                stash[key] = x.detach()

            def subhead_hook(
                out: Tensor, hook: Any, edit: SubHead = edit, stash: dict[str, Tensor] = stash
            ) -> Tensor:
                z = z_from(view, edit.layer, stash.pop("attn_in"), stash.pop("pattern"))
                old = z[:, :, edit.head, edit.dim]
                delta = _new_value(old, edit) - old  # [batch, pos]
                row = view.layer(edit.layer).W_O[edit.head, edit.dim].float()
                return out + (delta[..., None] * row).to(out.dtype)

            hooks += [
                (names.at("attn_in", edit.layer), lambda x, hook, k=keep: k(x, hook, "attn_in")),
                (names.at("pattern", edit.layer), lambda x, hook, k=keep: k(x, hook, "pattern")),
                (names.at("attn_out", edit.layer), subhead_hook),
            ]
    return hooks


@contextlib.contextmanager
def intervention(model: Any, edits: Sequence[Edit]) -> Iterator[None]:
    """While open, ``model``'s forward passes (and ``generate``) run with ``edits`` applied.

    Raises:
        InvalidArgumentError: For an edit out of range or with both/neither value and scale.
    """
    view = adapt(model)
    with attached(model, _hooks(view, edits)):
        yield


@dataclass(frozen=True)
class InterventionResult:
    """The model's output on the same input without and with the edits."""

    before: Any
    after: Any
    edits: tuple[Edit, ...]


def run_intervention(
    model: Any, tokens: Tensor, edits: Sequence[Edit], *, generate: dict[str, Any] | None = None
) -> InterventionResult:
    """Logits (or, with ``generate=kwargs``, ``model.generate(tokens, **kwargs)``) before/after."""

    def call() -> Any:
        with torch.no_grad():
            if generate is not None:
                return model.generate(tokens, **generate)
            return model(tokens)

    before = call()
    with intervention(model, edits):
        after = call()
    return InterventionResult(before, after, tuple(edits))


__all__ = [
    "Direction",
    "Edit",
    "InterventionResult",
    "Neuron",
    "SubHead",
    "intervention",
    "run_intervention",
    "token_direction",
]
