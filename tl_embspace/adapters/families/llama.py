"""Llama-style decoders: RMSNorm before each sublayer, rotary, SwiGLU, grouped-query attention.

Qwen3 adds per-head q/k RMSNorms (``self_attn.q_norm``/``k_norm``): the view reads their gains
(``LayerWeights.q_norm_w``/``k_norm_w``); the QK circuit is ``W_Q_qk`` and ``W_K_qk`` (gains folded
in; ``folded()`` folds them into ``W_Q``/``W_K``), the per-head normalisation itself is left out
as the residual norm is.
"""

from . import Family, add

LLAMA = add(
    Family(
        name="llama",
        architectures=frozenset(
            {
                "LlamaForCausalLM",
                "MistralForCausalLM",
                "Ministral3ForCausalLM",
                "Qwen2ForCausalLM",
                "SeedOssForCausalLM",
                "SmolLM3ForCausalLM",
                "Ernie4_5ForCausalLM",
                "ArceeForCausalLM",
                "Phi3ForCausalLM",
                "Starcoder2ForCausalLM",
            }
        ),
        notes="RMSNorm, rotary, SwiGLU, GQA/MQA (K/V expanded with repeat_interleave).",
    )
)

QWEN3 = add(
    Family(
        name="qwen3",
        architectures=frozenset({"Qwen3ForCausalLM", "HunYuanDenseV1ForCausalLM"}),
        qk_norm=True,
        understands=frozenset({"use_qk_norm"}),
        notes=(
            "As Llama, plus per-head q/k RMSNorm: the QK circuit includes the learned q/k-norm "
            "gains (W_Q_qk, W_K_qk; folded() folds them in); the per-head normalisation is left "
            "out like the residual norm."
        ),
    )
)
