"""Weight containers in TransformerLens layout, and the one GQA expansion.

Conventions (whatever the backend):

* ``W_E [d_vocab, d_model]``, ``W_U [d_model, d_vocab_out]``, ``W_pos [n_ctx, d_model]``.
* Per layer ``W_Q [n_heads, d_model, d_head]``, ``W_O [n_heads, d_head, d_model]``; ``W_K`` and
  ``W_V`` are *expanded* to ``n_heads`` with ``repeat_interleave`` (query head ``h`` reads kv head
  ``h // (n_heads // n_kv_heads)``), and the grouped originals are kept as ``W_K_grouped`` /
  ``W_V_grouped [n_kv_heads, d_model, d_head]``.
* ``W_in``/``W_gate [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``.

Every tensor is a detached copy: nothing a caller does to a view can reach the model.
"""

from dataclasses import dataclass
from typing import Any, overload

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import UnsupportedLayerError, UnsupportedModelError

# Everything a LayerWeights derives from attention: reading one on a layer without attention (a
# hybrid's state-space or convolution layer) raises UnsupportedLayerError (``no_attention``).
ATTENTION_FIELDS = frozenset(
    {
        "W_Q",
        "W_K",
        "W_V",
        "W_O",
        "W_K_grouped",
        "W_V_grouped",
        "b_Q",
        "b_K_grouped",
        "b_V_grouped",
        "b_O",
        "b_K",
        "b_V",
        "W_Q_qk",
        "W_K_qk",
        "W_O_written",
        "q_norm_w",
        "k_norm_w",
        "ln1_post_w",
    }
)


@dataclass(frozen=True)
class MLPWeights:
    """One MLP (a dense layer's, or one expert of a sparse-MoE layer).

    ``act(x W_gate) * (x W_in + b_in)`` for gated MLPs (``W_gate`` not None), else
    ``act(x W_in + b_in)``; then ``@ W_out + b_out``.
    """

    W_in: Float[Tensor, "d_model d_mlp"]
    W_gate: Float[Tensor, "d_model d_mlp"] | None
    W_out: Float[Tensor, "d_mlp d_model"]
    b_in: Float[Tensor, " d_mlp"] | None = None
    b_out: Float[Tensor, " d_model"] | None = None


@dataclass(frozen=True)
class LayerWeights:
    """One layer's weights in TransformerLens layout (see the module docstring).

    Biases and norm parameters that the checkpoint lacks are ``None``; ``W_gate`` is ``None``
    for non-gated MLPs; MLP fields are ``None`` for attention-only layers and for sparse-MoE
    layers (whose MLPs are ``experts``).

    A hybrid model's layer whose token mixer is not attention (a Mamba state-space mixer, a
    gated short convolution) has ``no_attention`` set to the reason, and reading any attention
    field (``ATTENTION_FIELDS``: ``W_Q`` ... ``b_O``, the derived ``W_Q_qk``/``W_O_written``)
    raises ``UnsupportedLayerError`` with it; its MLP fields are read as usual (see
    ``make_mixer_layer``).
    """

    layer: int
    W_Q: Float[Tensor, "n_heads d_model d_head"]
    W_K: Float[Tensor, "n_heads d_model d_head"]
    W_V: Float[Tensor, "n_heads d_model d_head"]
    W_O: Float[Tensor, "n_heads d_head d_model"]
    W_K_grouped: Float[Tensor, "n_kv_heads d_model d_head"]
    W_V_grouped: Float[Tensor, "n_kv_heads d_model d_head"]
    b_Q: Float[Tensor, "n_heads d_head"] | None
    b_K_grouped: Float[Tensor, "n_kv_heads d_head"] | None
    b_V_grouped: Float[Tensor, "n_kv_heads d_head"] | None
    b_O: Float[Tensor, " d_model"] | None
    W_in: Float[Tensor, "d_model d_mlp"] | None
    W_gate: Float[Tensor, "d_model d_mlp"] | None
    W_out: Float[Tensor, "d_mlp d_model"] | None
    b_in: Float[Tensor, " d_mlp"] | None
    b_out: Float[Tensor, " d_model"] | None
    ln1_w: Float[Tensor, " d_model"] | None
    ln1_b: Float[Tensor, " d_model"] | None
    ln2_w: Float[Tensor, " d_model"] | None
    ln2_b: Float[Tensor, " d_model"] | None
    # Post-sublayer norm gains (Gemma-2/3): sublayer output -> RMSNorm * gain -> residual add.
    ln1_post_w: Float[Tensor, " d_model"] | None = None
    ln2_post_w: Float[Tensor, " d_model"] | None = None
    # A gated MLP's gate bias: absent in checkpoints, appears when a LayerNorm bias is folded.
    b_gate: Float[Tensor, " d_mlp"] | None = None
    # q/k norm gains (see ModelSpec.qk_norm_scope): ``[d_head]``, shared by every head, where
    # each head is normalised on its own (Qwen3, Gemma-3); per head, ``[n_heads, d_head]`` and
    # grouped ``[n_kv_heads, d_head]``, where the whole projection is (OLMo-2/3).
    q_norm_w: Float[Tensor, " d_head"] | Float[Tensor, "n_heads d_head"] | None = None
    k_norm_w: Float[Tensor, " d_head"] | Float[Tensor, "n_kv_heads d_head"] | None = None
    # Sparse MoE: one MLP per expert and the router (logits = x @ W_router); see
    # families.MoELayout for the routing rule. A bias added to the router's probabilities for
    # selection only (Ernie-4.5); an always-on shared expert, and its sigmoid gate
    # (sigmoid(x @ W_shared_gate) scales the shared expert's output) where it has one.
    experts: tuple[MLPWeights, ...] | None = None
    W_router: Float[Tensor, "d_model n_experts"] | None = None
    router_selection_bias: Float[Tensor, " n_experts"] | None = None
    shared_expert: MLPWeights | None = None
    W_shared_gate: Float[Tensor, "d_model 1"] | None = None
    # Why this layer has no attention weights (see the class docstring); None: it has them.
    no_attention: str | None = None

    def __getattribute__(self, name: str) -> Any:
        # One check for every attention field and property, so no reader of a hybrid's
        # state-space layer gets None (or a crash) where a refusal naming the layer is due.
        if name in ATTENTION_FIELDS:
            why = object.__getattribute__(self, "no_attention")
            if why is not None:
                raise UnsupportedLayerError(why)
        return object.__getattribute__(self, name)

    def __repr__(self) -> str:
        # Shapes, not values (and no attention field read, so a hybrid's layer prints too).
        parts = [
            f"{k}={tuple(v.shape) if isinstance(v, Tensor) else v!r}"
            for k, v in self.__dict__.items()
            if v is not None and not isinstance(v, tuple)
        ]
        return f"LayerWeights({', '.join(parts)})"

    @property
    def has_attention(self) -> bool:
        """False for a hybrid's layer whose token mixer is not attention (see ``no_attention``)."""
        return self.no_attention is None

    @property
    def is_moe(self) -> bool:
        """True for a sparse mixture-of-experts layer (its MLPs are ``experts``)."""
        return self.experts is not None

    @property
    def b_K(self) -> Float[Tensor, "n_heads d_head"] | None:
        """Key biases expanded to query heads."""
        return expand_kv(self.b_K_grouped, self.W_Q.shape[0])

    @property
    def b_V(self) -> Float[Tensor, "n_heads d_head"] | None:
        """Value biases expanded to query heads."""
        return expand_kv(self.b_V_grouped, self.W_Q.shape[0])

    @property
    def W_Q_qk(self) -> Float[Tensor, "n_heads d_model d_head"]:
        """``W_Q`` as the QK circuit sees it: with the q-norm gain folded in (when there is one).

        The normalisation itself (a positive scalar per query and head, or per query shared by
        its heads where the whole projection is normalised) is left out, as the residual norm
        is.
        """
        return _times_qk_gain(self.W_Q, self.q_norm_w)

    @property
    def W_O_written(self) -> Float[Tensor, "n_heads d_head d_model"]:
        """``W_O`` as the residual receives it: times the post-attention norm gain (Gemma-2/3).

        The post-norm's normalisation (a positive scalar per token) is left out, as elsewhere.
        """
        g = self.ln1_post_w
        return self.W_O if g is None else self.W_O * g.to(self.W_O.dtype)

    @property
    def W_out_written(self) -> Float[Tensor, "d_mlp d_model"] | None:
        """``W_out`` times the post-MLP norm gain (Gemma-2/3); see ``W_O_written``."""
        g, w = self.ln2_post_w, self.W_out
        return w if g is None or w is None else w * g.to(w.dtype)

    @property
    def W_K_qk(self) -> Float[Tensor, "n_heads d_model d_head"]:
        """``W_K`` (expanded) with the k-norm gain folded in (see ``W_Q_qk``)."""
        g = self.k_norm_w
        if g is not None and g.ndim == 2:  # grouped per-head gains: expanded as W_K is
            g = expand_kv(g, self.W_Q.shape[0])
        return _times_qk_gain(self.W_K, g)


@dataclass(frozen=True)
class GlobalWeights:
    """Weights outside the blocks."""

    W_E: Float[Tensor, "d_vocab d_model"]
    W_U: Float[Tensor, "d_model d_vocab_out"]
    b_U: Float[Tensor, " d_vocab_out"] | None
    W_pos: Float[Tensor, "n_ctx d_model"] | None
    ln_final_w: Float[Tensor, " d_model"] | None
    ln_final_b: Float[Tensor, " d_model"] | None
    # Encoders (BERT): the MLM head's transform, dense -> act -> LayerNorm, before W_U.
    mlm_W: Float[Tensor, "d_model d_model"] | None = None
    mlm_b: Float[Tensor, " d_model"] | None = None
    embed_ln_w: Float[Tensor, " d_model"] | None = None
    embed_ln_b: Float[Tensor, " d_model"] | None = None
    # Encoders: token-type (segment) embeddings, added to every token with W_E and W_pos.
    W_token_type: Float[Tensor, "n_types d_model"] | None = None


def _times_qk_gain(w: Tensor, gain: Tensor | None) -> Tensor:
    """``w [n_heads, d_model, d_head]`` times a q/k gain, ``[d_head]`` or ``[n_heads, d_head]``."""
    if gain is None:
        return w
    gain = gain.to(w.dtype)
    return w * (gain[:, None, :] if gain.ndim == 2 else gain)


@overload
def expand_kv(grouped: Tensor, n_heads: int) -> Tensor: ...
@overload
def expand_kv(grouped: None, n_heads: int) -> None: ...
@overload
def expand_kv(grouped: Tensor | None, n_heads: int) -> Tensor | None: ...
def expand_kv(grouped: Tensor | None, n_heads: int) -> Tensor | None:
    """Repeat grouped K/V heads so query head h reads kv head h // group (repeat_interleave)."""
    if grouped is None:
        return None
    n_kv = grouped.shape[0]
    if n_heads % n_kv:
        raise UnsupportedModelError(
            f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv}; cannot map query heads "
            "to key/value heads"
        )
    return grouped.repeat_interleave(n_heads // n_kv, dim=0)


@overload
def copy_tensor(t: None) -> None: ...
@overload
def copy_tensor(t: Tensor) -> Tensor: ...
@overload
def copy_tensor(t: Any) -> Any: ...  # a module attribute: a tensor, or None where it is absent
def copy_tensor(t: Any) -> Tensor | None:
    """A detached private copy, so the view can never alias (and so never mutate) the model."""
    if t is None:
        return None
    return t.detach().clone()


def mlp_fields(mlp: Any, gated: bool) -> dict[str, Any]:
    """The MLP fields of a LayerWeights from a TransformerLens MLP module (all None without one)."""
    if mlp is None:
        return dict(W_in=None, W_gate=None, W_out=None, b_in=None, b_out=None)
    return dict(
        W_in=mlp.W_in,
        W_gate=mlp.W_gate if gated else None,
        W_out=mlp.W_out,
        b_in=mlp.b_in,
        b_out=mlp.b_out,
    )


def make_layer(
    layer: int,
    *,
    W_Q: Tensor,
    W_K_grouped: Tensor,
    W_V_grouped: Tensor,
    W_O: Tensor,
    experts: tuple[MLPWeights, ...] | None = None,
    shared_expert: MLPWeights | None = None,
    **rest: Any,
) -> LayerWeights:
    """Build a LayerWeights from copies of the model's tensors, expanding K/V once here."""
    n_heads = W_Q.shape[0]
    copies = {k: copy_tensor(v) for k, v in rest.items()}
    W_Kg, W_Vg = copy_tensor(W_K_grouped), copy_tensor(W_V_grouped)
    return LayerWeights(
        layer=layer,
        W_Q=copy_tensor(W_Q),
        W_K=expand_kv(W_Kg, n_heads),
        W_V=expand_kv(W_Vg, n_heads),
        W_O=copy_tensor(W_O),
        W_K_grouped=W_Kg,
        W_V_grouped=W_Vg,
        experts=experts,
        shared_expert=shared_expert,
        **copies,
    )


def make_mixer_layer(
    layer: int,
    no_attention: str,
    *,
    n_heads: int,
    n_kv_heads: int,
    d_model: int,
    experts: tuple[MLPWeights, ...] | None = None,
    shared_expert: MLPWeights | None = None,
    **rest: Any,
) -> LayerWeights:
    """A LayerWeights without attention (a hybrid's state-space/convolution layer).

    ``rest`` holds the MLP and norm fields (copied). Reading any attention field raises
    ``UnsupportedLayerError(no_attention)``; what is stored behind them is an empty placeholder
    (heads of width 0, so the field types hold) that no attribute read ever returns.
    """
    empty = torch.zeros(n_heads, d_model, 0)
    empty_kv = torch.zeros(n_kv_heads, d_model, 0)
    return LayerWeights(
        layer=layer,
        W_Q=empty,
        W_K=expand_kv(empty_kv, n_heads),
        W_V=expand_kv(empty_kv, n_heads),
        W_O=torch.zeros(n_heads, 0, d_model),
        W_K_grouped=empty_kv,
        W_V_grouped=empty_kv.clone(),
        b_Q=None,
        b_K_grouped=None,
        b_V_grouped=None,
        b_O=None,
        experts=experts,
        shared_expert=shared_expert,
        no_attention=no_attention,
        **{k: copy_tensor(v) for k, v in rest.items()},
    )


__all__ = [
    "ATTENTION_FIELDS",
    "GlobalWeights",
    "LayerWeights",
    "MLPWeights",
    "copy_tensor",
    "expand_kv",
    "make_layer",
    "make_mixer_layer",
    "mlp_fields",
]
