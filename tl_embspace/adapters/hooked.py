"""Adapters for TransformerLens 3.x ``HookedTransformer`` and ``HookedEncoder``."""

from typing import Any

import torch

from ..errors import UnsupportedModelError
from ._common import accept, build_spec, moe_spec
from .families import Family
from .hooks import HookNames, hooked_encoder_hook_names, hooked_transformer_hook_names
from .spec import ModelFacts
from .view import WeightView
from .weights import (
    GlobalWeights,
    LayerWeights,
    MLPWeights,
    copy_tensor,
    make_layer,
    mlp_fields,
)


def _accept_hooked(cfg: Any, architecture: str) -> Family:
    """The family, refusing features only the bridge view reads (not verified on this backend)."""
    family = accept(cfg, architecture)
    bridge_only = (
        family.post_norms,
        family.norm_offset,
        family.embed_scale_sqrt_d_model,
        family.logit_scale,
        family.embed_norm_without_weight,
        family.mup_multipliers,
    )
    if any(bridge_only):
        raise UnsupportedModelError(
            f"architecture={architecture!r} (family {family.name!r}) is not supported on "
            "HookedTransformer: its norm offsets, embedding scale or norm, muP multipliers, "
            "post-sublayer norms and logit scale are read and verified on the TransformerBridge "
            "only; load it with TransformerBridge"
        )
    if family.norm_placement == "post" and not family.is_encoder:
        raise UnsupportedModelError(
            f"architecture={architecture!r} (family {family.name!r}) is a post-norm decoder, "
            "which HookedTransformer does not represent; load it with TransformerBridge"
        )
    if bool(getattr(cfg, "post_embedding_ln", False)) != family.embed_norm:
        raise UnsupportedModelError(
            f"architecture={architecture!r}: cfg.post_embedding_ln="
            f"{getattr(cfg, 'post_embedding_ln', None)!r} but family {family.name!r} declares "
            f"embed_norm={family.embed_norm}; this configuration is not supported"
        )
    return family


def _norm_params(norm: Any, normalization_type: str) -> tuple[Any, Any]:
    """(weight, bias) of a TL norm module; (None, None) once folded (LNPre/RMSPre)."""
    if normalization_type == "LN":
        return norm.w, norm.b
    if normalization_type == "RMS":
        return norm.w, None
    return None, None


class HookedTransformerView(WeightView):
    """Read-only weights of a ``HookedTransformer`` (decoder-only, pre-norm)."""

    def __init__(self, model: Any, facts: ModelFacts | None = None) -> None:
        cfg = model.cfg
        architecture = str(cfg.original_architecture or "HookedTransformer")
        family = _accept_hooked(cfg, architecture)
        self._model = model
        processed = cfg.normalization_type in ("LNPre", "RMSPre")
        # TransformerLens 3.x's MoE (Mixtral, OLMoE) is sparse on every layer, no shared expert.
        moe = moe_spec(family, cfg, None, tuple(range(cfg.n_layers))) if family.moe else {}
        if family.moe is not None and family.moe.shared_expert is not None:
            raise UnsupportedModelError(
                f"architecture={architecture!r}: HookedTransformer has no shared expert; load "
                "it with TransformerBridge"
            )
        spec = build_spec(
            model,
            cfg,
            family,
            facts,
            backend="HookedTransformer",
            architecture=architecture,
            ln_folded=processed,
            weights_processed=processed,
            # HookedTransformer keeps a separate W_U even for tied checkpoints; equal raw weights
            # is what "tied" means. Processing changes W_U, so declare it when loading processed.
            tied_embeddings=bool(torch.equal(model.W_U, model.W_E.T)),
            **moe,
        )
        super().__init__(spec, "tl-processed" if processed else "raw", model.tokenizer)

    @property
    def hook_names(self) -> HookNames:
        """HookedTransformer hook names (see ``hooks.hooked_transformer_hook_names``)."""
        return hooked_transformer_hook_names(self.spec.n_layers)

    def _read_globals(self) -> GlobalWeights:
        m, cfg = self._model, self._model.cfg
        w, b = _norm_params(m.ln_final, cfg.normalization_type)
        # Bloom: the embedding's own LayerNorm (Embed.ln), never folded by TransformerLens.
        embed_ln = m.embed.ln if cfg.post_embedding_ln else None
        return GlobalWeights(
            W_E=copy_tensor(m.W_E),
            W_U=copy_tensor(m.W_U),
            b_U=copy_tensor(m.b_U),
            W_pos=copy_tensor(m.W_pos) if cfg.positional_embedding_type == "standard" else None,
            ln_final_w=copy_tensor(w),
            ln_final_b=copy_tensor(b),
            embed_ln_w=None if embed_ln is None else copy_tensor(embed_ln.w),
            embed_ln_b=None if embed_ln is None else copy_tensor(embed_ln.b),
        )

    def _read_layer(self, layer: int) -> LayerWeights:
        return _read_tl_block(self._model.blocks[layer], self._model.cfg, layer)


def _read_tl_block(block: Any, cfg: Any, layer: int) -> LayerWeights:
    """One HookedTransformer/HookedEncoder block, K/V kept grouped then expanded once."""
    attn = block.attn
    grouped = (cfg.n_key_value_heads or cfg.n_heads) != cfg.n_heads
    # GroupedQueryAttention stores the grouped tensors as _W_K/_W_V and exposes expanded ones.
    W_K, W_V = (attn._W_K, attn._W_V) if grouped else (attn.W_K, attn.W_V)
    b_K, b_V = (attn._b_K, attn._b_V) if grouped else (attn.b_K, attn.b_V)
    ln1_w, ln1_b = _norm_params(block.ln1, cfg.normalization_type)
    has_mlp = not cfg.attn_only
    # Parallel blocks too read the MLP input through ln2 (TransformerLens copies GPT-J's shared
    # norm into it).
    ln2_w, ln2_b = _norm_params(block.ln2, cfg.normalization_type) if has_mlp else (None, None)
    mlp = block.mlp if has_mlp else None
    moe: dict[str, Any] = {}
    if mlp is not None and getattr(cfg, "num_experts", None):
        # TransformerLens's MoE: experts are nn.Linear (weight [out, in]), router W_gate too.
        moe = dict(
            experts=tuple(
                MLPWeights(
                    W_in=copy_tensor(e.W_in.weight.T),
                    W_gate=copy_tensor(e.W_gate.weight.T),
                    W_out=copy_tensor(e.W_out.weight.T),
                )
                for e in mlp.experts
            ),
            W_router=mlp.W_gate.weight.T,
        )
        mlp = None
    q_norm_w = k_norm_w = None
    if getattr(cfg, "use_qk_norm", False):
        q_norm_w, k_norm_w = attn.q_norm.w, attn.k_norm.w
    elif getattr(attn, "q_norm", None) is not None:
        # TransformerLens 3.x gives OLMoE whole-projection q/k norms by architecture, without
        # cfg.use_qk_norm: one gain per projection output, read per head as the bridge does.
        n_kv = cfg.n_key_value_heads or cfg.n_heads
        q_norm_w = attn.q_norm.w.reshape(cfg.n_heads, cfg.d_head)
        k_norm_w = attn.k_norm.w.reshape(n_kv, cfg.d_head)
    return make_layer(
        layer,
        W_Q=attn.W_Q,
        W_K_grouped=W_K,
        W_V_grouped=W_V,
        W_O=attn.W_O,
        b_Q=attn.b_Q,
        b_K_grouped=b_K,
        b_V_grouped=b_V,
        b_O=attn.b_O,
        **mlp_fields(mlp, cfg.gated_mlp),
        **moe,
        ln1_w=ln1_w,
        ln1_b=ln1_b,
        ln2_w=ln2_w,
        ln2_b=ln2_b,
        q_norm_w=q_norm_w,
        k_norm_w=k_norm_w,
    )


class HookedEncoderView(WeightView):
    """Read-only weights of a TransformerLens 3.x ``HookedEncoder`` (BERT, post-norm)."""

    def __init__(self, model: Any, facts: ModelFacts | None = None) -> None:
        cfg = model.cfg
        architecture = str(cfg.original_architecture or "BertForMaskedLM")
        family = _accept_hooked(cfg, architecture)
        self._model = model
        spec = build_spec(
            model,
            cfg,
            family,
            facts,
            backend="HookedEncoder",
            architecture=architecture,
            ln_folded=False,
            weights_processed=False,
            tied_embeddings=bool(torch.equal(model.W_U, model.W_E.T)),
        )
        super().__init__(spec, "raw", model.tokenizer)

    @property
    def hook_names(self) -> HookNames:
        """HookedEncoder hook names (see ``hooks.hooked_encoder_hook_names``)."""
        return hooked_encoder_hook_names(self.spec.n_layers)

    def _read_globals(self) -> GlobalWeights:
        m = self._model
        head = m.mlm_head
        return GlobalWeights(
            W_E=copy_tensor(m.embed.embed.W_E),
            W_U=copy_tensor(m.unembed.W_U),
            b_U=copy_tensor(m.unembed.b_U),
            W_pos=copy_tensor(m.embed.pos_embed.W_pos),
            ln_final_w=copy_tensor(head.ln.w),
            ln_final_b=copy_tensor(head.ln.b),
            mlm_W=copy_tensor(head.W),
            mlm_b=copy_tensor(head.b),
            embed_ln_w=copy_tensor(m.embed.ln.w),
            embed_ln_b=copy_tensor(m.embed.ln.b),
            W_token_type=copy_tensor(m.embed.token_type_embed.W_token_type),
        )

    def _read_layer(self, layer: int) -> LayerWeights:
        return _read_tl_block(self._model.blocks[layer], self._model.cfg, layer)
