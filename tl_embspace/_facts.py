"""Facts declared about a model by whoever built it (e.g. the offline zoo).

Some facts cannot be read off a TransformerLens model: whether its unembedding was trained
(an encoder loaded without its MLM head gets a randomly initialised ``W_U``), or the checkpoint it
came from. The builder declares them here; adapters read them (``adapt(model, facts=...)``
overrides them).

Where they live: as one plain attribute on the model object itself. Only the code that built the
model (the zoo, for its own freshly built models) should declare, so this is not a mutation of a
user's model. On the object, the facts travel with it: ``copy.deepcopy(model)`` copies them (a
weak map keyed by the object, used before, lost them, and a copied MiniLM re-enabled its
untrained ``W_U``). Not on ``model.cfg``: one config object can be shared by several models
(``HookedTransformer(cfg)`` twice), and a fact about one checkpoint must not leak to another.
"""

from typing import Any

from .adapters.spec import ModelFacts
from .errors import OptionError

_ATTRIBUTE = "_tl_embspace_facts"

KNOWN_FACTS = ModelFacts.names()


def declare(model: Any, **facts: Any) -> None:
    """Declare facts about ``model`` (merged with earlier declarations).

    Args:
        model: The TransformerLens model the facts describe; call this only on a model you
            built (it sets one attribute on the object).
        **facts: ``unembed_trained`` (bool), ``model_name`` (str), ``tied_embeddings`` (bool),
            ``source`` (str, where the weights came from).

    Raises:
        TypeError: For an unknown fact name.
    """
    unknown = set(facts) - KNOWN_FACTS
    if unknown:
        raise OptionError(f"unknown model facts {sorted(unknown)}; known: {sorted(KNOWN_FACTS)}")
    merged = ModelFacts(**facts).over(declared_facts(model))
    # object.__setattr__: bypass nn.Module's registration (a plain, frozen value).
    object.__setattr__(model, _ATTRIBUTE, merged)


def declared_facts(model: Any) -> ModelFacts:
    """The facts declared about ``model`` (empty ``ModelFacts`` when none were declared)."""
    facts = model.__dict__.get(_ATTRIBUTE) if hasattr(model, "__dict__") else None
    return facts if isinstance(facts, ModelFacts) else ModelFacts()


def declared(model: Any) -> dict[str, Any]:
    """The facts declared about ``model`` as a dict (empty when none were declared)."""
    return declared_facts(model).declared()
