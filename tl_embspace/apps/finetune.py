"""Fine-tuning read in embedding space: which parameters moved, and what their deltas say.

Dar et al. §5 ("fine-tuning directions"): ``Δθ = θ_tuned - θ_base`` projected with the base
model's embedding. For every parameter :func:`finetune_diff` reports the relative Frobenius norm
``‖Δ‖ / ‖θ_base‖`` (the ranking of what moved most), and in each changed layer reads the deltas:

* vectors (FF keys, gates and values; Q/K/V/O sub-heads): the ``top_n`` most-changed vectors'
  deltas, top and bottom tokens, exactly as the interpreters read the vectors themselves
  (``project_vectors``, same labels, same bases);
* circuits: the delta of each head's whole OV and QK circuit, ``W'_V W'_O - W_V W_O`` (and
  ``W'_Q W'_Kᵀ - W_Q W_Kᵀ``), of rank at most ``2 d_head``, by its singular directions. The
  delta of a product is not the product of the deltas, so running the circuit interpreters on
  "delta weights" would be wrong; the delta circuit is factored as
  ``[W'_V, W_V] [W'_O; -W_O]`` instead and never formed.

Both models must have the same shapes; the deltas are read with the *base* model's bases (choose
them with ``read=``/``write=`` or pass the base as an ``EmbeddingSpace``).
"""

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..adapters import LayerWeights, WeightView, adapt
from ..errors import InvalidArgumentError, UnsupportedModelError
from ..interpreters import as_space
from ..interpreters._base import check_layer, project_vectors, select
from ..interpreters.svd import canonical_sign, low_rank_svd, near_degenerate
from ..results import VectorProjection
from ..space import EmbeddingSpace
from ..tokens import TokenFilter

# Shapes that must agree for a delta to exist.
_SHAPE_FACTS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_mlp", "d_vocab")

# Parameters compared in each layer: LayerWeights field -> the name reported.
_LAYER_PARAMETERS = {
    "W_Q": "W_Q",
    "W_K_grouped": "W_K",
    "W_V_grouped": "W_V",
    "W_O": "W_O",
    "b_Q": "b_Q",
    "b_K_grouped": "b_K",
    "b_V_grouped": "b_V",
    "b_O": "b_O",
    "W_in": "W_in",
    "W_gate": "W_gate",
    "W_out": "W_out",
    "b_in": "b_in",
    "b_gate": "b_gate",
    "b_out": "b_out",
    "ln1_w": "ln1_w",
    "ln1_b": "ln1_b",
    "ln2_w": "ln2_w",
    "ln2_b": "ln2_b",
    "ln1_post_w": "ln1_post_w",
    "ln2_post_w": "ln2_post_w",
    "q_norm_w": "q_norm_w",
    "k_norm_w": "k_norm_w",
}
_GLOBAL_PARAMETERS = ("W_E", "W_U", "b_U", "W_pos", "ln_final_w", "ln_final_b")


@dataclass(frozen=True)
class ParameterChange:
    """How much one parameter moved.

    Attributes:
        name: ``"L{layer}.{param}"`` or a global name (``"W_E"``, ``"W_U"``, ...).
        layer: The layer, or None for a global parameter.
        relative: ``‖Δ‖_F / ‖θ_base‖_F`` (``inf`` when a zero parameter became non-zero).
        delta_norm: ``‖Δ‖_F``.
        base_norm: ``‖θ_base‖_F``.
    """

    name: str
    layer: int | None
    relative: float
    delta_norm: float
    base_norm: float


@dataclass(frozen=True)
class FinetuneDiff:
    """The result of :func:`finetune_diff`.

    Attributes:
        changes: Every parameter, most moved first (by ``relative``; ties by name).
        readings: Per changed layer and group, the deltas read in embedding space, keyed
            ``"L{layer}.{group}"`` (groups ``ff_key``, ``ff_gate``, ``ff_value``, ``q``, ``k``,
            ``v``, ``o``; ``ov.output``, ``ov.input``, ``qk.query``, ``qk.key`` for circuits).
            Each row's ``extras`` hold ``delta_norm`` and ``relative`` (vectors) or
            ``singular_value`` and ``near_degenerate`` (circuits).
        provenance: The two models, their weights, the bases.
    """

    changes: tuple[ParameterChange, ...]
    readings: dict[str, VectorProjection] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def changed(self, min_relative: float = 0.0) -> list[ParameterChange]:
        """The parameters whose relative change exceeds ``min_relative``."""
        return [c for c in self.changes if c.relative > min_relative]

    def to_dict(self, k: int = 10) -> dict[str, Any]:
        """JSON-ready: the ranking and, per reading, each row's top and bottom ``k`` tokens."""
        readings = {}
        for key, p in self.readings.items():
            readings[key] = [
                {
                    "label": label,
                    "top": p.top_tokens(i)[:k],
                    "bottom": p.bottom_tokens(i)[:k],
                    **{name: values[i] for name, values in p.extras.items()},
                }
                for i, label in enumerate(p.labels)
            ]
        return {
            "changes": [c.__dict__ for c in self.changes],
            "readings": readings,
            "provenance": self.provenance,
        }

    def to_json(self, k: int = 10) -> str:
        """:meth:`to_dict` as strict JSON (an infinite relative change, from zero, is null)."""
        return json.dumps(_finite(self.to_dict(k)), allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _check_compatible(tuned: WeightView, base: WeightView) -> None:
    diff = {
        f: (getattr(tuned.spec, f), getattr(base.spec, f))
        for f in _SHAPE_FACTS
        if getattr(tuned.spec, f) != getattr(base.spec, f)
    }
    if diff:
        raise InvalidArgumentError(
            "the fine-tuned model and its base must have the same architecture; they differ in "
            + ", ".join(f"{k} ({a} vs {b})" for k, (a, b) in diff.items())
        )
    if tuned.spec.n_experts or base.spec.n_experts:
        raise UnsupportedModelError(
            "fine-tuning deltas of sparse-MoE layers (one MLP per expert) are not supported"
        )
    if (tuned.weights == "raw") != (base.weights == "raw"):
        raise InvalidArgumentError(
            f"the two views hold different kinds of weights ({tuned.weights!r} vs "
            f"{base.weights!r}); compare raw with raw, or folded with folded"
        )


def _change(name: str, layer: int | None, t: Tensor | None, b: Tensor | None) -> ParameterChange:
    if (t is None) != (b is None):
        raise InvalidArgumentError(
            f"{name} exists in only one of the two models; they are not the same architecture"
        )
    assert t is not None and b is not None
    delta = float((t.double() - b.double()).norm())
    base = float(b.double().norm())
    relative = delta / base if base > 0 else (math.inf if delta > 0 else 0.0)
    return ParameterChange(name, layer, relative, delta, base)


def parameter_changes(tuned: Any, base: Any) -> tuple[ParameterChange, ...]:
    """Every parameter's relative Frobenius change, most moved first (see :func:`finetune_diff`)."""
    vt, vb = adapt(tuned), adapt(base)
    _check_compatible(vt, vb)
    out = [
        _change(name, None, getattr(vt.globals, name), getattr(vb.globals, name))
        for name in _GLOBAL_PARAMETERS
        if getattr(vt.globals, name) is not None or getattr(vb.globals, name) is not None
    ]
    for layer in range(vb.spec.n_layers):
        lt, lb = vt.layer(layer), vb.layer(layer)
        for field_name, shown in _LAYER_PARAMETERS.items():
            t, b = getattr(lt, field_name), getattr(lb, field_name)
            if t is not None or b is not None:
                out.append(_change(f"L{layer}.{shown}", layer, t, b))
    return tuple(sorted(out, key=lambda c: (-c.relative, c.name)))


# Vector groups read from a layer: name -> (side, vectors [n, d_model] of a layer, label).
def _vector_groups(lw: LayerWeights) -> dict[str, tuple[str, Tensor | None, list[str]]]:
    n_heads, d_head = lw.W_Q.shape[0], lw.W_Q.shape[2]
    n_kv = lw.W_K_grouped.shape[0]

    def cols(w: Tensor) -> Tensor:
        return w.transpose(1, 2).reshape(-1, w.shape[1])

    def subhead_labels(tag: str, name: str, n: int) -> list[str]:
        return [f"L{lw.layer}.{tag}{h}.{name}[{j}]" for h in range(n) for j in range(d_head)]

    def neuron_labels(name: str, w: Tensor | None) -> list[str]:
        return [] if w is None else [f"L{lw.layer}.{name}[{i}]" for i in range(w.shape[-1])]

    return {
        "ff_key": (
            "read",
            None if lw.W_in is None else lw.W_in.T,
            neuron_labels("ff_key", lw.W_in),
        ),
        "ff_gate": (
            "read",
            None if lw.W_gate is None else lw.W_gate.T,
            neuron_labels("ff_gate", lw.W_gate),
        ),
        "ff_value": (
            "write",
            lw.W_out_written,
            neuron_labels("ff_value", None if lw.W_out is None else lw.W_out.T),
        ),
        "q": ("read", cols(lw.W_Q), subhead_labels("H", "q", n_heads)),
        "k": ("read", cols(lw.W_K_grouped), subhead_labels("KV", "k", n_kv)),
        "v": ("read", cols(lw.W_V_grouped), subhead_labels("KV", "v", n_kv)),
        "o": (
            "write",
            lw.W_O_written.reshape(-1, lw.W_O.shape[-1]),
            subhead_labels("H", "o", n_heads),
        ),
    }


_NOTE = "fine-tuning delta (tuned - base), read with the base model's bases"


def _read_vectors(
    space: EmbeddingSpace,
    lt: LayerWeights,
    lb: LayerWeights,
    top_n: int,
    k: int,
    token_filter: TokenFilter | None,
) -> dict[str, VectorProjection]:
    out = {}
    groups_t, groups_b = _vector_groups(lt), _vector_groups(lb)
    for group, (side, vb, labels) in groups_b.items():
        vt = groups_t[group][1]
        if vb is None or vt is None:
            continue
        delta = vt.float() - vb.float()
        norms = delta.norm(dim=1)
        moved = int((norms > 0).sum())
        if moved == 0:
            continue
        idx = torch.argsort(norms, descending=True, stable=True)[: min(top_n, moved)].tolist()
        base_norms = vb.float().norm(dim=1)
        out[f"L{lt.layer}.{group}"] = project_vectors(
            space,
            delta[idx],
            side=side,
            interpreter=f"delta_{group}",
            labels=[labels[i] for i in idx],
            layer=lt.layer,
            k=k,
            token_filter=token_filter,
            extras={
                "delta_norm": [float(norms[i]) for i in idx],
                "relative": [
                    float(norms[i] / base_norms[i]) if base_norms[i] > 0 else math.inf for i in idx
                ],
            },
            note=_NOTE,
        )
    return out


def _read_circuits(
    space: EmbeddingSpace,
    lt: LayerWeights,
    lb: LayerWeights,
    top_n: int,
    components: int,
    k: int,
    token_filter: TokenFilter | None,
) -> dict[str, VectorProjection]:
    circuits = {
        # name: (left factor, right factor, (side, which) of U, (side, which) of V)
        "ov": (
            (lt.W_V, lt.W_O_written.transpose(1, 2)),
            (lb.W_V, lb.W_O_written.transpose(1, 2)),
            ("read", "input"),
            ("write", "output"),
        ),
        "qk": ((lt.W_Q_qk, lt.W_K_qk), (lb.W_Q_qk, lb.W_K_qk), ("read", "query"), ("read", "key")),
    }
    out = {}
    layer = lt.layer
    for name, ((Lt, Rt), (Lb, Rb), u_side, v_side) in circuits.items():
        # Delta circuit of head h: Lt Rtᵀ - Lb Rbᵀ = [Lt, Lb] [Rt, -Rb]ᵀ (never formed).
        svds = []
        for h in range(Lt.shape[0]):
            if torch.equal(Lt[h], Lb[h]) and torch.equal(Rt[h], Rb[h]):
                continue  # unchanged: its delta is exactly zero (an SVD would show rounding)
            A = torch.cat([Lt[h].float(), Lb[h].float()], dim=1)
            B = torch.cat([Rt[h].float(), -Rb[h].float()], dim=1)
            U, S, V = low_rank_svd(A, B)
            svds.append((float(S.pow(2).sum().sqrt()), h, U, S, V))
        changed = sorted((s for s in svds if s[0] > 0), key=lambda s: (-s[0], s[1]))[:top_n]
        for (side, which), use_u in ((u_side, True), (v_side, False)):
            rows, labels, values, flags = [], [], [], []
            for _, h, U, S, V in changed:
                c = min(components, int((S > 0).sum()))
                rows.append((U if use_u else V)[:, :c].T)
                labels += [f"L{layer}.H{h}.delta_{name}.{which}[{i}]" for i in range(c)]
                values += [float(x) for x in S[:c]]
                flags += near_degenerate(S, 0.01)[:c]
            if not rows:
                continue
            p = project_vectors(
                space,
                torch.cat(rows),
                side=side,
                interpreter=f"delta_svd_{name}",
                labels=labels,
                layer=layer,
                k=k,
                token_filter=token_filter,
                extras={"singular_value": values, "near_degenerate": flags},
                note=f"{which} singular vectors of the delta of W_{name.upper()} "
                "(canonical sign; both signs shown); " + _NOTE,
            )
            out[f"L{layer}.{name}.{which}"] = canonical_sign(p)
    return out


def finetune_diff(
    tuned: Any,
    base: Any,
    *,
    layers: Any = None,
    top_n: int = 5,
    components: int = 3,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    **basis: Any,
) -> FinetuneDiff:
    """Rank what fine-tuning moved, and read the deltas in embedding space.

    Args:
        tuned: The fine-tuned model (a TransformerLens model or a ``WeightView``).
        base: Its base model, same architecture (a model, a ``WeightView`` or an
            ``EmbeddingSpace``: its bases read the deltas). Compare like with like: raw with
            raw, or ``adapt(m).folded()`` with folded.
        layers: Layers to read (an int or ids); default every layer with a changed parameter.
        top_n: Per layer and group, how many of the most-changed vectors (and heads, for the
            circuits) to read.
        components: Singular directions read per changed head circuit.
        k: Top and bottom tokens kept per delta.
        token_filter: Restricts the tokens ranked (see :class:`TokenFilter`).
        **basis: ``read=``, ``write=`` for the base's space when ``base`` is not a space.

    Returns:
        A :class:`FinetuneDiff`: the ranking of parameters by relative Frobenius change and the
        readings of every changed layer.

    Raises:
        InvalidArgumentError: Different architectures, or raw weights against folded ones.
        UnsupportedModelError: Sparse-MoE models.
    """
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n <= 0:
        raise InvalidArgumentError(f"top_n must be a positive int, got {top_n!r}")
    if isinstance(components, bool) or not isinstance(components, int) or components <= 0:
        raise InvalidArgumentError(f"components must be a positive int, got {components!r}")
    space = as_space(base, **basis)
    vt, vb = adapt(tuned), space.view
    changes = parameter_changes(vt, vb)
    if layers is None:
        chosen = sorted({c.layer for c in changes if c.layer is not None and c.relative > 0})
    else:
        chosen = [check_layer(space, i) for i in select(layers, vb.spec.n_layers, "layers")]
    readings: dict[str, VectorProjection] = {}
    for layer in chosen:
        lt, lb = vt.layer(layer), vb.layer(layer)
        readings.update(_read_vectors(space, lt, lb, top_n, k, token_filter))
        readings.update(_read_circuits(space, lt, lb, top_n, components, k, token_filter))
    provenance = {
        "tuned": vt.spec.model_name,
        "base": vb.spec.model_name,
        "weights_tuned": vt.weights,
        "weights_base": vb.weights,
        **{k_: v for k_, v in space.describe().items()},
    }
    return FinetuneDiff(changes=changes, readings=readings, provenance=provenance)


__all__ = ["FinetuneDiff", "ParameterChange", "finetune_diff", "parameter_changes"]
