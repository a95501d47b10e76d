"""``adapt(model)``: one read-only weight view whatever TransformerLens class the model is.

Dispatch is lazy and by class name along the model's MRO, so importing ``tl_embspace`` never
imports a TransformerLens class that the installed version lacks (4.0 removed
``HookedTransformer``/``HookedEncoder``; ``hasattr(transformer_lens, "HookedTransformer")``
even raises there).
"""

from typing import Any

from ..errors import UnsupportedModelError
from .folded import FoldedView
from .hooks import HookNames
from .permuted import NoisyView, PermutedView
from .spec import ModelFacts, ModelSpec
from .view import WeightView
from .weights import GlobalWeights, LayerWeights, MLPWeights

_ADAPTERS = {
    "TransformerBridge": ("bridge", "BridgeView"),
    "HookedTransformer": ("hooked", "HookedTransformerView"),
    "HookedEncoder": ("hooked", "HookedEncoderView"),
}


def adapt(model: Any, facts: ModelFacts | None = None) -> WeightView:
    """A read-only, TransformerLens-layout weight view of ``model``.

    Args:
        model: A ``HookedTransformer`` or ``HookedEncoder`` (TransformerLens 3.x), a
            ``TransformerBridge`` (3.x or 4.x), or an existing ``WeightView`` (returned as is).
        facts: Facts the model cannot tell about itself (e.g.
            ``ModelFacts(unembed_trained=False)``); they override facts its builder declared.

    Returns:
        A ``WeightView`` of the weights as they are in the model (``view.weights`` says "raw" or
        "tl-processed"); call ``view.folded()`` for LayerNorm-folded weights.

    Raises:
        UnsupportedModelError: For anything else, naming the class and what is supported; for an
            architecture or configuration attribute no adapter family understands (naming it);
            for ``facts`` given with a view (a view's facts are fixed; adapt the model); for a
            model whose parameters are on the meta device (not loaded).
    """
    if isinstance(model, WeightView):
        if facts is not None:
            raise UnsupportedModelError(
                "facts= applies when adapting a model, not an existing WeightView (whose spec is "
                "fixed); call adapt(model, facts=...) on the model"
            )
        return model
    import importlib

    for cls in type(model).__mro__:
        if cls.__name__ in _ADAPTERS and cls.__module__.startswith("transformer_lens"):
            meta = [name for name, p in model.named_parameters() if p.is_meta]
            if meta:
                raise UnsupportedModelError(
                    f"{len(meta)} parameters of the model (e.g. {meta[0]}) are on the meta "
                    "device: no values were loaded, so there is nothing to read; load the model "
                    "with real weights (no meta device or disk offload)"
                )
            module_name, view_name = _ADAPTERS[cls.__name__]
            module = importlib.import_module(f"{__name__}.{module_name}")
            return getattr(module, view_name)(model, facts)
    raise UnsupportedModelError(
        f"cannot adapt a {type(model).__module__}.{type(model).__qualname__}; expected a "
        f"TransformerLens model: {', '.join(sorted(_ADAPTERS))}"
    )


__all__ = [
    "adapt",
    "FoldedView",
    "GlobalWeights",
    "HookNames",
    "LayerWeights",
    "MLPWeights",
    "ModelFacts",
    "ModelSpec",
    "NoisyView",
    "PermutedView",
    "WeightView",
]
