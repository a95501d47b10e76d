"""Known-answer copies of a view: reordered (``PermutedView``) or perturbed (``NoisyView``).

Reordering the heads of a layer or the neurons of an MLP leaves the model's function unchanged;
reordering layers does not. Their use is as a known answer: aligning a model with a permuted copy
of itself (``tl_embspace.apps.align``) must recover every permutation, and ``NoisyView`` says how
much noise that survives. Nothing is copied from the model until a layer is read, and the base
view is never modified.
"""

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..errors import InvalidArgumentError, UnsupportedModelError
from .hooks import HookNames
from .view import WeightView
from .weights import GlobalWeights, LayerWeights, expand_kv


def _check_permutation(perm: Sequence[int], size: int, what: str) -> list[int]:
    out = [int(i) for i in perm]
    if sorted(out) != list(range(size)):
        raise InvalidArgumentError(
            f"{what} must be a permutation of 0..{size - 1}, got {list(perm)}; "
            "list every index exactly once"
        )
    return out


def _kv_permutation(head_perm: list[int], n_heads: int, n_kv: int) -> list[int]:
    """The key/value-head order implied by a query-head order that keeps groups together.

    Query head h reads kv head h // group; a reorder of query heads is consistent with one kv
    reorder only when each block of ``group`` new heads comes from one old group.
    """
    group = n_heads // n_kv
    kv_perm = []
    for g in range(n_kv):
        sources = {head_perm[h] // group for h in range(g * group, (g + 1) * group)}
        if len(sources) != 1:
            raise InvalidArgumentError(
                f"head order {head_perm} mixes key/value groups (n_heads={n_heads}, "
                f"n_kv_heads={n_kv}: query heads {g * group}..{(g + 1) * group - 1} must all come "
                "from one group); permute whole groups and heads within a group"
            )
        kv_perm.append(sources.pop())
    return kv_perm


def _take(t: Tensor | None, index: list[int], dim: int) -> Tensor | None:
    return None if t is None else t.index_select(dim, torch.tensor(index, device=t.device))


class PermutedView(WeightView):
    """A view whose layer ``i`` is the base's layer ``layers[i]``, heads and neurons reordered.

    Args:
        base: The view to reorder (not modified).
        layers: New layer order: new layer ``i`` is base layer ``layers[i]``. None keeps it.
        heads: Per *new* layer, the new query-head order (new head ``h`` is old head
            ``heads[i][h]``); None keeps every layer's order. With grouped key/value heads the
            order must keep each group's query heads together (the kv heads move with them).
        neurons: Per new layer, the new MLP-neuron order (rows of ``W_out``, columns of
            ``W_in``/``W_gate``); None keeps it.

    Raises:
        InvalidArgumentError: An order that is not a permutation, or one that splits a group.
        UnsupportedModelError: Neuron orders for sparse-MoE layers (each expert has its own).
    """

    def __init__(
        self,
        base: WeightView,
        *,
        layers: Sequence[int] | None = None,
        heads: Sequence[Sequence[int]] | None = None,
        neurons: Sequence[Sequence[int]] | None = None,
    ) -> None:
        spec = base.spec
        n = spec.n_layers
        self._base = base
        self.layer_order = _check_permutation(range(n) if layers is None else layers, n, "layers")
        self.head_orders = [
            _check_permutation(h, spec.n_heads, f"heads of layer {i}")
            for i, h in enumerate(heads or [range(spec.n_heads)] * n)
        ]
        self.neuron_orders = None if neurons is None else [list(p) for p in neurons]
        for orders, what in ((self.head_orders, "heads"), (self.neuron_orders, "neurons")):
            if orders is not None and len(orders) != n:
                raise InvalidArgumentError(
                    f"{what} needs one order per layer ({n}), got {len(orders)}"
                )
        self._kv_orders = [
            _kv_permutation(h, spec.n_heads, spec.n_kv_heads) for h in self.head_orders
        ]
        # Layer i of this view is the base's layer_order[i]: per-layer facts move with it.
        moved = [self.layer_order.index(i) for i in range(n)]  # where base layer i went
        per_layer = dict(
            mixers=tuple(spec.mixers[j] for j in self.layer_order) if spec.mixers else (),
            attention_layers=tuple(sorted(moved[j] for j in spec.attention_layers)),
            mlp_layers=tuple(sorted(moved[j] for j in spec.mlp_layers)),
            moe_layers=tuple(sorted(moved[j] for j in spec.moe_layers)),
        )
        super().__init__(
            replace(spec, model_name=f"permuted({spec.model_name})", **per_layer),
            f"permuted({base.weights})",
            base.tokenizer,
        )

    @classmethod
    def shuffled(cls, base: WeightView, seed: int) -> "PermutedView":
        """A copy with every layer, head and MLP-neuron order shuffled (seeded).

        Heads move as whole key/value groups, then within their group, so grouped-query models
        stay consistent. Uses ``random.Random(seed)``.
        """
        rng = random.Random(seed)
        s = base.spec
        group = s.n_heads // s.n_kv_heads
        heads = []
        for _ in range(s.n_layers):
            order: list[int] = []
            for g in rng.sample(range(s.n_kv_heads), s.n_kv_heads):
                order += [g * group + h for h in rng.sample(range(group), group)]
            heads.append(order)
        layers = rng.sample(range(s.n_layers), s.n_layers)
        neurons = None
        if s.d_mlp and s.n_experts == 0:
            neurons = [rng.sample(range(s.d_mlp), s.d_mlp) for _ in range(s.n_layers)]
        return cls(base, layers=layers, heads=heads, neurons=neurons)

    def expected_matches(
        self,
    ) -> tuple[list[int], dict[int, list[int]], dict[int, list[int]] | None]:
        """Where each base layer, head and neuron went: the answer an alignment should find.

        Returns:
            ``(layers, heads, neurons)``: ``layers[l]`` is the new index of base layer l;
            ``heads[l][h]`` the new index (in layer ``layers[l]``) of base head h of layer l;
            ``neurons[l][j]`` likewise for MLP neurons (None when neurons were not reordered).
        """

        def inverse(order: Sequence[int]) -> list[int]:
            inv = [0] * len(order)
            for new, old in enumerate(order):
                inv[old] = new
            return inv

        layers = inverse(self.layer_order)
        heads = {old: inverse(self.head_orders[new]) for old, new in enumerate(layers)}
        neurons = None
        if self.neuron_orders is not None:
            neurons = {old: inverse(self.neuron_orders[new]) for old, new in enumerate(layers)}
        return layers, heads, neurons

    @property
    def hook_names(self) -> HookNames:
        """Refused: no model runs these weights (a layer reorder changes the function)."""
        raise UnsupportedModelError(
            "a PermutedView has no model to hook: its layers are reordered weights; "
            "hook the base model instead"
        )

    def _read_globals(self) -> GlobalWeights:
        return self._base.globals

    def _read_layer(self, layer: int) -> LayerWeights:
        lw = self._base.layer(self.layer_order[layer])
        heads, kv = self.head_orders[layer], self._kv_orders[layer]
        f: dict[str, Any] = dict(lw.__dict__)
        f["layer"] = layer
        for name in ("W_Q", "W_O", "b_Q"):
            f[name] = _take(f[name], heads, 0)
        for name in ("W_K_grouped", "W_V_grouped", "b_K_grouped", "b_V_grouped"):
            f[name] = _take(f[name], kv, 0)
        # q/k norm gains are per head where the whole projection is normalised (OLMo-2/3):
        # [n_heads, d_head] and [n_kv_heads, d_head]; a [d_head] gain is shared by every head.
        for name, order in (("q_norm_w", heads), ("k_norm_w", kv)):
            if f[name] is not None and f[name].ndim == 2:
                f[name] = _take(f[name], order, 0)
        n_heads = f["W_Q"].shape[0]  # stored, not read: a hybrid's mixer layer refuses W_Q
        f["W_K"], f["W_V"] = (
            expand_kv(f["W_K_grouped"], n_heads),
            expand_kv(f["W_V_grouped"], n_heads),
        )
        if self.neuron_orders is not None:
            if lw.experts is not None:
                raise UnsupportedModelError(
                    "neuron orders apply to dense MLPs; a sparse-MoE layer has one MLP per expert"
                )
            if lw.W_out is not None:
                order = _check_permutation(
                    self.neuron_orders[layer], lw.W_out.shape[0], f"neurons of layer {layer}"
                )
                for name in ("W_in", "W_gate"):
                    f[name] = _take(f[name], order, 1)
                for name in ("b_in", "b_gate", "W_out"):
                    f[name] = _take(f[name], order, 0)
        return LayerWeights(**f)


class NoisyView(WeightView):
    """Every attention and MLP weight plus seeded Gaussian noise of ``sigma`` times its own std.

    Args:
        base: The view to perturb (not modified).
        sigma: Noise level relative to each weight tensor's standard deviation (per layer).
        seed: Seed of the noise (layer ``l`` uses ``seed * 1000 + l``).
    """

    _NOISY = ("W_Q", "W_K_grouped", "W_V_grouped", "W_O", "W_in", "W_gate", "W_out")

    def __init__(self, base: WeightView, sigma: float, seed: int = 0) -> None:
        if not sigma >= 0:
            raise InvalidArgumentError(f"sigma must be >= 0, got {sigma!r}")
        self._base, self.sigma, self.seed = base, float(sigma), seed
        spec = base.spec
        super().__init__(
            replace(spec, model_name=f"noisy({spec.model_name}, sigma={sigma:g})"),
            f"noisy({base.weights}, sigma={sigma:g}, seed={seed})",
            base.tokenizer,
        )

    @property
    def hook_names(self) -> HookNames:
        """Refused: no model runs these weights."""
        raise UnsupportedModelError(
            "a NoisyView has no model to hook: its weights are perturbed copies; "
            "hook the base model instead"
        )

    def _read_globals(self) -> GlobalWeights:
        return self._base.globals

    def _read_layer(self, layer: int) -> LayerWeights:
        gen = torch.Generator().manual_seed(self.seed * 1000 + layer)
        f: dict[str, Any] = dict(self._base.layer(layer).__dict__)
        for name in self._NOISY:
            w = f[name]
            if w is not None and w.numel():  # a hybrid's mixer layer: empty placeholders
                noise = torch.randn(w.shape, generator=gen, dtype=torch.float32)
                f[name] = w + (self.sigma * w.float().std() * noise).to(w.dtype)
        n_heads = f["W_Q"].shape[0]
        f["W_K"] = expand_kv(f["W_K_grouped"], n_heads)
        f["W_V"] = expand_kv(f["W_V_grouped"], n_heads)
        return LayerWeights(**f)


__all__ = ["NoisyView", "PermutedView"]
