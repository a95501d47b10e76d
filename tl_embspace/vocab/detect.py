"""Tokens that rankings should not trust, found from the weights and the tokenizer alone.

Four kinds, each a boolean mask over the model's vocabulary (True = flagged):

* **unreachable**: the tokenizer never produces the token for its own text
  (``encode(decode([t])) != [t]``, also tried after a plain-word prefix), so no input can hold
  it. Byte-level pieces of a multi-byte character decode to U+FFFD on their own; they are
  reachable inside that character and flagged ``partial_utf8`` instead.
* **under-trained** (Land & Bartolo 2024, "Fishing for Magikarp"): remove the first principal
  component of the unembedding rows, average the rows of a reference set of tokens known to be
  unused (special and added tokens, unreachable tokens, vocabulary padding), and flag tokens
  whose row has cosine >= ``undertrained_threshold`` with that average: their rows were barely
  moved by training, so they point where the unused ones point.
* **fragment**: embedding-norm outliers, robust z-score of ``‖W_E[t]‖`` (median and 1.4826 x
  median absolute deviation) above ``norm_z_threshold``. In SmolLM2 these are intermediate BPE
  merges (``" strugg"``, ``" interpre"``) that text almost never ends on; their large norm puts
  them at the top of nearly every dot-product ranking.
* **special**: special and added control tokens, and ids the tokenizer does not know.
"""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .._linalg import single_threaded
from ..adapters import adapt
from ..errors import FilterError
from ..tokens import special_ids, vocab_strings

#: Defaults of :func:`detect_tokens`, recorded with every filter built from them.
UNDERTRAINED_THRESHOLD = 0.5
NORM_Z_THRESHOLD = 3.0


def _decode(tokenizer: Any, sequences: list[list[int]]) -> list[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch(sequences, skip_special_tokens=False)
    return [tokenizer.decode(s, skip_special_tokens=False) for s in sequences]


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def reachability(tokenizer: Any, d_vocab: int) -> tuple[Tensor, Tensor]:
    """Which ids the tokenizer can produce from text.

    Args:
        tokenizer: A Hugging Face tokenizer.
        d_vocab: The model's vocabulary size (ids at or beyond ``len(tokenizer)`` are padding:
            unreachable).

    Returns:
        ``(unreachable, partial_utf8)``, two ``[d_vocab]`` bool masks. A token is reachable if
        its lone decoding encodes back to exactly ``[t]``, or its surface text (see
        ``tl_embspace.tokens``) does, alone or after a plain word. ``partial_utf8`` tokens (lone
        decoding holds U+FFFD, a byte piece of a longer character) are not counted unreachable.
    """
    known = min(len(tokenizer), d_vocab)
    unreachable = torch.ones(d_vocab, dtype=torch.bool)
    partial = torch.zeros(d_vocab, dtype=torch.bool)
    texts = _decode(tokenizer, [[i] for i in range(known)])
    raw = tokenizer.convert_ids_to_tokens(list(range(known)))
    for i, ids in enumerate(_encode(tokenizer, texts)):
        unreachable[i] = ids != [i]
    # Second chance, in context: SentencePiece and WordPiece decode a lone token differently
    # from the text it stands for inside a word.
    surfaces = vocab_strings(tokenizer, known)
    retry = unreachable[:known].nonzero().squeeze(1).tolist()
    if retry:
        word = "a"
        prefix = _encode(tokenizer, [word])[0]
        alone = _encode(tokenizer, [surfaces[i] for i in retry])
        after = _encode(tokenizer, [word + surfaces[i] for i in retry])
        for i, a, b in zip(retry, alone, after, strict=True):
            if a == [i] or (b[: len(prefix)] == prefix and b[len(prefix) :] == [i]):
                unreachable[i] = False
    for i in unreachable[:known].nonzero().squeeze(1).tolist():
        if "\ufffd" in texts[i] and "\ufffd" not in (raw[i] or ""):
            partial[i] = True
            unreachable[i] = False
    return unreachable, partial


def undertrained_scores(
    rows: Float[Tensor, "d_vocab d_model"], reference: Bool[Tensor, " d_vocab"]
) -> Float[Tensor, " d_vocab"]:
    """Land & Bartolo's indicator: cosine with the mean unused-token row, first PC removed.

    ``X = rows - (rows @ p) pᵀ`` with ``p`` the first principal direction of the centred rows;
    ``r = mean of X over reference``; score ``= cos(X[t], r)``.

    Args:
        rows: Unembedding rows (``W_Uᵀ``; or ``W_E`` when the unembedding was never trained).
        reference: ``[d_vocab]`` bool, tokens known to be unused.

    Raises:
        FilterError: The reference set is empty.
    """
    if not bool(reference.any()):
        raise FilterError(
            "under-trained detection needs at least one token known to be unused (special, "
            "unreachable or padding); pass reference=... naming some"
        )
    rows = rows.double()
    centred = rows - rows.mean(0)
    with single_threaded():  # eigh of the small d_model x d_model covariance, not an SVD of rows
        _, vectors = torch.linalg.eigh(centred.T @ centred)
    pc = vectors[:, -1]  # eigenvalues ascend: the last is the first principal direction
    x = rows - (rows @ pc)[:, None] * pc
    ref = x[reference].mean(0)
    scores = (x @ ref) / (x.norm(dim=1) * ref.norm()).clamp_min(1e-30)
    return scores.float()


def norm_z_scores(rows: Float[Tensor, "d_vocab d_model"]) -> Float[Tensor, " d_vocab"]:
    """Robust z-score of each row's norm: ``(‖row‖ - median) / (1.4826 · MAD)``."""
    norms = rows.double().norm(dim=1)
    # quantile(0.5) averages the two middle values of an even count (Tensor.median does not).
    median = norms.quantile(0.5)
    mad = (norms - median).abs().quantile(0.5) * 1.4826
    return ((norms - median) / mad.clamp_min(1e-30)).float()


@dataclass(frozen=True)
class TokenReport:
    """Per-token hygiene indicators of one model and tokenizer (all tensors ``[d_vocab]``).

    Attributes:
        texts: Surface text of each id.
        undertrained_score: Land & Bartolo cosine (higher = more like the unused tokens).
        norm_z: Robust z-score of the input-embedding norm.
        special: Special/added control tokens and ids the tokenizer does not know.
        unreachable: The tokenizer never produces the token.
        partial_utf8: Byte pieces of multi-byte characters (reachable, but illegible alone).
        undertrained: ``undertrained_score >= undertrained_threshold`` (special ids excluded,
            they are the reference).
        fragment: ``norm_z > norm_z_threshold``.
        undertrained_threshold, norm_z_threshold: The thresholds used.
    """

    texts: tuple[str, ...]
    undertrained_score: Float[Tensor, " d_vocab"]
    norm_z: Float[Tensor, " d_vocab"]
    special: Bool[Tensor, " d_vocab"]
    unreachable: Bool[Tensor, " d_vocab"]
    partial_utf8: Bool[Tensor, " d_vocab"]
    undertrained: Bool[Tensor, " d_vocab"]
    fragment: Bool[Tensor, " d_vocab"]
    undertrained_threshold: float
    norm_z_threshold: float

    @property
    def flagged(self) -> Bool[Tensor, " d_vocab"]:
        """Any mask: special, unreachable, under-trained, fragment, or partial UTF-8.

        Partial UTF-8 pieces are reachable, but print as U+FFFD: no reader can tell them apart.
        """
        return (
            self.special | self.unreachable | self.undertrained | self.fragment | self.partial_utf8
        )

    def summary(self) -> dict[str, int]:
        """How many tokens each mask flags."""
        names = ("special", "unreachable", "partial_utf8", "undertrained", "fragment", "flagged")
        return {name: int(getattr(self, name).sum()) for name in names}

    def rows(self, ids: "list[int] | None" = None) -> list[dict[str, Any]]:
        """One dict per token (default: every flagged token), for a table or a DataFrame."""
        if ids is None:
            ids = self.flagged.nonzero().squeeze(1).tolist()
        return [
            {
                "id": i,
                "text": self.texts[i],
                "undertrained_score": round(float(self.undertrained_score[i]), 4),
                "norm_z": round(float(self.norm_z[i]), 3),
                **{
                    name: bool(getattr(self, name)[i])
                    for name in ("special", "unreachable", "partial_utf8", "undertrained")
                },
                "fragment": bool(self.fragment[i]),
            }
            for i in ids
        ]


def detect_tokens(
    model: Any,
    tokenizer: Any = None,
    *,
    reference: "Bool[Tensor, ' d_vocab'] | None" = None,
    undertrained_threshold: float = UNDERTRAINED_THRESHOLD,
    norm_z_threshold: float = NORM_Z_THRESHOLD,
) -> TokenReport:
    """Flag special, unreachable, under-trained and fragment tokens (see the module docstring).

    Args:
        model: A TransformerLens model or a ``WeightView``; its weights as loaded are read
            (``W_E``, and ``W_U`` unless it was never trained).
        tokenizer: Default: the model's.
        reference: Tokens known to be unused, for the under-trained indicator. Default: special,
            unreachable and padding ids.
        undertrained_threshold: Cosine at or above which a token is under-trained.
        norm_z_threshold: Norm z-score above which a token is a fragment.

    Raises:
        FilterError: No tokenizer, or an empty reference set.
    """
    view = adapt(model)
    tokenizer = tokenizer if tokenizer is not None else view.tokenizer
    if tokenizer is None:
        raise FilterError("token detection needs a tokenizer; pass tokenizer=...")
    W_E = view.W_E.float()
    d_vocab = W_E.shape[0]
    special = torch.zeros(d_vocab, dtype=torch.bool)
    special[list(special_ids(tokenizer, d_vocab))] = True
    special[min(len(tokenizer), d_vocab) :] = True
    unreachable, partial = reachability(tokenizer, d_vocab)
    rows = view.W_U.float().T if view.spec.unembed_trained else W_E
    ref = (special | unreachable) if reference is None else reference
    # Computed where the weights are; kept on the CPU, with the tokenizer's masks.
    scores = undertrained_scores(rows, ref.to(rows.device)).cpu()
    norm_z = norm_z_scores(W_E).cpu()
    return TokenReport(
        texts=vocab_strings(tokenizer, d_vocab),
        undertrained_score=scores,
        norm_z=norm_z,
        special=special,
        unreachable=unreachable & ~special,
        partial_utf8=partial,
        undertrained=(scores >= undertrained_threshold) & ~special,
        fragment=norm_z > norm_z_threshold,
        undertrained_threshold=undertrained_threshold,
        norm_z_threshold=norm_z_threshold,
    )


__all__ = [
    "NORM_Z_THRESHOLD",
    "UNDERTRAINED_THRESHOLD",
    "TokenReport",
    "detect_tokens",
    "norm_z_scores",
    "reachability",
    "undertrained_scores",
]
