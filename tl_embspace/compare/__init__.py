"""Compare embedding-space readings of the weights with what the model does on text.

Hook-based activation methods (logit lens, FF coefficients, attention patterns and per-head
``z``, streaming projections) and the agreement protocol of Dar et al. (2023, §5) that scores
how much the tokens of the most active parameters overlap the logit lens of the residual.
Works on ``TransformerBridge`` (TransformerLens 3.x and 4.x) and ``HookedTransformer`` /
``HookedEncoder`` (3.x); every hook it adds is removed again, also on errors.
"""

from .collect import attention_patterns, ff_coefficients, head_z, residuals
from .corpus import CorpusError, Windows, windows
from .hooks import active_hook_count, attached
from .lens import StreamedTopK, lens_logits, logit_lens, logit_lens_topk, project_hooks
from .stream import Reducer, stream

__all__ = [
    "CorpusError",
    "Reducer",
    "StreamedTopK",
    "Windows",
    "active_hook_count",
    "attached",
    "attention_patterns",
    "ff_coefficients",
    "head_z",
    "lens_logits",
    "logit_lens",
    "logit_lens_topk",
    "project_hooks",
    "residuals",
    "stream",
    "windows",
]
