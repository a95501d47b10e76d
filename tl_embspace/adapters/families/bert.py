"""BERT-style encoders: LayerNorm *after* each sublayer's residual add, an MLM head before ``W_U``.

Post-norm: the norm's output is the residual stream, so nothing can be folded; the readout is
the MLM head's transform (dense, GELU, LayerNorm) then ``W_U``. The residual entering block 0
is ``LayerNorm(W_E[t] + W_pos[p] + W_token_type[0])``.
"""

from . import Family, add

BERT = add(
    Family(
        name="bert",
        architectures=frozenset({"BertForMaskedLM"}),
        norm_placement="post",
        is_encoder=True,
        notes="Post-norm encoder; the readout goes through the MLM head; folding is refused.",
    )
)

ROBERTA = add(
    Family(
        name="roberta",
        architectures=frozenset({"RobertaForMaskedLM"}),
        norm_placement="post",
        is_encoder=True,
        position_offset="padding_idx+1",
        notes=(
            "As BERT; learned positions offset by padding_idx + 1 rows: W_pos[p] is the row "
            "the model adds at the p-th non-padding token (spec.position_offset)."
        ),
    )
)

BERT_LM_HEAD = add(
    Family(
        name="bert-lm-head",
        architectures=frozenset({"BertLMHeadModel"}),
        norm_placement="post",
        is_encoder=True,
        notes=(
            "BERT's layout and LM head used as a causal LM (config.is_decoder: causal mask); "
            "projections as for BERT."
        ),
    )
)
