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
    "every layer is a state-space or recurrent mixer (no attention layer at all), so there are "
    "no W_Q/W_K/W_V/W_O to read, and no MLP in the paper's sense",
    "MambaForCausalLM",
    "Mamba2ForCausalLM",
    "FalconMambaForCausalLM",
    "RwkvForCausalLM",
)
refuse(
    "its hybrid layers run one transformer block shared across layers on the concatenation "
    "of the residual stream and the original embeddings (2 d_model inputs, with per-layer "
    "adapters), and a per-layer linear map writes its output back: that block's W_Q/W_K/W_V "
    "and W_in do not read the residual stream, so no residual-basis reading applies (its Mamba "
    "layers have no attention weights at all)",
    "ZambaForCausalLM",
    "Zamba2ForCausalLM",
)
refuse(
    "every layer runs attention and a Mamba-2 mixer side by side on the same normalised input "
    "and adds both outputs, scaled by muP multipliers on the attention input, keys and output "
    "and on the SSM (attention_in_multiplier, key_multiplier, ...) that the view does not "
    "read: W_O alone is not what the block writes",
    "FalconH1ForCausalLM",
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
