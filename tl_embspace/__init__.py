"""tl_embspace: read every parameter of a TransformerLens model in embedding space.

After Dar, Geva, Gupta & Berant, "Analyzing Transformers in Embedding Space" (ACL 2023).

Quick start::

    import tl_embspace as te
    model = te.load("smollm2-135m-instruct")          # or any TransformerLens model
    res = te.interpret("ff_value", model, layer=20, neurons=[0, 1, 2])
    print(res.top_tokens(0))
"""

from importlib.metadata import PackageNotFoundError, version

from . import apps, compare, plots
from .adapters import LayerWeights, ModelFacts, ModelSpec, WeightView, adapt
from .atlas import Atlas, SearchIndex
from .errors import (
    AtlasError,
    BasisError,
    EmbSpaceError,
    FilterError,
    InvalidArgumentError,
    MissingDependencyError,
    MissingWeightError,
    OptionError,
    OutputFolderError,
    RegistryError,
    SelectionError,
    UnsupportedLayerError,
    UnsupportedModelError,
    VocabularyMismatchError,
    ZooError,
)
from .interpreters import (
    InterpreterSpec,
    as_space,
    bias,
    copying_scores,
    direction,
    embedding,
    ff_gate,
    ff_key,
    ff_value,
    interpret,
    interpreters,
    key_subheads,
    output_subheads,
    ov_pairs,
    qk_pairs,
    query_subheads,
    register_interpreter,
    router,
    svd_in,
    svd_out,
    svd_ov,
    svd_qk,
    value_subheads,
)
from .registry import Registry
from .results import PairProjection, Provenance, VectorProjection
from .space import Basis, EmbeddingSpace
from .tokens import TokenFilter

try:
    __version__ = version("tl_embspace")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"


def load(name: str, backend: str = "bridge", **kwargs):  # noqa: D103 - documented in zoo.load
    from .zoo import load as _load

    return _load(name, backend, **kwargs)


load.__doc__ = (
    "Load a model by name: an offline zoo entry or any TransformerLens model "
    "(see ``tl_embspace.zoo.load``)."
)

__all__ = [
    "adapt",
    "load",
    "interpret",
    "interpreters",
    "InterpreterSpec",
    "register_interpreter",
    "router",
    "as_space",
    "ff_key",
    "ff_gate",
    "ff_value",
    "query_subheads",
    "key_subheads",
    "value_subheads",
    "output_subheads",
    "qk_pairs",
    "ov_pairs",
    "svd_ov",
    "svd_qk",
    "svd_in",
    "svd_out",
    "direction",
    "embedding",
    "bias",
    "copying_scores",
    "EmbeddingSpace",
    "Basis",
    "TokenFilter",
    "Registry",
    "ModelSpec",
    "ModelFacts",
    "WeightView",
    "LayerWeights",
    "VectorProjection",
    "PairProjection",
    "Provenance",
    "Atlas",
    "SearchIndex",
    "apps",
    "compare",
    "plots",
    "EmbSpaceError",
    "UnsupportedLayerError",
    "UnsupportedModelError",
    "MissingWeightError",
    "BasisError",
    "FilterError",
    "RegistryError",
    "OptionError",
    "SelectionError",
    "InvalidArgumentError",
    "VocabularyMismatchError",
    "ZooError",
    "AtlasError",
    "OutputFolderError",
    "MissingDependencyError",
    "__version__",
]
