"""``FoldedView``: norm weights folded into the linear maps that read the norm's output.

Reproduces TransformerLens's load-time processing (``fold_ln``, ``center_writing_weights``,
``center_unembed``, ``fold_value_biases``) on the fly, from any pre-norm view.
"""

from dataclasses import replace
from typing import Any, overload

import torch
from torch import Tensor

from ..errors import UnsupportedModelError
from .families import FAMILIES
from .hooks import HookNames
from .view import WeightView
from .weights import GlobalWeights, LayerWeights, MLPWeights, expand_kv


def _own(w: Tensor) -> Tensor:
    """A float32 copy that shares no memory with ``w``.

    ``w.float()`` returns ``w`` itself when it is float32 already: a weight the folding leaves
    unchanged (``W_O`` of an RMS model) would then be the very tensor the base view caches, and
    writing through one view would change the other.
    """
    return w.to(torch.float32, copy=True)


def _scale_rows(w: Tensor, ln_w: Tensor | None) -> Tensor:
    """Multiply the d_model axis (second to last) of a read-side weight by the norm weight."""
    return w if ln_w is None else w * ln_w[:, None].to(w.dtype)


def _bias_through(w: Tensor, ln_b: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """Bias after folding: ``bias + ln_b @ w`` (w's d_model axis is second to last)."""
    if ln_b is None:
        return bias
    extra = (w * ln_b[:, None].to(w.dtype)).sum(-2)
    return extra if bias is None else bias + extra


def _center_read(w: Tensor, on: bool) -> Tensor:
    """LayerNorm centres its input, so a reader only sees the mean-free part of its weights."""
    return w - w.mean(-2, keepdim=True) if on else w


@overload
def _center_write(w: Tensor) -> Tensor: ...
@overload
def _center_write(w: Tensor | None) -> Tensor | None: ...
def _center_write(w: Tensor | None) -> Tensor | None:
    """Remove each written vector's mean over d_model (LayerNorm removes it anyway)."""
    return None if w is None else w - w.mean(-1, keepdim=True)


class FoldedView(WeightView):
    """Norm weights folded into the linear maps that read the norm's output (see ``folded``)."""

    def __init__(
        self,
        base: WeightView,
        *,
        center_writing_weights: bool,
        center_unembed: bool | None,
        fold_value_biases: bool,
    ) -> None:
        spec = base.spec
        # Centring W_U shifts every logit equally, which a soft-cap does not ignore: off by
        # default under a final soft-cap (as TransformerLens does), refused if asked for.
        if center_unembed is None:
            center_unembed = spec.final_softcap is None
        elif center_unembed and spec.final_softcap is not None:
            raise UnsupportedModelError(
                f"center_unembed=True changes {spec.model_name}'s logits: its final logits are "
                f"soft-capped (final_softcap={spec.final_softcap}); use center_unembed=False"
            )
        if spec.residual_normalised_in_place:
            raise UnsupportedModelError(
                f"cannot fold the norms of {spec.model_name}: "
                f"norm_placement={spec.norm_placement!r}. In a post-norm model the norm's output "
                "is the residual stream itself, so its weights cannot move into the next "
                "sublayer; use the raw weights (adapt(model))"
            )
        if isinstance(base, FoldedView):
            # Fold from the unfolded weights, so the options (and the label) are these ones.
            base = base._base
        is_ln = spec.norm_type == "LN"
        self._base = base
        self._options = dict(
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
        )
        # TransformerLens centres writing weights only for LayerNorm models (RMSNorm does not
        # remove the mean, so centring would change the function).
        self._center_write = center_writing_weights and is_ln
        self._center_unembed = center_unembed
        self._fold_value_biases = fold_value_biases
        flags = ["fold_ln"]
        flags += ["center_writing_weights"] if self._center_write else []
        flags += ["center_unembed"] if center_unembed else []
        flags += ["fold_value_biases"] if fold_value_biases else []
        # TransformerLens folds Cohere's logit_scale into W_U (and b_U), so do we; Granite's
        # logits_scaling is one of its muP multipliers, which TransformerLens leaves to the
        # forward pass: it stays in the spec, applied by view.logits.
        family = FAMILIES[spec.family] if spec.family in FAMILIES else None
        self._fold_logit_scale = (
            spec.logit_scale != 1.0 and family is not None and family.logit_scale
        )
        if self._fold_logit_scale:
            flags += ["logit_scale"]
        weights = f"folded({', '.join(flags)}) of {base.weights}"
        folded_spec = replace(
            spec,
            ln_folded=True,
            logit_scale=1.0 if self._fold_logit_scale else spec.logit_scale,
        )
        super().__init__(folded_spec, weights, base.tokenizer)

    @property
    def hook_names(self) -> HookNames:
        """The base model's hook names (folding changes weights, not the model's hooks)."""
        return self._base.hook_names

    def source_version(self) -> object:
        """Changes with the base view's (folded weights change exactly when the base's do)."""
        return (self._refreshes, self._base.source_version())

    def refresh(self) -> None:
        """Forget every weight read so far, here and in the base view."""
        self._base.refresh()
        super().refresh()

    def folded(
        self,
        *,
        center_writing_weights: bool | None = None,
        center_unembed: bool | None = None,
        fold_value_biases: bool | None = None,
    ) -> "WeightView":
        """This view when the options match (or are not given); else a re-fold of the base.

        Folding is idempotent, but the other options are not (centring cannot be undone), so a
        different option re-folds the unfolded weights rather than being dropped.
        """
        given = dict(
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
        )
        options = {**self._options, **{k: v for k, v in given.items() if v is not None}}
        if options == self._options:
            return self
        return FoldedView(self._base, **options)

    def _read_globals(self) -> GlobalWeights:
        g = self._base.globals_for_derived_view()
        is_ln = self.spec.norm_type == "LN"
        # A final LayerNorm without a weight (OLMo's non-parametric one) leaves nothing to fold:
        # TransformerLens then leaves W_U's read side uncentred too (centring it would not
        # change the logits either, LayerNorm's output being mean-free), and so do we.
        W_U = _center_read(
            _scale_rows(_own(g.W_U), g.ln_final_w), is_ln and g.ln_final_w is not None
        )
        b_U = _bias_through(_own(g.W_U), g.ln_final_b, None if g.b_U is None else _own(g.b_U))
        if self._fold_logit_scale:
            scale = self._base.spec.logit_scale
            W_U, b_U = W_U * scale, None if b_U is None else b_U * scale
        if self._center_unembed:
            W_U = W_U - W_U.mean(-1, keepdim=True)
            b_U = None if b_U is None else b_U - b_U.mean()
        W_E, W_pos = _own(g.W_E), None if g.W_pos is None else _own(g.W_pos)
        if self._center_write:
            W_E, W_pos = _center_write(W_E), _center_write(W_pos)
        # An embedding norm (Bloom) sits before block 0: nothing reads its output but the
        # residual, so it stays unfolded, as TransformerLens leaves it.
        return GlobalWeights(
            W_E=W_E,
            W_U=W_U,
            b_U=b_U,
            W_pos=W_pos,
            ln_final_w=None,
            ln_final_b=None,
            embed_ln_w=g.embed_ln_w,
            embed_ln_b=g.embed_ln_b,
        )

    def _read_layer(self, layer: int) -> LayerWeights:
        lw = self._base.layer(layer)
        is_ln = self.spec.norm_type == "LN"
        # Any: the fields' own types are LayerWeights' (tensors, optional ones, experts).
        f: dict[str, Any] = {
            k: (_own(v) if isinstance(v, Tensor) else v) for k, v in lw.__dict__.items()
        }

        def read(
            w: Tensor | None,
            ln_w: Tensor | None,
            ln_b: Tensor | None,
            b: Tensor | None,
            center: bool = is_ln,
        ) -> tuple[Any, Tensor | None]:  # the folded weight (None only where w is None)
            if w is None:
                return None, b
            return _center_read(_scale_rows(w, ln_w), center), _bias_through(w, ln_b, b)

        # The MLP reads ln2's output, also in parallel blocks (GPT-NeoX has its own ln2); only a
        # parallel block without an ln2 (GPT-J on the bridge, one shared norm) reuses ln1.
        no_ln2 = self.spec.parallel_attn_mlp and f["ln2_w"] is None
        mlp_ln_w, mlp_ln_b = (f["ln1_w"], f["ln1_b"]) if no_ln2 else (f["ln2_w"], f["ln2_b"])
        W_Q, b_Q = read(f["W_Q"], f["ln1_w"], f["ln1_b"], f["b_Q"])
        W_Kg, b_Kg = read(f["W_K_grouped"], f["ln1_w"], f["ln1_b"], f["b_K_grouped"])
        W_Vg, b_Vg = read(f["W_V_grouped"], f["ln1_w"], f["ln1_b"], f["b_V_grouped"])
        W_in, b_in = read(f["W_in"], mlp_ln_w, mlp_ln_b, f["b_in"])
        # TransformerLens does not centre W_gate (equivalent under LayerNorm); neither do we, so
        # folded() equals its processed weights. LayerNorm's bias reaches the gate as b_gate.
        W_gate, b_gate = read(f["W_gate"], mlp_ln_w, mlp_ln_b, f["b_gate"], False)
        W_O: Tensor = f["W_O"]
        b_O, W_out, b_out = f["b_O"], f["W_out"], f["b_out"]
        experts, W_router, shared, W_shared_gate = None, None, None, None
        if lw.experts is not None:
            if mlp_ln_b is not None:
                # A LayerNorm bias would reach the router and the gates as biases the view does
                # not carry; no sparse-MoE family read here has one.
                raise UnsupportedModelError(
                    f"cannot fold layer {layer} of {self.spec.model_name}: a sparse-MoE layer "
                    "after a LayerNorm with a bias is not supported; use the raw weights"
                )
            experts = tuple(self._fold_expert(e, mlp_ln_w, mlp_ln_b, read) for e in lw.experts)
            W_router, _ = read(f["W_router"], mlp_ln_w, mlp_ln_b, None)
            if lw.shared_expert is not None:
                shared = self._fold_expert(lw.shared_expert, mlp_ln_w, mlp_ln_b, read)
            W_shared_gate, _ = read(f["W_shared_gate"], mlp_ln_w, mlp_ln_b, None)
        if self._fold_value_biases and b_Vg is not None:
            # Attention patterns sum to one, so each head adds b_V @ W_O whatever it attends to.
            b_V = expand_kv(b_Vg, self.spec.n_heads)
            folded = torch.einsum("hd,hdm->m", b_V, W_O)
            b_O = folded if b_O is None else b_O + folded
            b_Vg = torch.zeros_like(b_Vg)
        if self._center_write:
            W_O, W_out = _center_write(W_O), _center_write(W_out)
            b_O = None if b_O is None else b_O - b_O.mean()
            b_out = None if b_out is None else b_out - b_out.mean()
        # A hybrid's layer without attention keeps its refusal (``no_attention``): all None.
        n_heads = self.spec.n_heads
        return LayerWeights(
            layer=layer,
            W_Q=W_Q,
            W_K=expand_kv(W_Kg, n_heads),
            W_V=expand_kv(W_Vg, n_heads),
            W_O=W_O,
            W_K_grouped=W_Kg,
            W_V_grouped=W_Vg,
            b_Q=b_Q,
            b_K_grouped=b_Kg,
            b_V_grouped=b_Vg,
            b_O=b_O,
            W_in=W_in,
            W_gate=W_gate,
            b_gate=b_gate,
            W_out=W_out,
            b_in=b_in,
            b_out=b_out,
            ln1_w=None,
            ln1_b=None,
            ln2_w=None,
            ln2_b=None,
            # Per-head q/k norms stay: their gains act after a per-head normalisation, so they
            # do not fold into W_Q/W_K (TransformerLens keeps them too); see W_Q_qk.
            q_norm_w=f["q_norm_w"],
            k_norm_w=f["k_norm_w"],
            # Post-sublayer norms normalise the sublayer's output: nothing folds through them.
            ln1_post_w=f["ln1_post_w"],
            ln2_post_w=f["ln2_post_w"],
            experts=experts,
            W_router=W_router,
            router_selection_bias=f["router_selection_bias"],
            shared_expert=shared,
            W_shared_gate=W_shared_gate,
            no_attention=f["no_attention"],
        )

    def _fold_expert(
        self, e: MLPWeights, ln_w: Tensor | None, ln_b: Tensor | None, read: Any
    ) -> MLPWeights:
        """One expert's MLP with the MLP norm folded into its read side."""
        W_in, b_in = read(_own(e.W_in), ln_w, ln_b, None if e.b_in is None else _own(e.b_in))
        W_gate, _ = read(None if e.W_gate is None else _own(e.W_gate), ln_w, ln_b, None, False)
        W_out = _own(e.W_out)
        b_out = None if e.b_out is None else _own(e.b_out)
        if self._center_write:
            W_out = _center_write(W_out)
            b_out = None if b_out is None else b_out - b_out.mean()
        return MLPWeights(W_in=W_in, W_gate=W_gate, W_out=W_out, b_in=b_in, b_out=b_out)


__all__ = ["FoldedView"]
