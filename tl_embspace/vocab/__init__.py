"""Vocabulary hygiene: which tokens to trust in a ranking, and how to normalise the scores.

* :mod:`.corpus`: token counts of a text with the model's tokenizer (cached), WikiText-2's.
* :mod:`.detect`: special, unreachable, under-trained and fragment tokens from the weights and
  the tokenizer alone, as masks and a per-token report.
* :mod:`.filters`: :class:`MaskFilter` (a ``TokenFilter`` holding a labelled mask), corpus and
  hygiene filters.
* :mod:`.normalise`: per-token standardisation and centring of scores, as changed bases.
* :mod:`.defaults`: the job's ``"hygiene"`` (default) and ``"raw"`` vocabulary choices.

This package sits above ``space`` and below ``interpreters``: it reads weights and tokenizers,
never results.

Example:
    >>> import tl_embspace as te
    >>> from tl_embspace import vocab
    >>> clean = vocab.hygiene_filter(model)  # doctest: +SKIP
    >>> te.interpret("ff_value", model, layer=15, token_filter=clean)  # doctest: +SKIP
"""

from .corpus import CorpusCounts, count_tokens, wikitext2_counts
from .defaults import VOCAB_MODES, VocabularyChoice, choose_vocabulary
from .detect import TokenReport, detect_tokens, reachability, undertrained_scores
from .filters import MaskFilter, corpus_filter, describe_filter, hygiene_filter, restrict
from .normalise import contrastive_readout, normalised_space, standardise

__all__ = [
    "VOCAB_MODES",
    "VocabularyChoice",
    "choose_vocabulary",
    "restrict",
    "CorpusCounts",
    "MaskFilter",
    "TokenReport",
    "contrastive_readout",
    "corpus_filter",
    "count_tokens",
    "describe_filter",
    "detect_tokens",
    "hygiene_filter",
    "normalised_space",
    "reachability",
    "standardise",
    "undertrained_scores",
    "wikitext2_counts",
]
