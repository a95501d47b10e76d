"""Corpus vocabularies: how often each token occurs in a text, with the model's own tokenizer.

Counts are computed once per (tokenizer, text) and cached on disk under
``$TL_EMBSPACE_CACHE`` (default ``~/.cache/tl_embspace``), keyed by a hash of the tokenizer's
vocabulary and of the text, so a second call is a file read. The text itself is never copied.

WikiText-2 (validation + test splits) is read from ``$TL_EMBSPACE_DATA/wikitext-2`` or a folder
passed in; nothing is downloaded.
"""

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from ..errors import InvalidArgumentError

#: Environment variables: the cache folder, and the folder holding ``wikitext-2/``.
CACHE_ENV = "TL_EMBSPACE_CACHE"
DATA_ENV = "TL_EMBSPACE_DATA"
WIKITEXT2_FILES = ("valid.txt", "test.txt")

# Lines tokenised per batch: bounds memory on large files, keeps the Rust tokenizer busy.
_BATCH_LINES = 4096


@dataclass(frozen=True)
class CorpusCounts:
    """Occurrences of every token id in a corpus.

    Attributes:
        name: What was counted (a file name or ``"strings"``), recorded in provenance.
        counts: ``[len(tokenizer)]`` int64: how many times the tokenizer produced each id.
        n_tokens: Total tokens in the corpus (``counts.sum()``).
    """

    name: str
    counts: Int[Tensor, " vocab"]
    n_tokens: int

    def seen(self, d_vocab: int, min_count: int = 1) -> Tensor:
        """``[d_vocab]`` bool: ids occurring at least ``min_count`` times.

        Ids beyond the tokenizer (vocabulary padding of the model) are never seen.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise InvalidArgumentError(f"min_count must be an int >= 1, got {min_count!r}")
        out = torch.zeros(d_vocab, dtype=torch.bool)
        n = min(d_vocab, self.counts.numel())
        out[:n] = self.counts[:n] >= min_count
        return out


def cache_dir() -> Path:
    """The cache folder: ``$TL_EMBSPACE_CACHE`` or ``~/.cache/tl_embspace``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tl_embspace")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short hash of the tokenizer's full definition (vocabulary, merges, normaliser)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:  # slow tokenizers: the vocabulary and class name identify them well enough
        text = json.dumps([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode(tokenizer: Any, lines: list[str]) -> list[list[int]]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(lines, add_special_tokens=False)]
    return [tokenizer.encode(line, add_special_tokens=False) for line in lines]


def _count(tokenizer: Any, lines: Iterable[str]) -> Tensor:
    counts = torch.zeros(len(tokenizer), dtype=torch.int64)
    batch: list[str] = []

    def flush() -> None:
        ids = [i for seq in _encode(tokenizer, batch) for i in seq]
        if ids:
            counts.add_(torch.bincount(torch.tensor(ids), minlength=counts.numel())[: len(counts)])
        batch.clear()

    for line in lines:
        if line.strip():  # blank lines add nothing but a newline token per line
            batch.append(line)
        if len(batch) >= _BATCH_LINES:
            flush()
    flush()
    return counts


def count_tokens(
    tokenizer: Any,
    source: "str | os.PathLike[str] | Iterable[str]",
    *,
    name: str | None = None,
    cache: bool = True,
) -> CorpusCounts:
    """Count the tokens of a text file (one document per line) or a list of strings.

    Each non-blank line (or string) is tokenised on its own, without special tokens, with the
    model's tokenizer. The result is cached (see the module docstring).

    Args:
        tokenizer: The model's Hugging Face tokenizer.
        source: A path to a UTF-8 text file, or an iterable of strings (e.g. a dataset column).
            A plain ``str`` is taken as a path.
        name: Label recorded with the counts (default: the file name, or ``"strings"``).
        cache: Read and write the on-disk cache.

    Returns:
        The counts.

    Raises:
        InvalidArgumentError: The file does not exist.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidArgumentError(f"corpus file {path} does not exist; pass a text file")
        lines: list[str] = path.read_text(encoding="utf-8").splitlines()
        name = name or path.name
    else:
        lines = [str(s) for s in source]
        name = name or "strings"
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    file = cache_dir() / "counts" / f"{tokenizer_fingerprint(tokenizer)}-{digest}.pt"
    if cache and file.is_file():
        counts = torch.load(file, weights_only=True)
    else:
        counts = _count(tokenizer, lines)
        if cache:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".{os.getpid()}.tmp")
            torch.save(counts, tmp)
            os.replace(tmp, file)  # atomic: a concurrent reader never sees half a file
    return CorpusCounts(name=name, counts=counts, n_tokens=int(counts.sum()))


def wikitext2_folder(data_dir: "str | os.PathLike[str] | None" = None) -> Path:
    """The WikiText-2 folder: ``data_dir/wikitext-2`` or ``$TL_EMBSPACE_DATA/wikitext-2``.

    Raises:
        InvalidArgumentError: Neither is given, or the files are not there.
    """
    root = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if root is None:
        raise InvalidArgumentError(
            f"where is WikiText-2? pass data_dir=... or set {DATA_ENV} to the folder holding "
            "wikitext-2/ (with valid.txt and test.txt)"
        )
    folder = Path(root) / "wikitext-2"
    missing = [f for f in WIKITEXT2_FILES if not (folder / f).is_file()]
    if missing:
        raise InvalidArgumentError(f"{folder} lacks {missing}; point {DATA_ENV} at a copy")
    return folder


def wikitext2_counts(
    tokenizer: Any, data_dir: "str | os.PathLike[str] | None" = None, *, cache: bool = True
) -> CorpusCounts:
    """Token counts of WikiText-2's validation and test splits (cached).

    Args:
        tokenizer: The model's tokenizer.
        data_dir: Folder holding ``wikitext-2/``; default ``$TL_EMBSPACE_DATA``.
        cache: Read and write the on-disk cache.
    """
    folder = wikitext2_folder(data_dir)
    lines: list[str] = []
    for f in WIKITEXT2_FILES:
        lines += (folder / f).read_text(encoding="utf-8").splitlines()
    return count_tokens(tokenizer, lines, name="wikitext-2 (valid+test)", cache=cache)


__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "CorpusCounts",
    "cache_dir",
    "count_tokens",
    "tokenizer_fingerprint",
    "wikitext2_counts",
    "wikitext2_folder",
]
