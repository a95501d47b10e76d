"""OLMo (non-parametric LayerNorm) and the post-sublayer-norm decoders (OLMo-2/3, EXAONE-4).

OLMo-1 normalises before each sublayer with a LayerNorm that has no weight and no bias: the view's
norm weights are ``None`` and ``folded()`` only centres what reads the norms (as TransformerLens
does; with no final-norm weight to fold, ``W_U`` is left as is). With ``clip_qkv`` set, queries,
keys and values are clipped to ``[-c, c]`` in the forward pass: the weights are the same, but
projections describe the unclipped maps.

OLMo-2/3 and EXAONE-4 have no norm before attention or the MLP. Each block is
``h = x + post_attn(attn(x))``, ``out = h + post_mlp(mlp(h))``: attention and the
MLP read the residual stream itself, and each sublayer's output is RMS-normalised and scaled by
a learned gain before the residual add. The view reports ``ln1``/``ln2`` as absent (``None``:
the identity) and reads the post-norm gains as ``ln1_post_w``/``ln2_post_w`` (written weights
``W_O_written``/``W_out_written``); the residual stream is normalised only by ``ln_final``, so
``folded()`` folds that one into ``W_U`` and nothing else.

Q/K norms: OLMo-2/3 RMS-normalise the *whole* query projection (``n_heads * d_head`` values)
and key projection (``n_kv_heads * d_head``) per token, not each head; EXAONE-4 normalises each
head. Either way the learned gain is a fixed diagonal, read per head (``q_norm_w
[n_heads, d_head]``, ``k_norm_w [n_kv_heads, d_head]`` for OLMo-2/3) and folded into
``W_Q_qk``/``W_K_qk``; the normalising scalar (shared by all heads of a token for OLMo-2/3) is
left out, as the residual norm is.
"""

from . import Family, add

OLMO = add(
    Family(
        name="olmo",
        architectures=frozenset({"OlmoForCausalLM"}),
        notes=(
            "LayerNorm without weight or bias before each sublayer (norm weights None; folding "
            "only centres); rotary, SwiGLU; clip_qkv (where set) clips activations, not weights."
        ),
    )
)

_NOTES = (
    "No norm before attention/MLP (ln1/ln2 absent: sublayers read the residual itself); "
    "each sublayer's output is RMS-normalised and scaled before the residual add "
    "(ln1_post_w/ln2_post_w, in W_O_written/W_out_written); "
)

OLMO2 = add(
    Family(
        name="olmo2",
        architectures=frozenset({"Olmo2ForCausalLM", "Olmo3ForCausalLM"}),
        norm_placement="sublayer",
        post_norms=True,
        qk_norm=True,
        qk_norm_scope="projection",
        notes=_NOTES
        + (
            "q/k RMSNorms over the whole projection (all heads at once), gains read per head "
            "into W_Q_qk/W_K_qk."
        ),
    )
)

EXAONE4 = add(
    Family(
        name="exaone4",
        architectures=frozenset({"Exaone4ForCausalLM"}),
        norm_placement="sublayer",
        post_norms=True,
        qk_norm=True,
        notes=_NOTES
        + "per-head q/k RMSNorms (W_Q_qk/W_K_qk); global layers without rotary (positions only).",
    )
)
