"""Corpus input: text files, lists of strings, or token tensors, cut into scored windows.

The paper ran GPT-2 medium over 60 IMDB reviews and kept the first 1,000 token positions; here a
corpus is tokenized once, its tokens concatenated (each text followed by a newline) and cut into
windows of ``seq_len`` tokens, each led by the model's BOS token when it prepends one. The
positions that *count* are the non-BOS ones, in order, up to ``positions``: the BOS position is
an attention sink whose residual says little about the text. Encoders lead with ``[CLS]``.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from ..adapters import adapt
from ..errors import InvalidArgumentError

# The paper kept the first 1,000 positions.
DEFAULT_POSITIONS = 1000
DEFAULT_SEQ_LEN = 128


class CorpusError(InvalidArgumentError):
    """A corpus that is empty, unreadable or too short for what was asked."""


@dataclass(frozen=True)
class Windows:
    """Token windows a model is run over, and which of their positions are scored.

    Attributes:
        tokens: ``[n_windows, seq_len]`` token ids.
        scored: ``[n_windows, seq_len]``: True at the positions that count (not BOS), exactly
            ``n_positions`` of them, the first ones in reading order.
        source: Where the text came from, for provenance.
    """

    tokens: Int[Tensor, "n seq"]
    scored: Bool[Tensor, "n seq"]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def n_positions(self) -> int:
        """How many positions are scored."""
        return int(self.scored.sum())


def _read_texts(corpus: Any) -> tuple[list[str], dict[str, Any]]:
    if isinstance(corpus, (str, Path)):
        text = str(corpus)
        if text.startswith("hf:"):
            return _hf_texts(text[3:])
        path = Path(corpus)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise CorpusError(
                f"cannot read the corpus file {str(path)!r} ({e}); pass a UTF-8 text file, a "
                "list of strings, or 'hf:NAME[:CONFIG]:SPLIT' for a Hugging Face dataset"
            ) from e
        return [ln.strip() for ln in lines if ln.strip()], {"kind": "file", "path": str(path)}
    if isinstance(corpus, Sequence) and all(isinstance(t, str) for t in corpus):
        return [t for t in corpus if t.strip()], {"kind": "strings", "n_texts": len(corpus)}
    raise CorpusError(
        f"a corpus must be a text file path, a list of strings or a token tensor, got "
        f"{type(corpus).__name__}"
    )


def _hf_texts(spec: str) -> tuple[list[str], dict[str, Any]]:
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise CorpusError(f"expected 'hf:NAME[:CONFIG]:SPLIT', got 'hf:{spec}'")
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError as e:
        raise CorpusError(
            "'hf:' corpora need the `datasets` package (pip install datasets); or pass a local "
            "text file"
        ) from e
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # noqa: BLE001 - any hub or cache failure means "not reachable"
        raise CorpusError(f"Hugging Face dataset {spec!r} is not reachable: {e}") from e
    column = "text" if "text" in ds.column_names else ds.column_names[0]
    texts = [t for t in ds[column] if isinstance(t, str) and t.strip()]
    return texts, {"kind": "hf", "dataset": name, "config": config, "split": split}


def _bos_id(model: Any, prepend_bos: bool | None) -> int | None:
    """The token leading each window: BOS, or ``[CLS]`` for an encoder; None for none.

    Encoders lead with their classification token: TransformerLens gives BERT tokenizers a BOS
    of ``<|endoftext|>``, which a BERT vocabulary maps to ``[UNK]``.
    """
    tokenizer = model.tokenizer
    default = bool(getattr(model.cfg, "default_prepend_bos", True))
    want = default if prepend_bos is None else prepend_bos
    bos = getattr(tokenizer, "bos_token_id", None)
    cls = getattr(tokenizer, "cls_token_id", None)
    if cls is not None and adapt(model).spec.is_encoder:
        bos = cls
    if want and bos is None:
        if prepend_bos:
            raise CorpusError("prepend_bos=True, but the model's tokenizer has no BOS token")
        return None
    return bos if want else None


def windows(
    model: Any,
    corpus: Any,
    *,
    positions: int = DEFAULT_POSITIONS,
    seq_len: int = DEFAULT_SEQ_LEN,
    prepend_bos: bool | None = None,
) -> Windows:
    """Tokenize ``corpus`` into windows holding at least ``positions`` scored positions.

    Args:
        model: A TransformerLens model with a ``tokenizer`` (its ``cfg.default_prepend_bos``
            decides whether windows start with BOS, unless ``prepend_bos`` is given).
        corpus: A path to a UTF-8 text file (one text per non-empty line), a list of strings, a
            ``[n, seq_len]`` token tensor (every position scored, up to ``positions``), or
            ``"hf:NAME[:CONFIG]:SPLIT"`` (needs the ``datasets`` package and a reachable hub).
        positions: Positions to score (the paper used 1,000).
        seq_len: Tokens per window, BOS included.
        prepend_bos: Lead each window with BOS; default: as the model does.

    Raises:
        CorpusError: For an empty, unreadable or too short corpus, or bad sizes.
    """
    for name, value in (("positions", positions), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CorpusError(f"{name} must be a positive int, got {value!r}")
    if isinstance(corpus, Tensor):
        return _token_windows(corpus, positions)
    texts, source = _read_texts(corpus)
    if not texts:
        raise CorpusError(f"the corpus holds no text ({source})")
    bos = _bos_id(model, prepend_bos)
    body = seq_len - (bos is not None)
    if body < 1:
        raise CorpusError(f"seq_len={seq_len} leaves no room for text after BOS")
    n_windows = math.ceil(positions / body)
    need = n_windows * body
    stream: list[int] = []
    for text in texts:
        stream += model.tokenizer(text + "\n", add_special_tokens=False)["input_ids"]
        if len(stream) >= need:
            break
    if len(stream) < need:
        raise CorpusError(
            f"the corpus has {len(stream)} tokens, fewer than the {need} needed for {positions} "
            f"positions in windows of {seq_len}; pass more text or fewer positions"
        )
    body_tokens = torch.tensor(stream[:need], dtype=torch.long).view(n_windows, body)
    scored = torch.ones_like(body_tokens, dtype=torch.bool)
    if bos is not None:
        lead = torch.full((n_windows, 1), bos, dtype=torch.long)
        body_tokens = torch.cat([lead, body_tokens], dim=1)
        scored = torch.cat([torch.zeros(n_windows, 1, dtype=torch.bool), scored], dim=1)
    scored = _first(scored, positions)
    source.update(positions=positions, seq_len=seq_len, bos=bos)
    return Windows(body_tokens, scored, source)


def _first(scored: Tensor, positions: int) -> Tensor:
    """Keep only the first ``positions`` True entries of ``scored`` in reading order."""
    flat = scored.flatten()
    flat = flat & (flat.cumsum(0) <= positions)
    return flat.view_as(scored)


def _token_windows(tokens: Tensor, positions: int) -> Windows:
    if tokens.ndim != 2 or tokens.dtype not in (torch.long, torch.int32) or tokens.numel() == 0:
        raise CorpusError(
            f"a token corpus must be a non-empty [n, seq_len] integer tensor, got shape "
            f"{tuple(tokens.shape)} and dtype {tokens.dtype}"
        )
    if tokens.numel() < positions:
        raise CorpusError(f"{tokens.numel()} tokens cannot give {positions} positions")
    n_windows = math.ceil(positions / tokens.shape[1])
    tokens = tokens[:n_windows].long()
    scored = _first(torch.ones_like(tokens, dtype=torch.bool), positions)
    return Windows(tokens, scored, {"kind": "tokens", "positions": positions})


__all__ = ["DEFAULT_POSITIONS", "DEFAULT_SEQ_LEN", "CorpusError", "Windows", "windows"]
