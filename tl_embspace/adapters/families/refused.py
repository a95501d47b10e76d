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
    "word_embeddings_layernorm follows the embedding (W_E is not the residual basis) and the "
    "MLP activation is not spelt in TransformerLens's config",
    "BloomForCausalLM",
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
    "the MLP rebuilt from the bridge's weights does not match the forward pass "
    "(new_decoder_architecture / shared-norm variants)",
    "FalconForCausalLM",
)
refuse(
    "the xIELU activation has learned per-layer parameters the view does not expose",
    "ApertusForCausalLM",
)
refuse("BitLinear weight quantisation and sub-norms before o_proj/down_proj", "BitNetForCausalLM")
refuse("learned positions are offset by 2 rows (W_pos[p] is not position p)", "OPTForCausalLM")
refuse(
    "ALiBi position bias and an activation not spelt in TransformerLens's config", "MptForCausalLM"
)
refuse("post-norm decoder (norm after each residual add)", "OpenAIGPTLMHeadModel")
refuse("encoder not yet verified against the forward pass", "RobertaForMaskedLM", "BertLMHeadModel")
refuse("sinusoidal positions (no W_pos to read)", "XGLMForCausalLM")
refuse("fused W_in = [in; gate] is not split", "ModernBertDecoderForCausalLM")
