"""Interpreters: typed public functions, each registered with a spec (see ``spec.py``).

Importing this package registers, in this (stable) order: ``ff_key``, ``ff_gate``, ``ff_value``,
``router``;
sub-heads ``q``, ``k``, ``v``, ``o``; ``qk_pairs``, ``ov_pairs``; ``svd_ov``, ``svd_qk``,
``svd_in``, ``svd_out``; ``direction``, ``bias``, ``embedding``. Every one is also a function
(``ff_value(model, layer=3)``); ``interpret(name, model, **options)`` runs one by name.
"""

# Module order is the registry's order, which the job and the atlas follow: keep it.
# isort: off
from ._base import Selection, Source, as_space, project_pairs, project_vectors
from .mlp import ff_gate, ff_key, ff_value, router
from .attention import (
    key_subheads,
    output_subheads,
    ov_pairs,
    qk_pairs,
    query_subheads,
    value_subheads,
)
from .svd import low_rank_svd, svd_in, svd_out, svd_ov, svd_qk
from .directions import bias, direction, embedding
from .copying import copying_scores
from .spec import (
    InterpreterRegistry,
    InterpreterSpec,
    interpret,
    interpreters,
    register_interpreter,
)
# isort: on

__all__ = [
    "InterpreterRegistry",
    "InterpreterSpec",
    "Selection",
    "Source",
    "as_space",
    "bias",
    "copying_scores",
    "direction",
    "embedding",
    "ff_gate",
    "ff_key",
    "ff_value",
    "interpret",
    "interpreters",
    "key_subheads",
    "low_rank_svd",
    "output_subheads",
    "ov_pairs",
    "project_pairs",
    "project_vectors",
    "qk_pairs",
    "query_subheads",
    "register_interpreter",
    "router",
    "svd_in",
    "svd_out",
    "svd_ov",
    "svd_qk",
    "value_subheads",
]
