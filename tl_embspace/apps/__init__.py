"""The paper's applications on real weights: alignment, fine-tuning deltas, translation.

* :func:`align`: match the layers, heads and neurons of two models that share a vocabulary
  (Dar et al. §6 (a)), in embedding space or, as the baseline, in raw feature space.
* :func:`finetune_diff`: rank the parameters fine-tuning moved and read their deltas in
  embedding space (Dar et al. §5).
* :func:`vocabulary_map`: carry hidden states (and classifier heads) from one model's space to
  another's through the vocabulary (Dar et al. §6 (b)), with the fitted baselines
  :func:`least_squares_map`, :func:`procrustes_map` and :func:`identity_map`.

This package reads weights through ``adapters``, ``space`` and ``interpreters``; nothing below
it imports it.
"""

from .align import AGGREGATES, GROUPS, SPACES, Alignment, align, shared_token_ids
from .finetune import FinetuneDiff, ParameterChange, finetune_diff, parameter_changes
from .kernels import CrossKernel, correlate, cross_kernel
from .translate import (
    LinearMap,
    identity_map,
    least_squares_map,
    procrustes_map,
    vocabulary_map,
    vocabulary_map_from_bases,
)

__all__ = [
    "AGGREGATES",
    "Alignment",
    "CrossKernel",
    "FinetuneDiff",
    "GROUPS",
    "LinearMap",
    "ParameterChange",
    "SPACES",
    "align",
    "correlate",
    "cross_kernel",
    "finetune_diff",
    "identity_map",
    "least_squares_map",
    "parameter_changes",
    "procrustes_map",
    "shared_token_ids",
    "vocabulary_map",
    "vocabulary_map_from_bases",
]
