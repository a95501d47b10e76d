"""Models defined by TransformerLens itself (``HookedTransformer`` with no original architecture).

Their configuration is the whole definition, and the view reads TransformerLens's own weights;
the configuration features are still checked.
"""

from . import Family, add

NATIVE = add(
    Family(
        name="transformerlens-native",
        architectures=frozenset({"HookedTransformer"}),
        notes="A HookedTransformer built from a config (no Hugging Face architecture).",
    )
)
