"""The vocabulary choices of the whole-model job: ``"hygiene"`` (its default) or ``"raw"``.

* ``"hygiene"``: rankings leave out every token :func:`~.detect.detect_tokens` flags (special,
  unreachable, partial UTF-8, under-trained, fragment), optionally also tokens rarer than
  ``min_count`` in a corpus; and scores are standardised over random directions on both sides
  (``score / ‖B[:, t]‖``, see :mod:`.normalise`), so a token's norm no longer decides its rank.
* ``"raw"``: the paper's view, every token and raw scores (any ``token_filter`` still applies).

Single interpreter calls stay raw by default; pass ``token_filter=hygiene_filter(model)`` and
a :func:`~.normalise.normalised_space` to get the same view.
"""

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from ..space import EmbeddingSpace
from ..tokens import TokenFilter
from .corpus import CorpusCounts
from .filters import describe_filter, hygiene_filter, restrict
from .normalise import normalised_space

VOCAB_MODES = ("hygiene", "raw")
RANDOM_STANDARDISATION = "standardised over random directions: score / ‖B[:, t]‖ (both sides)"


@dataclass(frozen=True)
class VocabularyChoice:
    """What a run ranks and how it scores.

    Attributes:
        space: The space to score in (normalised under ``"hygiene"``).
        token_filter: The filter every ranking uses (None: every token).
        record: JSON-friendly description for provenance: mode, filter, normalisation.
    """

    space: EmbeddingSpace
    token_filter: TokenFilter | None
    record: dict[str, Any]


def choose_vocabulary(
    space: EmbeddingSpace,
    mode: str = "hygiene",
    *,
    token_filter: TokenFilter | None = None,
    corpus: CorpusCounts | None = None,
    min_count: int = 1,
) -> VocabularyChoice:
    """The space and filter of a run under vocabulary ``mode`` (see the module docstring).

    Args:
        space: The raw space.
        mode: ``"hygiene"`` or ``"raw"``.
        token_filter: The user's own filter, intersected with the hygiene mask.
        corpus: Under ``"hygiene"``, also require ``min_count`` occurrences in these counts.
        min_count: See ``corpus``.

    Raises:
        InvalidArgumentError: An unknown mode, or a corpus with ``"raw"``.
    """
    if mode not in VOCAB_MODES:
        raise InvalidArgumentError(f"vocab must be one of {VOCAB_MODES}, got {mode!r}")
    if mode == "raw":
        if corpus is not None:
            raise InvalidArgumentError(
                "a corpus vocabulary is part of vocab='hygiene'; drop it or use hygiene, or "
                "pass token_filter=corpus_filter(counts, d_vocab) to a raw run"
            )
        record = {"mode": "raw", "filter": describe_filter(token_filter), "normalisation": None}
        return VocabularyChoice(space, token_filter, record)
    clean = hygiene_filter(space.view, space.tokenizer, corpus=corpus, min_count=min_count)
    chosen = restrict(token_filter, clean)
    record = {
        "mode": "hygiene",
        "filter": describe_filter(chosen),
        "normalisation": RANDOM_STANDARDISATION,
    }
    return VocabularyChoice(normalised_space(space), chosen, record)


__all__ = ["RANDOM_STANDARDISATION", "VOCAB_MODES", "VocabularyChoice", "choose_vocabulary"]
