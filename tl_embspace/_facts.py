"""Facts declared about a model by whoever built it (e.g. the offline zoo).

Some facts cannot be read off a TransformerLens model: whether its unembedding was trained
(an encoder loaded without its MLM head gets a randomly initialised ``W_U``), or the checkpoint it
came from. The builder declares them here; adapters read them. Kept in a weak map so the user's
model object is never modified and the declaration dies with the model.
"""

import weakref
from typing import Any

_DECLARED: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()

KNOWN_FACTS = frozenset({"unembed_trained", "model_name", "tied_embeddings", "source"})


def declare(model: Any, **facts: Any) -> None:
    """Declare facts about ``model`` (merged with earlier declarations).

    Args:
        model: The TransformerLens model the facts describe.
        **facts: ``unembed_trained`` (bool), ``model_name`` (str), ``tied_embeddings`` (bool),
            ``source`` (str, where the weights came from).
    """
    unknown = set(facts) - KNOWN_FACTS
    if unknown:
        raise TypeError(f"unknown model facts {sorted(unknown)}; known: {sorted(KNOWN_FACTS)}")
    _DECLARED.setdefault(model, {}).update(facts)


def declared(model: Any) -> dict[str, Any]:
    """The facts declared about ``model`` (a copy; empty when none were declared)."""
    return dict(_DECLARED.get(model, {}))
