"""OPT: pre-norm LayerNorm decoder, ReLU MLP, learned positions offset by 2 rows.

OPT's position table has two rows before position 0's (``OPTLearnedPositionalEmbedding.offset``);
the view's ``W_pos`` starts at position 0's row, so ``W_pos[p]`` is what the model adds at
position ``p``. OPT-350m's ``project_in``/``project_out`` (word embeddings narrower than the
residual) and its post-norm layers (``do_layer_norm_before=False``) are refused.
"""

from . import Family, add

OPT = add(
    Family(
        name="opt",
        architectures=frozenset({"OPTForCausalLM"}),
        position_offset=2,
        # The MLP width is config.ffn_dim (TransformerLens 4.3 reports 4 d_model as d_mlp).
        mlp_width=lambda config: config.ffn_dim,
        notes=(
            "LayerNorm, ReLU MLP; learned positions whose table is offset by 2 rows: W_pos[p] "
            "is the row the model adds at position p (spec.position_offset = 2). OPT-350m "
            "(project_in/out, post-norm) is refused."
        ),
    )
)
