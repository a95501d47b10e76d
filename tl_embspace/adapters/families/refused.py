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
    "multi-head latent attention (MLA) has no per-head W_K/W_V (keys and values are "
    "decompressed from one shared low-rank latent, with a separate rotary part); its MoE also "
    "routes by grouped top-k with shared experts",
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

# Hybrids not (yet) read: each for a precise reason (Bamba, Jamba and LFM2 are; families/hybrid.py).
refuse(
    "each layer's feed-forward is a sparse MoE and a shared MLP side by side (block_sparse_moe + "
    "shared_mlp, summed, then times the residual multiplier); the bridge exposes them as two "
    "modules with no hook on their sum, so that MLP cannot be hook-verified as one and is not "
    "read yet",
    "GraniteMoeHybridForCausalLM",
)
refuse(
    "its attention layers are OLMo-3 blocks with post-sublayer norms while its Gated-DeltaNet "
    "linear-attention layers are pre-norm: two norm placements in one model, which "
    "ModelSpec.norm_placement (one per model) cannot record",
    "OlmoHybridForCausalLM",
)
refuse(
    "its attention heads are output-gated (q_proj also yields a gate, and each head's output is "
    "multiplied by sigmoid(gate) before o_proj, so W_O alone is not what a head writes) and its "
    "other layers are Gated-DeltaNet linear attention",
    "Qwen3NextForCausalLM",
    "Qwen3_5ForCausalLM",
    "Qwen3_5MoeForCausalLM",
)
refuse(
    "its sparse MoE routes by sigmoid scores plus an expert bias, not the softmax top-k the "
    "MoE families here rebuild (its convolution/attention layers would be read as LFM2's)",
    "Lfm2MoeForCausalLM",
)
refuse(
    "each block holds a single sublayer (a Mamba-2 mixer, attention, an MLP or a sigmoid-routed "
    "MoE alone, with one norm), a layout the view's attention + MLP blocks do not represent",
    "NemotronHForCausalLM",
)
refuse(
    "its sparse MoE routes by sigmoid scores with a correction bias and grouped top-k "
    "(n_group / topk_group) plus shared experts, not the softmax top-k the MoE families here "
    "rebuild",
    "Glm4MoeForCausalLM",
)
refuse(
    "its sparse MoE routes by sigmoid scores plus a correction bias (e_score_correction_bias), "
    "not the softmax top-k the MoE families here rebuild",
    "MiniMaxM2ForCausalLM",
)
refuse(
    "attention sinks (a learned per-head logit in every softmax denominator, so patterns do not "
    "sum to one over tokens) and clamped SwiGLU experts (swiglu_limit) that the view does not "
    "read",
    "GptOssForCausalLM",
)
