"""NanoChat: RMSNorms without weights everywhere, a relu² MLP, a final-logit soft-cap.

Every norm (before each sublayer, per-head q/k norms, the final norm, and one more applied to
the token embeddings before block 0) only normalises: the view's norm gains are ``None``, so
``folded()`` changes nothing but the options' centring, and ``W_Q_qk``/``W_K_qk`` are
``W_Q``/``W_K``. The embedding norm rescales each token's row, so ``W_E``'s directions are the
residual basis (``spec.embed_norm``). Logits are soft-capped (``spec.final_softcap``);
projection scores are pre-cap, as for Gemma-2.
"""

from . import Family, add

NANOCHAT = add(
    Family(
        name="nanochat",
        architectures=frozenset({"NanoChatForCausalLM"}),
        understands=frozenset({"output_logits_soft_cap"}),
        qk_norm=True,
        embed_norm_without_weight=True,
        notes=(
            "RMSNorms without weights (norm gains None; the embedding norm only rescales W_E's "
            "rows); per-head q/k norms without gains; relu² MLP; soft-capped logits "
            "(projection scores are pre-cap)."
        ),
    )
)
