"""Activations the weights act on, collected through the hook names the adapters declare.

* **FF coefficients**: the value each neuron's output vector ``W_out[i]`` is multiplied by, i.e.
  ``mlp_out = coefficients @ W_out + b_out``: the post-activation, times the ``W_in`` branch for
  gated MLPs (TransformerLens's ``hook_post`` on every backend; see ``HookNames.mlp_post``).
* **Attention patterns** ``[batch, n_heads, query, key]``.
* **Per-head z** ``[batch, pos, n_heads, d_head]`` (what ``W_O`` reads): rebuilt from the
  attention input and the pattern with the model's own weights, ``z = pattern · (x W_V + b_V)``,
  because not every backend hooks it under one name. Coordinate ``j`` of head ``h`` is the
  coefficient of sub-head ``(h, j)``: row ``j`` of ``W_O[h]``.
* **Residual streams** ``resid_pre`` / ``resid_mid`` (after attention, before the MLP) /
  ``resid_post``.

Every collector works on one batch of tokens (dense: for small inputs and tests) and has a
:class:`~tl_embspace.compare.stream.Reducer` form used by the streaming paths.
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..adapters import WeightView, adapt
from ..errors import InvalidArgumentError, UnsupportedModelError
from .stream import Reducer, stream

RESIDUAL_SITES = ("resid_pre", "resid_mid", "resid_post")


def _layer_range(view: WeightView, layers: "int | Sequence[int] | None") -> list[int]:
    n = view.spec.n_layers
    if layers is None:
        return list(range(n))
    if isinstance(layers, bool) or not isinstance(layers, (int, Sequence)):
        raise InvalidArgumentError(f"layers must be an int or a list of ints, got {layers!r}")
    selected: Sequence[Any] = [layers] if isinstance(layers, int) else layers
    out = []
    for layer in selected:
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
            raise InvalidArgumentError(f"layer {layer!r} is not a layer of a {n}-layer model")
        out.append(layer % n)
    if len(set(out)) != len(out):
        raise InvalidArgumentError(f"layers repeat: {list(selected)}")
    return out


def _weighted(view: WeightView, field: str, layer: int, x: Tensor) -> Tensor:
    """The input a sublayer reads, from a hook that may fire before its norm's weights."""
    norm = view.hook_names.norm_for(field)
    if norm is None:
        return x.float()
    lw = view.layer(layer)
    w, b = getattr(lw, f"{norm}_w"), getattr(lw, f"{norm}_b")
    x = x.float()
    if w is not None:
        x = x * w.float()
    if b is not None:
        x = x + b.float()
    return x


def z_from(view: WeightView, layer: int, attn_in: Tensor, pattern: Tensor) -> Tensor:
    """``z [batch, pos, n_heads, d_head]`` from the hooked attention input and pattern.

    ``view`` must be the model's own view (``adapt(model)``, not a folded one): the hook
    activations are in the model's coordinates.
    """
    lw = view.layer(layer)
    x = _weighted(view, "attn_in", layer, attn_in)
    v = torch.einsum("bpm,hmd->bphd", x, lw.W_V.float())
    if lw.b_V is not None:
        v = v + lw.b_V.float()
    return torch.einsum("bhqk,bkhd->bqhd", pattern.float(), v)


def residual_reducer(
    view: WeightView, site: str, layer: int, fn: Callable[[Tensor], Tensor]
) -> Reducer:
    """A reducer of the residual stream at ``site`` of ``layer`` (see ``RESIDUAL_SITES``).

    ``resid_mid`` (after attention, before the MLP) is ``resid_pre + attn_out``; it is refused
    where that is not the residual the MLP reads from (parallel blocks, post-norm encoders,
    post-sublayer norms).
    """
    names = view.hook_names
    if site == "resid_pre" or site == "resid_post":
        return Reducer((names.at(site, layer),), lambda x: fn(x.float()))
    if site != "resid_mid":
        raise InvalidArgumentError(f"site must be one of {RESIDUAL_SITES}, got {site!r}")
    s = view.spec
    lw = view.layer(layer)
    if s.parallel_attn_mlp or s.norm_placement != "pre" or lw.ln1_post_w is not None:
        raise UnsupportedModelError(
            f"{s.model_name} has no residual between attention and MLP (parallel block, "
            "post-norm or post-sublayer norm); use site='resid_pre' or 'resid_post'"
        )
    return Reducer(
        (names.at("resid_pre", layer), names.at("attn_out", layer)),
        lambda pre, out: fn(pre.float() + out.float()),
    )


def ff_reducer(view: WeightView, layer: int, fn: Callable[[Tensor], Tensor]) -> Reducer:
    """A reducer of the FF coefficients ``[batch, pos, d_mlp]`` of ``layer``."""
    if view.layer(layer).W_out is None:
        raise UnsupportedModelError(f"layer {layer} of {view.spec.model_name} has no dense MLP")
    return Reducer((view.hook_names.at("mlp_post", layer),), lambda x: fn(x.float()))


def z_reducer(view: WeightView, layer: int, fn: Callable[[Tensor], Tensor]) -> Reducer:
    """A reducer of the per-head ``z [batch, pos, n_heads, d_head]`` of ``layer``."""
    names = view.hook_names
    return Reducer(
        (names.at("attn_in", layer), names.at("pattern", layer)),
        lambda x, p: fn(z_from(view, layer, x, p)),
    )


def _collect(model: Any, tokens: Tensor, reducers: dict[str, Reducer]) -> dict[str, Tensor]:
    if tokens.ndim == 1:
        tokens = tokens[None]
    return stream(model, tokens, reducers, batch_size=tokens.shape[0], progress=False)


def ff_coefficients(model: Any, tokens: Tensor, layers: Any = None) -> dict[int, Tensor]:
    """FF neuron coefficients ``[batch, pos, d_mlp]`` per layer (see the module docstring)."""
    view = adapt(model)
    reducers = {
        str(layer): ff_reducer(view, layer, lambda x: x) for layer in _layer_range(view, layers)
    }
    return {int(k): v for k, v in _collect(model, tokens, reducers).items()}


def attention_patterns(model: Any, tokens: Tensor, layers: Any = None) -> dict[int, Tensor]:
    """Attention patterns ``[batch, n_heads, query_pos, key_pos]`` per layer."""
    view = adapt(model)
    names = view.hook_names
    # A reducer's output must lead with [batch, pos]: move the heads after the query position.
    reducers = {
        str(layer): Reducer((names.at("pattern", layer),), lambda p: p.float().transpose(1, 2))
        for layer in _layer_range(view, layers)
    }
    out = _collect(model, tokens, reducers)
    return {int(k): v.transpose(1, 2) for k, v in out.items()}


def head_z(model: Any, tokens: Tensor, layers: Any = None) -> dict[int, Tensor]:
    """Per-head ``z [batch, pos, n_heads, d_head]`` per layer (sub-head coefficients)."""
    view = adapt(model)
    reducers = {
        str(layer): z_reducer(view, layer, lambda z: z) for layer in _layer_range(view, layers)
    }
    return {int(k): v for k, v in _collect(model, tokens, reducers).items()}


def residuals(
    model: Any, tokens: Tensor, site: str = "resid_post", layers: Any = None
) -> dict[int, Tensor]:
    """The residual stream ``[batch, pos, d_model]`` at ``site`` per layer."""
    view = adapt(model)
    reducers = {
        str(layer): residual_reducer(view, site, layer, lambda x: x)
        for layer in _layer_range(view, layers)
    }
    return {int(k): v for k, v in _collect(model, tokens, reducers).items()}


__all__ = [
    "RESIDUAL_SITES",
    "attention_patterns",
    "ff_coefficients",
    "ff_reducer",
    "head_z",
    "residual_reducer",
    "residuals",
    "z_from",
    "z_reducer",
]
