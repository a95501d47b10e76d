"""Adapter for ``TransformerBridge`` (TransformerLens 3.x and 4.x), decoders and BERT encoders.

The bridge wraps a Hugging Face model and exposes TransformerLens-layout weights per block
(``blocks[l].attn.W_Q`` ...). Unlike ``HookedTransformer`` its ``W_K``/``W_V`` stay *grouped*
for GQA models; we expand them once, in ``make_layer``.
"""

from typing import Any

from ..errors import UnsupportedModelError
from .base import GlobalWeights, LayerWeights, WeightView, copy_tensor, make_layer, mlp_weights
from ._common import build_spec, check_supported
from .hooks import HookNames, bridge_hook_names

# BERT-style encoders: post-norm blocks, an MLM head (dense -> act -> LayerNorm) before W_U.
_ENCODER_PREFIXES = ("Bert",)


def _norm(module: Any, norm_type: str) -> tuple[Any, Any]:
    """(weight, bias) of a bridged norm: RMSNorm has no bias."""
    if module is None:
        return None, None
    return module.weight, (module.bias if norm_type == "LN" else None)


class BridgeView(WeightView):
    """Read-only weights of a ``TransformerBridge``."""

    def __init__(self, model: Any) -> None:
        cfg = model.cfg
        architecture = str(cfg.architecture or type(model.original_model).__name__)
        check_supported(cfg, architecture)
        self._model = model
        is_encoder = architecture.startswith(_ENCODER_PREFIXES)
        # The bridge boots with raw Hugging Face weights; enable_compatibility_mode() (or
        # process_weights()) folds and centres them in place and records it in this flag.
        processed = bool(model._weights_processed)
        spec = build_spec(
            model,
            cfg,
            backend="TransformerBridge",
            architecture=architecture,
            norm_placement="post" if is_encoder else "pre",
            ln_folded=processed and not is_encoder,
            weights_processed=processed,
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
            is_encoder=is_encoder,
        )
        super().__init__(spec, "tl-processed" if processed else "raw", model.tokenizer)
        self._check_layout()

    @property
    def hook_names(self) -> HookNames:
        """Bridge hook names (see ``hooks.bridge_hook_names``)."""
        return bridge_hook_names(self.spec.n_layers, encoder=self.spec.is_encoder)

    def _check_layout(self) -> None:
        """Refuse a bridge whose per-head tensors do not have the configured shapes."""
        s = self.spec
        attn = self._model.blocks[0].attn
        expected = {
            "W_Q": (s.n_heads, s.d_model, s.d_head),
            "W_K": (s.n_kv_heads, s.d_model, s.d_head),
            "W_O": (s.n_heads, s.d_head, s.d_model),
        }
        for name, shape in expected.items():
            got = tuple(getattr(attn, name).shape)
            if got != shape:
                raise UnsupportedModelError(
                    f"blocks[0].attn.{name} has shape {got}, expected {shape} from the config "
                    f"(n_heads={s.n_heads}, n_key_value_heads={s.n_kv_heads}, d_head={s.d_head}); "
                    "this architecture's bridge layout is not supported"
                )

    def _read_globals(self) -> GlobalWeights:
        m, s = self._model, self.spec
        w, b = _norm(m.ln_final, s.norm_type) if "ln_final" in m._modules else (None, None)
        W_pos = None
        if s.positional == "standard":
            W_pos = m.pos_embed.weight
        extra: dict[str, Any] = {}
        if s.is_encoder:
            head = m._modules.get("mlm_head")
            emb_w, emb_b = _norm(m.embed_ln, "LN")
            extra = dict(
                mlm_W=copy_tensor(head.weight.T) if head is not None else None,
                mlm_b=copy_tensor(head.bias) if head is not None else None,
                embed_ln_w=copy_tensor(emb_w),
                embed_ln_b=copy_tensor(emb_b),
            )
        return GlobalWeights(
            W_E=copy_tensor(m.W_E),
            W_U=copy_tensor(m.W_U),
            b_U=copy_tensor(m.b_U),
            W_pos=copy_tensor(W_pos),
            ln_final_w=copy_tensor(w),
            ln_final_b=copy_tensor(b),
            **extra,
        )

    def _read_layer(self, layer: int) -> LayerWeights:
        s = self.spec
        block = self._model.blocks[layer]
        attn, mlp = block.attn, block._modules.get("mlp")
        ln1_w, ln1_b = _norm(block.ln1, s.norm_type)
        ln2_w, ln2_b = _norm(block._modules.get("ln2"), s.norm_type)
        return make_layer(
            layer,
            W_Q=attn.W_Q,
            W_K_grouped=attn.W_K,
            W_V_grouped=attn.W_V,
            W_O=attn.W_O,
            b_Q=attn.b_Q,
            b_K_grouped=attn.b_K,
            b_V_grouped=attn.b_V,
            b_O=attn.b_O,
            **mlp_weights(mlp, s.gated_mlp),
            ln1_w=ln1_w,
            ln1_b=ln1_b,
            ln2_w=ln2_w,
            ln2_b=ln2_b,
        )
