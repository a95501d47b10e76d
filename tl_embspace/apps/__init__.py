"""The paper's applications on real weights: alignment, fine-tuning deltas, translation.

* :func:`align`: match the layers, heads and neurons of two models that share a vocabulary
  (Dar et al. §6 (a)), in embedding space or, as the baseline, in raw feature space.

This package reads weights through ``adapters``, ``space`` and ``interpreters``; nothing below
it imports it.
"""

from .align import AGGREGATES, GROUPS, SPACES, Alignment, align, shared_token_ids
from .kernels import CrossKernel, correlate, cross_kernel

__all__ = [
    "AGGREGATES",
    "Alignment",
    "CrossKernel",
    "GROUPS",
    "SPACES",
    "align",
    "correlate",
    "cross_kernel",
    "shared_token_ids",
]
