"""Architectures refused on purpose, each with the reason (the rest are refused as unlisted)."""

from . import refuse

refuse(
    "Gemma norms scale by (1 + weight), embeddings by sqrt(d_model), and Gemma-2/3 soft-cap "
    "logits and add post-sublayer norms; not yet verified against the forward pass",
    "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration",
    "VaultGemmaForCausalLM", "RecurrentGemmaForCausalLM",
)
refuse(
    "multi-head latent attention (MLA) has no per-head W_K/W_V",
    "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "YoutuForCausalLM",
)
refuse(
    "sparse mixture-of-experts MLPs have no single W_in/W_out (per-expert views not yet "
    "verified against the forward pass)",
    "MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "OlmoeForCausalLM",
    "GraniteMoeForCausalLM", "Ernie4_5_MoeForCausalLM",
)
refuse(
    "post-sublayer norms (the norm sits after attention/MLP, before the residual add)",
    "Olmo2ForCausalLM", "Olmo3ForCausalLM", "Glm4ForCausalLM", "Exaone4ForCausalLM",
)
refuse(
    "word_embeddings_layernorm follows the embedding (W_E is not the residual basis) and the "
    "MLP activation is not spelt in TransformerLens's config",
    "BloomForCausalLM",
)
refuse(
    "state-space / recurrent / hybrid layers have no attention weights to read",
    "MambaForCausalLM", "Mamba2ForCausalLM", "FalconMambaForCausalLM", "JambaForCausalLM",
    "ZambaForCausalLM", "Zamba2ForCausalLM", "BambaForCausalLM", "FalconH1ForCausalLM",
    "GraniteMoeHybridForCausalLM", "RwkvForCausalLM", "Lfm2ForCausalLM",
)
refuse(
    "muP multipliers (embedding, residual, attention, logits) are not folded into the weights",
    "GraniteForCausalLM",
)
