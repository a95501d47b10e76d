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
    "mixture-of-attention: each token's query and output projections are routed among "
    "attention experts (MoA), so a head has no single W_Q/W_O",
    "JetMoeForCausalLM",
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
    "parallel block whose bridge cannot run its forward pass in TransformerLens 4.3 "
    "(CodeGenAttention has no embed_positions), so its fused qkv split is unverified",
    "CodeGenForCausalLM",
)
refuse(
    "the xIELU activation has learned per-layer parameters the view does not expose",
    "ApertusForCausalLM",
)
refuse("BitLinear weight quantisation and sub-norms before o_proj/down_proj", "BitNetForCausalLM")
refuse("fused W_in = [in; gate] is not split", "ModernBertDecoderForCausalLM")
