"""The architecture zoo: tiny models of every TransformerLens architecture, and their checks.

``models`` builds the tiny models (``hf_model``, ``bridge``, ``hooked``); ``checks`` verifies a
model's weight view against its own forward pass through TransformerLens hooks (``verify``).
"""

from . import checks, coverage, models
from .checks import CHECKS, Status, verify, verify_hooked
from .models import (
    D_VOCAB,
    bridge,
    factory_architectures,
    hf_model,
    hooked,
    scope,
    text_architectures,
    tl_major,
)

__all__ = [
    "checks",
    "coverage",
    "models",
    "CHECKS",
    "D_VOCAB",
    "Status",
    "bridge",
    "factory_architectures",
    "hf_model",
    "hooked",
    "scope",
    "text_architectures",
    "tl_major",
    "verify",
    "verify_hooked",
]
