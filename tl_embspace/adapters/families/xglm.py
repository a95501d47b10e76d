"""XGLM: pre-norm LayerNorm decoder with fixed sinusoidal positions and scaled embeddings.

The positions are not learned: HF's ``XGLMSinusoidalPositionalEmbedding`` holds a sinusoidal
table (``weights``, two rows before position 0's, like OPT) that the bridge does not map. The
view exposes that table as ``W_pos`` from position 0's row (``spec.positional = "sinusoidal"``),
so ``W_pos[p]`` is what the model adds at position ``p``. Token embeddings are multiplied by
``sqrt(d_model)`` before the positions are added (``spec.embed_scale``; ``W_E`` is the unscaled
table).
"""

from . import Family, add

XGLM = add(
    Family(
        name="xglm",
        # The MLP width is config.ffn_dim (TransformerLens 4.3 reports 4 d_model as d_mlp).
        mlp_width=lambda config: config.ffn_dim,
        architectures=frozenset({"XGLMForCausalLM"}),
        understands=frozenset({"scale_embedding"}),
        embed_scale_sqrt_d_model=True,
        position_offset=2,
        position_table="model.embed_positions",
        notes=(
            "LayerNorm, GELU MLP; fixed sinusoidal positions exposed as W_pos (W_pos[p] is what "
            "the model adds at position p; not trained, so position projections read a fixed "
            "code); token embeddings scaled by sqrt(d_model) (spec.embed_scale), W_E unscaled."
        ),
    )
)
