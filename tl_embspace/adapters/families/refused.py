"""Architectures refused on purpose, each with the reason (the rest are refused as unlisted)."""

from . import refuse

refuse(
    "not verified against the forward pass (multimodal, differentially private or recurrent "
    "Gemma variants)",
    "Gemma3ForConditionalGeneration",
    "VaultGemmaForCausalLM",
    "RecurrentGemmaForCausalLM",
)
refuse(
    "multi-head latent attention (MLA) has no per-head W_K/W_V",
    "DeepseekV2ForCausalLM",
    "DeepseekV3ForCausalLM",
    "YoutuForCausalLM",
)
refuse(
    "sparse mixture-of-experts MLPs have no single W_in/W_out (per-expert views not yet "
    "verified against the forward pass)",
    "MixtralForCausalLM",
    "Qwen2MoeForCausalLM",
    "Qwen3MoeForCausalLM",
    "OlmoeForCausalLM",
    "GraniteMoeForCausalLM",
    "Ernie4_5_MoeForCausalLM",
)
refuse(
    "post-sublayer norms (the norm sits after attention/MLP, before the residual add)",
    "Olmo2ForCausalLM",
    "Olmo3ForCausalLM",
    "Glm4ForCausalLM",
    "Exaone4ForCausalLM",
)
refuse(
    "state-space / recurrent / hybrid layers have no attention weights to read",
    "MambaForCausalLM",
    "Mamba2ForCausalLM",
    "FalconMambaForCausalLM",
    "JambaForCausalLM",
    "ZambaForCausalLM",
    "Zamba2ForCausalLM",
    "BambaForCausalLM",
    "FalconH1ForCausalLM",
    "GraniteMoeHybridForCausalLM",
    "RwkvForCausalLM",
    "Lfm2ForCausalLM",
)
refuse(
    "muP multipliers (embedding, residual, attention, logits) are not folded into the weights",
    "GraniteForCausalLM",
)
refuse(
    "parallel block whose bridge cannot run its forward pass in TransformerLens 4.3 "
    "(CodeGenAttention has no embed_positions), so its fused qkv split is unverified",
    "CodeGenForCausalLM",
)
refuse(
    "logits are multiplied by config.logit_scale, which the view does not fold",
    "CohereForCausalLM",
    "Cohere2ForCausalLM",
)
refuse(
    "non-parametric LayerNorm: the folded view's W_U does not yet equal TransformerLens's "
    "processed one",
    "OlmoForCausalLM",
)
refuse(
    "the xIELU activation has learned per-layer parameters the view does not expose",
    "ApertusForCausalLM",
)
refuse("LayerNorm1P (weight + 1) and the relu2 activation", "NemotronForCausalLM")
refuse("BitLinear weight quantisation and sub-norms before o_proj/down_proj", "BitNetForCausalLM")
refuse(
    "LayerNorm with a gated MLP: the gate bias from folding is not yet verified",
    "StableLmForCausalLM",
)
refuse("fused W_in = [in; gate] is not split", "ModernBertDecoderForCausalLM")
refuse("RMSNorm without a weight, not yet verified", "NanoChatForCausalLM")
refuse("post-sublayer norms and partial-rotary interleaving, not yet verified", "GlmForCausalLM")
