"""Hybrid decoders: attention on some layers, a state-space or convolution mixer on the others.

Every block is pre-norm (RMSNorm) with an MLP (dense or sparse MoE) after its token mixer; the
final norm and the unembedding are a Llama's. The attention layers are read exactly as a
Llama's (``spec.attention_layers``); a layer whose mixer is not attention (``spec.mixers``: a
Mamba state-space mixer, a gated short convolution) has no ``W_Q``/``W_K``/``W_V``/``W_O`` in
the paper's sense, so reading them raises ``UnsupportedLayerError`` naming the layer and its
mixer, while its MLP is read as any MLP (its keys read the normalised residual, its values
write to it). The interpreters and the whole-model job skip those layers' attention and record
it. What a state-space mixer writes is not read at all: its input and output projections are
not per-position key/value pairs.
"""

from typing import Any

from . import Family, MoELayout, add

_HYBRID = (
    "Attention layers (spec.attention_layers) are read as a Llama's; the {mixer} layers have "
    "no attention weights (refused by layer, skipped by the job); every layer's MLP is read."
)

BAMBA = add(
    Family(
        name="bamba",
        architectures=frozenset({"BambaForCausalLM"}),
        mixers=(("mixer", "mamba"),),
        notes=(
            "Mamba-2 layers with attention layers at config.attn_layer_indices (RMSNorm, "
            "partial rotary, GQA), a SwiGLU MLP on every layer. " + _HYBRID.format(mixer="Mamba")
        ),
    )
)

JAMBA = add(
    Family(
        name="jamba",
        architectures=frozenset({"JambaForCausalLM"}),
        mixers=(("mixer", "mamba"),),
        understands=frozenset({"num_experts"}),
        # JambaTopKRouter: softmax over all experts, top-k kept without renormalising.
        moe=MoELayout(router="router", norm_topk_prob=False),
        notes=(
            "Mamba layers with attention every attn_layer_period layers (no positional "
            "encoding in attention), dense SwiGLU MLPs and sparse MoE MLPs every "
            "expert_layer_period layers (softmax top-k, not renormalised; spec.moe_layers). "
            + _HYBRID.format(mixer="Mamba")
        ),
    )
)


def _lfm2_mlp_width(config: Any) -> int:
    """LFM2's MLP width, derived from ``intermediate_size`` as ``Lfm2MLP`` derives it."""
    width = config.intermediate_size
    if config.block_auto_adjust_ff_dim:
        width = int(2 * width / 3)
        if config.block_ffn_dim_multiplier is not None:
            width = int(config.block_ffn_dim_multiplier * width)
            multiple = config.block_multiple_of
            width = multiple * ((width + multiple - 1) // multiple)
    return width


LFM2 = add(
    Family(
        name="lfm2",
        architectures=frozenset({"Lfm2ForCausalLM"}),
        mixers=(("conv", "short_conv"),),
        qk_norm=True,
        understands=frozenset({"use_qk_norm"}),
        mlp_width=_lfm2_mlp_width,
        notes=(
            "Gated short-convolution layers and attention layers (config.layer_types) with "
            "per-head q/k RMSNorms (gains in W_Q_qk/W_K_qk, as Qwen3), a SwiGLU MLP on every "
            "layer. " + _HYBRID.format(mixer="convolution")
        ),
    )
)
