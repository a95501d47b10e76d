"""BERT encoders: LayerNorm *after* each sublayer's residual add, an MLM head before ``W_U``.

Post-norm: the norm's output is the residual stream, so nothing can be folded; the readout is
the MLM head's transform (dense, GELU, LayerNorm) then ``W_U``.
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
