"""The uniform, read-only weight view every backend adapter produces.

Conventions (TransformerLens layout, whatever the backend):

* ``W_E [d_vocab, d_model]``, ``W_U [d_model, d_vocab_out]``, ``W_pos [n_ctx, d_model]``.
* Per layer ``W_Q [n_heads, d_model, d_head]``, ``W_O [n_heads, d_head, d_model]``; ``W_K`` and
  ``W_V`` are *expanded* to ``n_heads`` with ``repeat_interleave`` (query head ``h`` reads kv head
  ``h // (n_heads // n_kv_heads)``), and the grouped originals are kept as ``W_K_grouped`` /
  ``W_V_grouped [n_kv_heads, d_model, d_head]``.
* ``W_in``/``W_gate [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``.

Every tensor is a detached copy: nothing a caller does to a view can reach the model, and
nothing here writes to the model.
"""

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import MissingWeightError, UnsupportedModelError
from .hooks import HookNames

NORM_TYPES = ("LN", "RMS")


@dataclass(frozen=True)
class ModelSpec:
    """Facts about a model, declared by its configuration (never guessed from tensor shapes).

    Attributes:
        model_name: Name of the checkpoint (or "unnamed").
        backend: "HookedTransformer", "HookedEncoder" or "TransformerBridge".
        tl_version: TransformerLens version the model was loaded with.
        architecture: Original architecture (e.g. "LlamaForCausalLM").
        norm_type: "LN" (LayerNorm, centres and scales) or "RMS" (RMSNorm, scales only).
        norm_placement: "pre" (norm before each sublayer) or "post" (BERT-style, after the add).
        ln_folded: True when norm weights are already folded into the next linear maps (the norms
            then only normalise); false for raw weights.
        weights_processed: True when TransformerLens processed the weights at load
            (fold_ln / centring, ``HookedTransformer.from_pretrained`` defaults or the bridge's
            ``enable_compatibility_mode``).
        tied_embeddings: True when the raw output embedding is the input embedding transposed.
        positional: TransformerLens ``positional_embedding_type`` ("standard", "rotary", ...).
        gated_mlp: True for gated MLPs (SwiGLU/GeGLU): ``act(x W_gate) * (x W_in)``.
        parallel_attn_mlp: True when attention and MLP read the same residual (GPT-J/NeoX).
        is_encoder: True for bidirectional encoders (BERT).
        unembed_trained: False when ``W_U`` exists but was never trained (an encoder without its
            MLM head): projections through it are meaningless and the library refuses them.
        n_kv_heads: Number of key/value heads (== n_heads for MHA, 1 for MQA).
        eps: Epsilon of the norms.
    """

    model_name: str
    backend: str
    tl_version: str
    architecture: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    d_vocab_out: int
    norm_type: str
    norm_placement: str
    ln_folded: bool
    weights_processed: bool
    tied_embeddings: bool
    positional: str
    gated_mlp: bool
    act_fn: str
    parallel_attn_mlp: bool
    is_encoder: bool
    unembed_trained: bool
    eps: float

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` reads."""
        return head // self.group_size


@dataclass(frozen=True)
class LayerWeights:
    """One layer's weights in TransformerLens layout (see the module docstring).

    Biases and norm parameters that the checkpoint lacks are ``None``; ``W_gate`` is ``None``
    for non-gated MLPs; MLP fields are ``None`` for attention-only layers.
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

    @property
    def b_K(self) -> Float[Tensor, "n_heads d_head"] | None:
        """Key biases expanded to query heads."""
        return _expand(self.b_K_grouped, self.W_Q.shape[0])

    @property
    def b_V(self) -> Float[Tensor, "n_heads d_head"] | None:
        """Value biases expanded to query heads."""
        return _expand(self.b_V_grouped, self.W_Q.shape[0])


def _expand(grouped: Tensor | None, n_heads: int) -> Tensor | None:
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


def copy_tensor(t: Any) -> Tensor | None:
    """A detached private copy, so the view can never alias (and so never mutate) the model."""
    if t is None:
        return None
    return t.detach().clone()


def stack_heads(w: Tensor, n_heads: int, d_model: int, d_head: int) -> Tensor:
    """Bring a read-side weight into [n_heads, d_model, d_head]."""
    if w.ndim == 3:
        return w
    return w.reshape(d_model, n_heads, d_head).permute(1, 0, 2)


class WeightView(ABC):
    """Read-only access to a model's weights in one convention; see the module docstring.

    Subclasses (one per backend) implement ``_read_globals`` and ``_read_layer``; everything
    derived (GQA expansion, LayerNorm folding, readouts) lives here once.
    """

    spec: ModelSpec
    weights: str  # "raw", "tl-processed" or "folded(...)": which weights this view shows

    def __init__(self, spec: ModelSpec, weights: str, tokenizer: Any) -> None:
        self.spec = spec
        self.weights = weights
        # The model's tokenizer travels with its weights, so a view (or a folded view) alone
        # is enough to build an EmbeddingSpace with readable tokens.
        self.tokenizer = tokenizer
        self._layers: dict[int, LayerWeights] = {}

    # -- what backends implement -------------------------------------------------------------
    @abstractmethod
    def _read_globals(self) -> GlobalWeights: ...

    @abstractmethod
    def _read_layer(self, layer: int) -> LayerWeights: ...

    @property
    @abstractmethod
    def hook_names(self) -> HookNames:
        """The model's hook-point names for what this view describes (see ``HookNames``)."""

    # -- public access -----------------------------------------------------------------------
    @functools.cached_property
    def globals(self) -> GlobalWeights:
        """Embedding, unembedding, positional and final-norm weights."""
        return self._read_globals()

    def layer(self, layer: int) -> LayerWeights:
        """The weights of block ``layer`` (negative indices count from the end)."""
        n = self.spec.n_layers
        if not -n <= layer < n:
            raise IndexError(f"layer {layer} out of range for a model with {n} layers")
        layer %= n
        if layer not in self._layers:
            self._layers[layer] = self._read_layer(layer)
        return self._layers[layer]

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        """Input embedding."""
        return self.globals.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab_out"]:
        """Output embedding (unembedding). See ``spec.unembed_trained``."""
        return self.globals.W_U

    @property
    def b_U(self) -> Float[Tensor, " d_vocab_out"] | None:
        """Unembedding bias, or None."""
        return self.globals.b_U

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        """Learned absolute positional embedding (raises for rotary and other schemes)."""
        if self.globals.W_pos is None:
            raise MissingWeightError(
                f"{self.spec.model_name} has no learned positional embedding W_pos "
                f"(positional_embedding_type={self.spec.positional!r})"
            )
        return self.globals.W_pos

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"{type(self).__name__}({s.model_name!r}, backend={s.backend}, weights={self.weights}, "
            f"layers={s.n_layers}, heads={s.n_heads}/{s.n_kv_heads}kv, norm={s.norm_type})"
        )

    # -- derived views -----------------------------------------------------------------------
    def folded(
        self,
        *,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        fold_value_biases: bool = True,
    ) -> "WeightView":
        """A view with norm weights folded in, computed on the fly from this view's weights.

        Reproduces TransformerLens's load-time processing (``fold_ln`` plus, by default, its
        other defaults) without touching the model, so a raw bridge or an unprocessed
        ``HookedTransformer`` can be read in the same coordinates as
        ``HookedTransformer.from_pretrained``. Idempotent: folding folded weights changes nothing.

        Raises:
            UnsupportedModelError: For post-norm models (BERT): the norm output *is* the residual
                stream, so its weights cannot be folded into the next sublayer.
        """
        return FoldedView(
            self,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
        )

    def normalize(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The final norm *without* its weights (LN: centre then scale; RMS: scale)."""
        x = x.float()
        if self.spec.norm_type == "LN":
            x = x - x.mean(-1, keepdim=True)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.spec.eps)

    def final_norm(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """Apply the model's final norm (with its weights) as the model's forward pass does.

        For encoders this is the MLM head's transform (dense, activation, LayerNorm).
        """
        g = self.globals
        if self.spec.is_encoder:
            if g.mlm_W is None:
                raise MissingWeightError(
                    f"{self.spec.model_name} has no MLM head, so there is no trained readout; "
                    "use the W_E basis to read its parameters"
                )
            h = x.float() @ g.mlm_W.float() + (0 if g.mlm_b is None else g.mlm_b.float())
            h = torch.nn.functional.gelu(h)
            return _affine(self.normalize(h), g.ln_final_w, g.ln_final_b)
        return _affine(self.normalize(x), g.ln_final_w, g.ln_final_b)

    def logits(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab_out"]:
        """The model's own readout of a final residual: final norm, ``W_U``, ``b_U``."""
        out = self.final_norm(resid) @ self.W_U.float()
        return out if self.b_U is None else out + self.b_U.float()


def _affine(x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
    if w is not None:
        x = x * w.float()
    if b is not None:
        x = x + b.float()
    return x


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
        center_unembed: bool,
        fold_value_biases: bool,
    ) -> None:
        spec = base.spec
        if spec.norm_placement != "pre":
            raise UnsupportedModelError(
                f"cannot fold the norms of {spec.model_name}: norm_placement={spec.norm_placement!r}. "
                "In a post-norm model the norm's output is the residual stream itself, so its "
                "weights cannot move into the next sublayer; use the raw weights (adapt(model))"
            )
        is_ln = spec.norm_type == "LN"
        self._base = base
        # TransformerLens centres writing weights only for LayerNorm models (RMSNorm does not
        # remove the mean, so centring would change the function).
        self._center_write = center_writing_weights and is_ln
        self._center_unembed = center_unembed
        self._fold_value_biases = fold_value_biases
        flags = ["fold_ln"]
        flags += ["center_writing_weights"] if self._center_write else []
        flags += ["center_unembed"] if center_unembed else []
        flags += ["fold_value_biases"] if fold_value_biases else []
        weights = base.weights if base.weights.startswith("folded") else f"folded({', '.join(flags)}) of {base.weights}"
        super().__init__(replace(spec, ln_folded=True), weights, base.tokenizer)

    @property
    def hook_names(self) -> HookNames:
        """The base model's hook names (folding changes weights, not the model's hooks)."""
        return self._base.hook_names

    def folded(self, **kwargs: bool) -> "WeightView":
        """Already folded: folding again would change nothing, so return this view."""
        return self

    def _read_globals(self) -> GlobalWeights:
        g = self._base.globals
        is_ln = self.spec.norm_type == "LN"
        W_U = _center_read(_scale_rows(g.W_U.float(), g.ln_final_w), is_ln)
        b_U = _bias_through(g.W_U.float(), g.ln_final_b, None if g.b_U is None else g.b_U.float())
        if self._center_unembed:
            W_U = W_U - W_U.mean(-1, keepdim=True)
            b_U = None if b_U is None else b_U - b_U.mean()
        W_E, W_pos = g.W_E.float(), None if g.W_pos is None else g.W_pos.float()
        if self._center_write:
            W_E, W_pos = _center_write(W_E), _center_write(W_pos)
        return GlobalWeights(
            W_E=W_E, W_U=W_U, b_U=b_U, W_pos=W_pos, ln_final_w=None, ln_final_b=None
        )

    def _read_layer(self, layer: int) -> LayerWeights:
        lw = self._base.layer(layer)
        is_ln = self.spec.norm_type == "LN"
        f = {k: (v.float() if isinstance(v, Tensor) else v) for k, v in lw.__dict__.items()}

        def read(w: Tensor | None, ln_w: Tensor | None, ln_b: Tensor | None, b: Tensor | None):
            if w is None:
                return None, b
            return _center_read(_scale_rows(w, ln_w), is_ln), _bias_through(w, ln_b, b)

        # The MLP reads ln2's output, also in parallel blocks (GPT-NeoX has its own ln2); only a
        # parallel block without an ln2 (GPT-J on the bridge, one shared norm) reuses ln1.
        no_ln2 = self.spec.parallel_attn_mlp and f["ln2_w"] is None
        mlp_ln_w, mlp_ln_b = (f["ln1_w"], f["ln1_b"]) if no_ln2 else (f["ln2_w"], f["ln2_b"])
        W_Q, b_Q = read(f["W_Q"], f["ln1_w"], f["ln1_b"], f["b_Q"])
        W_Kg, b_Kg = read(f["W_K_grouped"], f["ln1_w"], f["ln1_b"], f["b_K_grouped"])
        W_Vg, b_Vg = read(f["W_V_grouped"], f["ln1_w"], f["ln1_b"], f["b_V_grouped"])
        W_in, b_in = read(f["W_in"], mlp_ln_w, mlp_ln_b, f["b_in"])
        W_gate, _ = read(f["W_gate"], mlp_ln_w, mlp_ln_b, None)
        W_O, b_O, W_out, b_out = f["W_O"], f["b_O"], f["W_out"], f["b_out"]
        if self._fold_value_biases and b_Vg is not None:
            # Attention patterns sum to one, so each head adds b_V @ W_O whatever it attends to.
            b_V = _expand(b_Vg, W_Q.shape[0])
            folded = torch.einsum("hd,hdm->m", b_V, W_O)
            b_O = folded if b_O is None else b_O + folded
            b_Vg = torch.zeros_like(b_Vg)
        if self._center_write:
            W_O, W_out = _center_write(W_O), _center_write(W_out)
            b_O = None if b_O is None else b_O - b_O.mean()
            b_out = None if b_out is None else b_out - b_out.mean()
        n_heads = W_Q.shape[0]
        return LayerWeights(
            layer=layer,
            W_Q=W_Q,
            W_K=_expand(W_Kg, n_heads),
            W_V=_expand(W_Vg, n_heads),
            W_O=W_O,
            W_K_grouped=W_Kg,
            W_V_grouped=W_Vg,
            b_Q=b_Q,
            b_K_grouped=b_Kg,
            b_V_grouped=b_Vg,
            b_O=b_O,
            W_in=W_in,
            W_gate=W_gate,
            W_out=W_out,
            b_in=b_in,
            b_out=b_out,
            ln1_w=None,
            ln1_b=None,
            ln2_w=None,
            ln2_b=None,
        )


def mlp_weights(mlp: Any, gated: bool) -> dict[str, Any]:
    """The MLP fields of a LayerWeights from a TransformerLens MLP module (all None without one)."""
    if mlp is None:
        return dict(W_in=None, W_gate=None, W_out=None, b_in=None, b_out=None)
    return dict(
        W_in=mlp.W_in, W_gate=mlp.W_gate if gated else None, W_out=mlp.W_out, b_in=mlp.b_in, b_out=mlp.b_out
    )


def make_layer(
    layer: int,
    *,
    W_Q: Tensor,
    W_K_grouped: Tensor,
    W_V_grouped: Tensor,
    W_O: Tensor,
    **rest: Any,
) -> LayerWeights:
    """Build a LayerWeights from copies of the model's tensors, expanding K/V once here."""
    n_heads = W_Q.shape[0]
    copies = {k: copy_tensor(v) for k, v in rest.items()}
    W_Kg, W_Vg = copy_tensor(W_K_grouped), copy_tensor(W_V_grouped)
    return LayerWeights(
        layer=layer,
        W_Q=copy_tensor(W_Q),
        W_K=_expand(W_Kg, n_heads),
        W_V=_expand(W_Vg, n_heads),
        W_O=copy_tensor(W_O),
        W_K_grouped=W_Kg,
        W_V_grouped=W_Vg,
        **copies,
    )


__all__ = ["GlobalWeights", "LayerWeights", "ModelSpec", "WeightView", "FoldedView", "NORM_TYPES"]
