"""Bloom and MPT: ALiBi position biases (no position weights), LayerNorm, GELU MLPs.

ALiBi adds a fixed per-head linear bias to attention scores: no ``W_pos``, and QK pairs are
content-only (as with rotary). TransformerLens's config spells neither family's activation
(it reports ``relu``), so the family does: Bloom's ``bloom_gelu`` is the tanh approximation
(``gelu_new``), MPT's is the exact GELU.

Bloom's ``word_embeddings_layernorm`` follows the embedding, so the residual stream starts at
``embed_ln(W_E[t])``, not ``W_E[t]``: the view reads that norm (``embed_ln_w``/``embed_ln_b``,
``spec.embed_norm``) and the ``W_E`` basis is ``embed_ln(W_E)`` (``view.W_E_resid``).
"""

from . import Family, add

BLOOM = add(
    Family(
        name="bloom",
        architectures=frozenset({"BloomForCausalLM"}),
        understands=frozenset({"post_embedding_ln"}),
        act_fn="gelu_new",
        embed_norm=True,
        notes=(
            "LayerNorm, ALiBi (no W_pos; QK pairs content-only), tanh-GELU MLP; a LayerNorm "
            "follows the embedding, so the W_E basis is embed_ln(W_E) (each token's vector as "
            "the residual stream receives it; spec.embed_norm)."
        ),
    )
)

MPT = add(
    Family(
        name="mpt",
        architectures=frozenset({"MptForCausalLM"}),
        act_fn="gelu",
        hf_config=(("attn_config.clip_qkv", None),),
        notes=(
            "LayerNorm without biases, ALiBi (no W_pos; QK pairs content-only), exact-GELU MLP "
            "without biases."
        ),
    )
)
