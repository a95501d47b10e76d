"""Token filters from masks: corpus vocabularies and the weights-only hygiene filter.

A :class:`MaskFilter` is a :class:`~tl_embspace.tokens.TokenFilter` that also holds an explicit
allowed-token mask and a label saying where the mask came from; every interpreter and the job
accept it wherever they accept a ``TokenFilter``, and the label is what provenance records.
"""

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from ..errors import FilterError
from ..tokens import TokenFilter
from .corpus import CorpusCounts
from .detect import NORM_Z_THRESHOLD, UNDERTRAINED_THRESHOLD, TokenReport, detect_tokens


def _digest(mask: Tensor) -> str:
    return hashlib.sha256(mask.to(torch.uint8).numpy().tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class MaskFilter(TokenFilter):
    """A :class:`TokenFilter` restricted further to an explicit allowed-token mask.

    Attributes:
        allowed: ``[d_vocab]`` bool, True = allowed (on the CPU).
        label: What the mask keeps, in words (recorded in provenance).
        digest: Hash of ``allowed`` (set automatically; filters compare by it).

    The inherited conditions (``alnum``, ``exclude_special``, ...) still apply on top.
    """

    allowed: Bool[Tensor, " d_vocab"] = field(
        default_factory=lambda: torch.ones(0, dtype=torch.bool), repr=False, compare=False
    )
    label: str = ""
    digest: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.allowed.dtype != torch.bool or self.allowed.ndim != 1:
            raise FilterError(f"allowed must be a 1-D bool mask, got {self.allowed.dtype}")
        object.__setattr__(self, "allowed", self.allowed.cpu())
        object.__setattr__(self, "digest", _digest(self.allowed))

    @property
    def active(self) -> bool:
        """Always: the mask restricts the vocabulary."""
        return True

    def mask(self, tokenizer: Any, d_vocab: int) -> Bool[Tensor, " d_vocab"]:
        """The allowed mask, intersected with the inherited conditions.

        Raises:
            FilterError: The mask's length is not ``d_vocab``, or nothing is left.
        """
        if self.allowed.numel() != d_vocab:
            raise FilterError(
                f"{self.label or 'this mask'} covers {self.allowed.numel()} tokens but the model "
                f"has {d_vocab}; build the filter for this model"
            )
        plain = TokenFilter(**{f.name: getattr(self, f.name) for f in fields(TokenFilter)})
        base = plain.mask(tokenizer, d_vocab)
        out = self.allowed if base is None else self.allowed & base
        if not bool(out.any()):
            raise FilterError(f"{self.label or 'the mask'} allows no token; loosen it")
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly record: the label, how many tokens it keeps, the other conditions."""
        record = {f.name: getattr(self, f.name) for f in fields(TokenFilter)}
        record = {key: list(v) if isinstance(v, tuple) else v for key, v in record.items()}
        record.update(label=self.label, allowed=int(self.allowed.sum()), digest=self.digest)
        return record


def describe_filter(token_filter: TokenFilter | None) -> dict[str, Any] | None:
    """A JSON-friendly record of any filter (None stays None)."""
    if token_filter is None:
        return None
    if isinstance(token_filter, MaskFilter):
        return token_filter.describe()
    return asdict(token_filter)


def restrict(token_filter: TokenFilter | None, mask_filter: MaskFilter) -> MaskFilter:
    """One filter allowing what both ``token_filter`` and ``mask_filter`` allow.

    Flags combine by "or" (``alnum`` of either applies), ``exclude`` lists are joined and masks
    intersected; ``regex`` and ``include`` may be set on one of the two only.

    Raises:
        FilterError: Both set ``regex`` or ``include``, or the masks have different lengths.
    """
    if token_filter is None:
        return mask_filter
    a, b = token_filter, mask_filter
    for name in ("regex", "include"):
        if getattr(a, name) is not None and getattr(b, name) is not None:
            raise FilterError(f"both filters set {name}; combine them into one {name} yourself")
    allowed, label = b.allowed, b.label
    if isinstance(a, MaskFilter):
        if a.allowed.shape != allowed.shape:
            raise FilterError(
                f"{a.label!r} covers {a.allowed.numel()} tokens, {label!r} "
                f"{allowed.numel()}; build both for the same model"
            )
        allowed, label = allowed & a.allowed, f"{label}; {a.label}"
    return MaskFilter(
        ascii=a.ascii or b.ascii,
        alnum=a.alnum or b.alnum,
        regex=a.regex if a.regex is not None else b.regex,
        include=a.include if a.include is not None else b.include,
        exclude=(*tuple(a.exclude), *tuple(b.exclude)),  # type: ignore[arg-type]
        exclude_special=a.exclude_special or b.exclude_special,
        exclude_same=a.exclude_same or b.exclude_same,
        allowed=allowed,
        label=label,
    )


def corpus_filter(counts: CorpusCounts, d_vocab: int, *, min_count: int = 1) -> MaskFilter:
    """Keep only tokens that occur at least ``min_count`` times in the counted corpus.

    This is the paper's own restriction (Dar et al. kept tokens seen in their corpus).
    """
    return MaskFilter(
        allowed=counts.seen(d_vocab, min_count),
        label=f"{counts.name} count>={min_count}",
    )


def hygiene_filter(
    model: Any,
    tokenizer: Any = None,
    *,
    corpus: CorpusCounts | None = None,
    min_count: int = 1,
    report: TokenReport | None = None,
    undertrained_threshold: float = UNDERTRAINED_THRESHOLD,
    norm_z_threshold: float = NORM_Z_THRESHOLD,
) -> MaskFilter:
    """The hygiene filter: drop every token :func:`detect_tokens` flags.

    That is special, unreachable, partial-UTF-8, under-trained and fragment tokens.

    Args:
        model: A TransformerLens model or a ``WeightView`` (its weights as loaded are read).
        tokenizer: Default: the model's.
        corpus: Also require ``min_count`` occurrences in these counts.
        min_count: See ``corpus``.
        report: A precomputed :func:`detect_tokens` report (then the thresholds are its own).
        undertrained_threshold: See :func:`detect_tokens`.
        norm_z_threshold: See :func:`detect_tokens`.

    Returns:
        A :class:`MaskFilter` whose label names every criterion and threshold.
    """
    if report is None:
        report = detect_tokens(
            model,
            tokenizer,
            undertrained_threshold=undertrained_threshold,
            norm_z_threshold=norm_z_threshold,
        )
    allowed = ~report.flagged
    label = (
        "hygiene: not special, reachable, legible (no partial UTF-8), not under-trained "
        f"(Magikarp cos<{report.undertrained_threshold:g}), not a fragment "
        f"(norm z<={report.norm_z_threshold:g})"
    )
    if corpus is not None:
        allowed = allowed & corpus.seen(allowed.numel(), min_count)
        label += f", {corpus.name} count>={min_count}"
    return MaskFilter(allowed=allowed, label=label)


__all__ = ["MaskFilter", "corpus_filter", "describe_filter", "hygiene_filter", "restrict"]
