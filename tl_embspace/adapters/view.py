"""The abstract weight view: backends read weights, everything derived lives here once.

Backends (``hooked.py``, ``bridge.py``) implement ``_read_globals``, ``_read_layer`` and
``hook_names``; the derived methods are final (equinox's abstract/final pattern).
"""

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, final

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import MissingWeightError, SelectionError
from .hooks import HookNames
from .spec import ModelSpec
from .weights import GlobalWeights, LayerWeights


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
        self._globals: GlobalWeights | None = None
        self._refreshes = 0
        self._seen_version: object = None
        self._pinned_version: object = None  # set inside pinned(): see version()

    # -- what backends implement -------------------------------------------------------------
    @abstractmethod
    def _read_globals(self) -> GlobalWeights: ...

    @abstractmethod
    def _read_layer(self, layer: int) -> LayerWeights: ...

    @property
    @abstractmethod
    def hook_names(self) -> HookNames:
        """The model's hook-point names for what this view describes (see ``HookNames``)."""

    def source_version(self) -> object:
        """A token that changes whenever the model's parameters are edited or replaced.

        Per parameter, its storage address and PyTorch's version counter (which every in-place
        operation bumps: ``with torch.no_grad(): p.mul_(0)``, ``load_state_dict``), plus the
        number of explicit :meth:`refresh` calls. Edits made through ``p.data`` bypass the
        version counter; call :meth:`refresh` after those.
        """
        model = getattr(self, "_model", None)
        params = (
            () if model is None else tuple((p.data_ptr(), p._version) for p in model.parameters())
        )
        return (self._refreshes, params)

    @final
    def version(self) -> object:
        """:meth:`source_version`, or inside :meth:`pinned` the one taken when it was entered.

        What caches of derived values (the view's own, an ``EmbeddingSpace``'s bases) compare.
        """
        if self._pinned_version is not None:
            return self._pinned_version
        return self.source_version()

    @final
    @contextlib.contextmanager
    def pinned(self) -> Iterator["WeightView"]:
        """Inside the block, take the model as unchanged: check its version once, on entry.

        :meth:`source_version` walks every parameter; a whole-model job reads weights thousands
        of times and edits none, so it pins the view (and the views it wraps) for its duration.
        Edits made inside the block are not seen until it ends (or :meth:`refresh` is called);
        outside it every access checks again. Nested blocks keep the outer pin.
        """
        if self._pinned_version is not None:
            yield self
            return
        inner = self._wrapped_view()
        with inner.pinned() if inner is not None else contextlib.nullcontext():
            self._check_fresh()
            self._pinned_version = self._seen_version
            try:
                yield self
            finally:
                self._pinned_version = None

    def _wrapped_view(self) -> "WeightView | None":
        """The view this one derives its weights from (folded, permuted views), if any."""
        base = getattr(self, "_base", None)
        return base if isinstance(base, WeightView) else None

    def refresh(self) -> None:
        """Forget every weight read so far; the next access reads the model again.

        Needed only after edits PyTorch does not count (through ``p.data``); bases of an
        ``EmbeddingSpace`` on this view are rebuilt too. Inside :meth:`pinned`, the pin moves
        to the refreshed version.
        """
        self._refreshes += 1
        pinned = self._pinned_version is not None
        self._pinned_version = None
        self._drop_cache()
        if pinned:
            self._pinned_version = self._seen_version

    @final
    def release(self, layer: int) -> None:
        """Forget the cached weights of block ``layer``, here and in the views this one wraps.

        Read blocks stay cached for the view's lifetime; a job that reads each block once
        (``tl-embspace run``) releases each after use, so that it never holds a copy of every
        block at once (about 1 GiB for SmolLM2-135M, folded and unfolded). The next access
        reads the block again; nothing else changes.
        """
        self._layers.pop(layer % self.spec.n_layers, None)
        inner = self._wrapped_view()
        if inner is not None:
            inner.release(layer)

    def _drop_cache(self) -> None:
        self._layers = {}
        self._globals = None
        self._seen_version = self.source_version()

    def _check_fresh(self) -> None:
        # Cached copies are only valid for the parameters they were copied from: an ablation
        # done in place after the first read must not leave this view answering for the old
        # model. Inside pinned() the version was checked on entry, so this costs nothing.
        if self.version() != self._seen_version:
            self._drop_cache()

    # -- public access -----------------------------------------------------------------------
    @property
    def globals(self) -> GlobalWeights:
        """Embedding, unembedding, positional and final-norm weights."""
        self._check_fresh()
        if self._globals is None:
            self._globals = self._read_globals()
        return self._globals

    @final
    def globals_for_derived_view(self) -> GlobalWeights:
        """The globals, for a view that derives its own from them and caches those instead.

        The cached ones if this view has them, else a fresh read this view does not keep: a
        folded view would otherwise hold the base's copies beside its own derived ones (for
        SmolLM2, another 2 x 108 MiB for W_E and W_U).
        """
        self._check_fresh()
        return self._globals if self._globals is not None else self._read_globals()

    @final
    def layer(self, layer: int) -> LayerWeights:
        """The weights of block ``layer`` (negative indices count from the end)."""
        n = self.spec.n_layers
        if not -n <= layer < n:
            raise SelectionError(f"layer {layer} out of range for a model with {n} layers")
        layer %= n
        self._check_fresh()
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
    def W_E_resid(self) -> Float[Tensor, "d_vocab d_model"]:
        """Each token's embedding as the residual stream receives it, without positions.

        ``W_E`` itself, except where a norm follows the embedding (``spec.embed_norm``: Bloom's
        LayerNorm, NanoChat's weightless RMSNorm, of the model's ``norm_type``): then
        ``embed_ln(W_E)`` row by row, the vector block 0 reads for that token. (The
        ``embed_scale`` of Gemma-like models is left out, as in the ``W_E`` basis: it scales
        every row alike.)
        """
        if not self.spec.embed_norm:
            return self.W_E
        g = self.globals
        x = self.W_E.float()
        if self.spec.norm_type == "LN":
            x = x - x.mean(-1, keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.spec.eps)
        return _affine(x, g.embed_ln_w, g.embed_ln_b)

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
        center_unembed: bool | None = None,
        fold_value_biases: bool = True,
    ) -> "WeightView":
        """A view with norm weights folded in, computed on the fly from this view's weights.

        Reproduces TransformerLens's load-time processing (``fold_ln`` plus, by default, its
        other defaults) without touching the model, so a raw bridge or an unprocessed
        ``HookedTransformer`` can be read in the same coordinates as
        ``HookedTransformer.from_pretrained``. Idempotent: folding folded weights changes nothing.
        Per-head q/k norms and post-sublayer norms are not folded (they act after a
        normalisation); their gains stay in the view (``W_Q_qk``, ``W_O_written``). A model
        without pre-sublayer norms (``norm_placement="sublayer"``, OLMo-2) only has its final
        norm folded. A logit scale (Cohere, ``spec.logit_scale``) is folded into ``W_U`` and
        ``b_U``, as TransformerLens does; the folded spec records 1.0.

        Args:
            center_writing_weights: Remove the mean over ``d_model`` from what sublayers write
                (LayerNorm models only: RMSNorm does not remove the mean).
            center_unembed: Remove each ``W_U`` row's mean over the vocabulary. Default: on,
                except under a final-logit soft-cap, where it would change the logits.
            fold_value_biases: Move ``b_V`` into ``b_O`` (attention patterns sum to one).

        Raises:
            UnsupportedModelError: For post-norm models (BERT): the norm output *is* the residual
                stream, so its weights cannot be folded into the next sublayer; for
                ``center_unembed=True`` under a final-logit soft-cap.
        """
        from .folded import FoldedView

        return FoldedView(
            self,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
        )

    @final
    def normalize(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The final norm *without* its weights (LN: centre then scale; RMS: scale)."""
        x = x.float()
        if self.spec.norm_type == "LN":
            x = x - x.mean(-1, keepdim=True)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.spec.eps)

    @final
    def final_norm(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """Apply the model's final norm (with its weights) as the model's forward pass does.

        For encoders this is the MLM head's transform (dense, activation, LayerNorm). A post-norm
        decoder (GPT-1) has none: its last block's norm output is what ``W_U`` reads.
        """
        g = self.globals
        if self.spec.norm_placement == "post" and not self.spec.is_encoder:
            return x.float()
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

    @final
    def logits(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab_out"]:
        """The model's own readout of a final residual: final norm, ``W_U``, ``b_U``.

        A logit scale (Cohere's ``logit_scale``, Granite's ``1 / logits_scaling``;
        ``spec.logit_scale``) multiplies the logits before any cap. With a final-logit soft-cap
        (Gemma-2) the capped logits are returned, as the model returns them; projection scores
        elsewhere are unscaled and pre-cap (see ``ModelSpec``).
        """
        out = self.final_norm(resid) @ self.W_U.float()
        out = out if self.b_U is None else out + self.b_U.float()
        if self.spec.logit_scale != 1.0:
            out = out * self.spec.logit_scale
        cap = self.spec.final_softcap
        return out if cap is None else cap * torch.tanh(out / cap)


def _affine(x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
    if w is not None:
        x = x * w.float()
    if b is not None:
        x = x + b.float()
    return x


__all__ = ["WeightView"]
