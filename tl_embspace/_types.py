"""Shape aliases with TransformerLens axis names, declared once.

``d_vocab`` is the input vocabulary (rows of ``W_E``); ``d_vocab_out`` the output vocabulary
(columns of ``W_U``). They coincide for every model we load, but the names keep the side clear.
"""

from jaxtyping import Bool, Float, Int
from torch import Tensor

Vectors = Float[Tensor, "n d_model"]
BasisMatrix = Float[Tensor, "d_model d_vocab_out"]
VocabScores = Float[Tensor, "n d_vocab_out"]
VocabMask = Bool[Tensor, "d_vocab_out"]
TokenIds = Int[Tensor, "n k"]

__all__ = [
    "Bool",
    "Float",
    "Int",
    "Tensor",
    "Vectors",
    "BasisMatrix",
    "VocabScores",
    "VocabMask",
    "TokenIds",
]
