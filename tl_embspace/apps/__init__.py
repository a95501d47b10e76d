"""The paper's applications on real weights: alignment, fine-tuning deltas, translation.

* :func:`align`: match the layers, heads and neurons of two models that share a vocabulary
  (Dar et al. §6 (a)), in embedding space or, as the baseline, in raw feature space.
* :func:`finetune_diff`: rank the parameters fine-tuning moved and read their deltas in
  embedding space (Dar et al. §5).

This package reads weights through ``adapters``, ``space`` and ``interpreters``; nothing below
it imports it.
"""

from .align import AGGREGATES, GROUPS, SPACES, Alignment, align, shared_token_ids
from .finetune import FinetuneDiff, ParameterChange, finetune_diff, parameter_changes
from .kernels import CrossKernel, correlate, cross_kernel

__all__ = [
    "AGGREGATES",
    "Alignment",
    "CrossKernel",
    "FinetuneDiff",
    "GROUPS",
    "ParameterChange",
    "SPACES",
    "align",
    "correlate",
    "cross_kernel",
    "finetune_diff",
    "parameter_changes",
    "shared_token_ids",
]
