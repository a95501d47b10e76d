"""Gemma 1/2/3: RMSNorm scaling by ``1 + w``, embeddings scaled by ``sqrt(d_model)``, GeGLU.

Gemma-2/3 add post-sublayer norms (``ln1_post_w``/``ln2_post_w``: each sublayer's output is
RMS-normalised and scaled before the residual add) and soft-cap attention scores and final
logits (``ModelSpec.attn_softcap``/``final_softcap``). Projection scores are *pre-cap*: the cap
``c * tanh(x / c)`` is monotone, so the top-k order of a single logit vector is unchanged.
Gemma-3 adds per-head q/k norms (also ``1 + w``).
"""

from . import Family, add

_CAPS = frozenset({"rmsnorm_uses_offset", "attn_scores_soft_cap", "output_logits_soft_cap"})

GEMMA = add(
    Family(
        name="gemma",
        architectures=frozenset({"GemmaForCausalLM"}),
        understands=frozenset({"rmsnorm_uses_offset"}),
        norm_offset=1.0,
        embed_scale_sqrt_d_model=True,
        notes=(
            "RMSNorm weights are 1 + w (the view's norm weights include the 1); token "
            "embeddings enter the residual scaled by sqrt(d_model) (spec.embed_scale)."
        ),
    )
)

GEMMA2 = add(
    Family(
        name="gemma2",
        architectures=frozenset({"Gemma2ForCausalLM"}),
        understands=_CAPS,
        norm_offset=1.0,
        post_norms=True,
        embed_scale_sqrt_d_model=True,
        notes=(
            "As Gemma, plus post-sublayer norms (ln1_post_w, ln2_post_w) and soft-capped "
            "attention scores and logits; projection scores are pre-cap (capping is monotone)."
        ),
    )
)

GEMMA3 = add(
    Family(
        name="gemma3",
        architectures=frozenset({"Gemma3ForCausalLM"}),
        understands=_CAPS | {"use_qk_norm"},
        norm_offset=1.0,
        post_norms=True,
        qk_norm=True,
        embed_scale_sqrt_d_model=True,
        notes="As Gemma-2, plus per-head q/k norms (gains 1 + w, in W_Q_qk/W_K_qk).",
    )
)
