"""Token display and token filters over a Hugging Face tokenizer.

Surface text
    The *surface text* of a token is exactly what it adds to decoded text when it follows
    another token: ``" hello"`` for GPT-2/Llama-3 style ``"Ġhello"``, ``" hello"`` for
    SentencePiece ``"▁hello"`` (whose single-token decode drops the space), ``"ing"`` for the
    WordPiece continuation ``"##ing"`` and ``" hello"`` for the word-initial ``"hello"``. Added
    and special tokens show their content (``"<|endoftext|>"``, ``"[CLS]"``). Ids the tokenizer
    does not know (models often pad the vocabulary) show as ``"<id 50257>"``.

Filters
    :class:`TokenFilter` turns conditions on surface text and ids into a boolean allowed-token
    mask. Every active condition must hold (intersection); a condition that can match nothing,
    or a filter that leaves no token, raises :class:`~tl_embspace.errors.FilterError` instead of
    silently doing nothing.
"""

import re
import unicodedata
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._types import Bool
from .errors import FilterError, InvalidArgumentError, VocabularyMismatchError

# tokenizer -> (len(tokenizer) when decoded, surface text of ids 0..len-1); weak so that a
# discarded tokenizer frees its strings. Keyed by length too: add_tokens() invalidates it.
_SURFACES: "weakref.WeakKeyDictionary[Any, tuple[int, tuple[str | None, ...]]]" = (
    weakref.WeakKeyDictionary()
)

# Short plain words used as the left context when measuring a token's surface text.
_ANCHOR_WORDS = ("a", "x", "the", "I")


def _placeholder(token_id: int) -> str:
    return f"<id {token_id}>"


def _anchor(tokenizer: Any) -> int | None:
    """A token id that decodes to a plain word, to prefix tokens with (None if none found)."""
    for word in _ANCHOR_WORDS:
        try:
            ids = tokenizer.encode(word, add_special_tokens=False)
        except Exception:  # noqa: BLE001 - unusual tokenizers: fall back to lone decoding
            return None
        if len(ids) == 1 and _decode(tokenizer, [ids])[0].strip() == word:
            return ids[0]
    return None


def _decode(tokenizer: Any, sequences: list[list[int]]) -> list[str]:
    """Decode each id sequence separately, without special-token skipping or space cleanup."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # Rust tokenizer: one batched call, fast for a whole vocabulary.
        return backend.decode_batch(sequences, skip_special_tokens=False)
    return [
        tokenizer.decode(seq, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        for seq in sequences
    ]


def _surfaces(tokenizer: Any, ids: Sequence[int]) -> list[str | None]:
    """Surface text of each id (all < len(tokenizer)); None for ids with no token."""
    ids = list(ids)
    raw = tokenizer.convert_ids_to_tokens(ids)
    existing = [i for i, r in zip(ids, raw, strict=True) if r is not None]
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    anchor = _anchor(tokenizer)
    # Added tokens (special or not) are shown as their content, decoded alone.
    lone = [i for i in existing if anchor is None or i in added]
    paired = [i for i in existing if anchor is not None and i not in added]
    texts: dict[int, str | None] = dict(_decode_each(tokenizer, lone))
    if paired and anchor is not None:  # paired is empty without an anchor
        # Decoders treat the first token specially (SentencePiece drops its space, WordPiece
        # keeps "##"), so decode each token after the anchor and strip the anchor's text.
        prefix = _decode(tokenizer, [[anchor]])[0]
        decoded = _decode(tokenizer, [[anchor, i] for i in paired])
        for i, text in zip(paired, decoded, strict=True):
            texts[i] = text[len(prefix) :] if text.startswith(prefix) else None
        # A token that rewrites its left context (rare cleanup rules) gets its lone decoding.
        texts.update(_decode_each(tokenizer, [i for i in paired if texts[i] is None]))
    return [texts.get(i) for i in ids]


def _decode_each(tokenizer: Any, ids: list[int]) -> list[tuple[int, str]]:
    """(id, lone decoding) pairs."""
    return list(zip(ids, _decode(tokenizer, [[i] for i in ids]), strict=True))


def _surface_table(tokenizer: Any) -> tuple[str | None, ...]:
    """Surface text of every id below len(tokenizer), decoded once per tokenizer."""
    size = len(tokenizer)
    cached = _SURFACES.get(tokenizer)
    if cached is not None and cached[0] == size:
        return cached[1]
    table = tuple(_surfaces(tokenizer, range(size)))
    try:
        _SURFACES[tokenizer] = (size, table)
    except TypeError:  # not weak-referenceable: just do not cache
        pass
    return table


def vocab_strings(tokenizer: Any, d_vocab: int) -> tuple[str, ...]:
    """Surface text of token ids ``0 .. d_vocab-1``, decoded once per tokenizer and cached.

    Args:
        tokenizer: A Hugging Face tokenizer.
        d_vocab: The model's vocabulary size; ids the tokenizer does not know (padding of the
            embedding matrix) get the placeholder ``"<id N>"``.

    Returns:
        A tuple of ``d_vocab`` strings, indexed by token id (see the module docstring).
    """
    table = _surface_table(tokenizer)
    return tuple(
        text if i < len(table) and (text := table[i]) is not None else _placeholder(i)
        for i in range(d_vocab)
    )


def check_tokenizer(tokenizer: Any, d_vocab: int, *, reference: Any = None) -> None:
    """Refuse a tokenizer that cannot label this model's token ids.

    A model's vocabulary may be padded beyond its tokenizer (ids the tokenizer lacks show as
    ``"<id N>"``), but a tokenizer with *more* tokens than the model, or one whose token-to-id
    map differs from the model's own tokenizer, belongs to another model: every score would be
    labelled with the wrong token.

    Args:
        tokenizer: The tokenizer that will label results.
        d_vocab: The model's largest vocabulary (rows of ``W_E`` or columns of ``W_U``).
        reference: The model's own tokenizer, if it has one (compared by vocabulary).

    Raises:
        VocabularyMismatchError: the tokenizer is larger than the model's vocabulary, or maps
            some token to another id than ``reference`` does.
    """
    size = len(tokenizer)
    if size > d_vocab:
        raise VocabularyMismatchError(
            f"the tokenizer has {size} tokens but the model's vocabulary has {d_vocab}: it "
            "belongs to another model, and its strings would label the wrong ids; pass the "
            "model's own tokenizer (or none, to use the model's)"
        )
    if reference is None or reference is tokenizer:
        return
    ours, theirs = tokenizer.get_vocab(), reference.get_vocab()
    if ours != theirs:
        differ = sorted(t for t in set(ours) | set(theirs) if ours.get(t) != theirs.get(t))
        raise VocabularyMismatchError(
            f"the tokenizer disagrees with the model's own tokenizer on {len(differ)} tokens "
            f"(e.g. {differ[:3]}): its strings would label the wrong ids; pass the model's "
            "tokenizer, or none"
        )


def decode_tokens(tokenizer: Any, ids: Iterable[int] | Tensor) -> list[str]:
    """Surface text of each token id, one token at a time.

    Unlike ``batch_decode`` of a 1-D tensor (which joins everything into one string in
    transformers >= 5) every id is decoded on its own.

    Args:
        tokenizer: A Hugging Face tokenizer.
        ids: A 1-D tensor or an iterable of token ids.

    Returns:
        One string per id; unknown ids give ``"<id N>"``.
    """
    if isinstance(ids, Tensor):
        if ids.ndim > 1:
            raise InvalidArgumentError(
                f"decode_tokens takes a 1-D list of ids, got shape {tuple(ids.shape)}"
            )
        ids = ids.reshape(-1).tolist()
    ids = [int(i) for i in ids]
    size = len(tokenizer)
    cached = _SURFACES.get(tokenizer)
    if cached is not None and cached[0] == size:
        table: Sequence[str | None] = cached[1]
        texts = [table[i] if 0 <= i < size else None for i in ids]
    else:
        known = sorted({i for i in ids if 0 <= i < size})
        by_id = dict(zip(known, _surfaces(tokenizer, known), strict=True))
        texts = [by_id.get(i) for i in ids]
    return [_placeholder(i) if t is None else t for i, t in zip(ids, texts, strict=True)]


_WHITESPACE_SYMBOLS = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
# Control, format (zero-width, BOM), surrogate, private-use, unassigned, and separator
# characters other than the plain space are invisible or ambiguous when printed.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def visible(s: str) -> str:
    r"""Make whitespace and invisible characters visible, for printing tokens.

    Mapping: space → ``␣``, newline → ``↵``, tab → ``⇥``, carriage return → ``␍``; any other
    control, format, separator, surrogate, private-use or unassigned character (e.g. NBSP,
    zero-width space, BOM, ``\x00``) → an escape ``\xNN``, ``\uNNNN`` or ``\UNNNNNNNN``;
    the empty string → ``∅``. Everything else is unchanged.

    Args:
        s: Any string, typically a token's surface text.

    Returns:
        The display string.
    """
    if not s:
        return "∅"
    out = []
    for ch in s:
        if ch in _WHITESPACE_SYMBOLS:
            out.append(_WHITESPACE_SYMBOLS[ch])
        elif unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
            out.append(_escape(ord(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# Raw token forms that mark special tokens: "<|endoftext|>" anywhere in the vocabulary, and
# "<...>" among tokens added on top of the model vocabulary ("<repo_name>", "<s>"). Plain
# vocabulary tokens like "<div>" or byte tokens like "<0x0A>" are ordinary text.
_SPECIAL_ANYWHERE = re.compile(r"<\|[^\s]*\|>")
_SPECIAL_IF_ADDED = re.compile(r"<[^<>\s]+>")


def special_ids(tokenizer: Any, d_vocab: int) -> set[int]:
    """Ids (below ``d_vocab``) of special or added control tokens.

    These are ``tokenizer.all_special_ids``, added tokens marked special, tokens whose raw form
    is ``<|...|>``, and added tokens of the form ``<...>``.
    """
    ids = {i for i in getattr(tokenizer, "all_special_ids", []) if 0 <= i < d_vocab}
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    for i, token in added.items():
        content = str(getattr(token, "content", token))
        if getattr(token, "special", False) or _SPECIAL_IF_ADDED.fullmatch(content):
            ids.add(i)
    size = min(len(tokenizer), d_vocab)
    raw = tokenizer.convert_ids_to_tokens(list(range(size)))
    ids.update(i for i, r in enumerate(raw) if r is not None and _SPECIAL_ANYWHERE.fullmatch(r))
    return {i for i in ids if i < d_vocab}


def _as_tuple(value: Any, name: str) -> tuple[str | int, ...]:
    if isinstance(value, (str, int)):
        value = (value,)
    items = tuple(value)
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, (str, int))]
    if bad:
        raise FilterError(f"{name} takes token strings or int ids, got {bad!r}")
    return items


@dataclass(frozen=True)
class TokenFilter:
    """Which tokens may appear in a ranking; every active condition must hold.

    The mask is the intersection of the active conditions: a token is allowed only if it passes
    all of them. Conditions on surface text (see the module docstring) never pass ids the
    tokenizer does not know (vocabulary padding).

    Attributes:
        ascii: Surface text is non-empty printable ASCII (space allowed; tab/newline not).
        alnum: After stripping leading whitespace, the surface text is alphanumeric (letters,
            including non-Latin ones, and digits), e.g. ``" Paris"`` or ``"42"``.
        regex: The surface text matches this pattern (``re.search``).
        include: Only these tokens: strings are matched against surface text exactly
            (``" hello"`` and ``"hello"`` differ), ints are token ids. A bare string or id, or
            any sequence of them, is stored as a tuple.
        exclude: Never these tokens (same matching as ``include``).
        exclude_special: Drop special and added control tokens (see :func:`special_ids`) and
            ids the tokenizer does not know.
        exclude_same: For token pairs only: drop pairs ``(t, t)``. The vocabulary mask ignores
            it; pair rankings read it.

    Raises:
        FilterError: On construction for a malformed ``regex`` or non str/int ``include`` or
            ``exclude`` entries; from :meth:`mask` when an ``include``/``exclude`` entry names
            no token or when no token is left.
    """

    ascii: bool = False
    alnum: bool = False
    regex: str | None = None
    include: Sequence[str | int] | str | int | None = None
    exclude: Sequence[str | int] | str | int = ()
    exclude_special: bool = False
    exclude_same: bool = False

    def __post_init__(self) -> None:
        # Accept a bare string/id or a list for convenience; store hashable tuples.
        if self.include is not None:
            object.__setattr__(self, "include", _as_tuple(self.include, "include"))
        object.__setattr__(self, "exclude", _as_tuple(self.exclude, "exclude"))
        if self.regex is not None:
            _compile(self.regex)

    @property
    def active(self) -> bool:
        """Whether any condition restricts the vocabulary (``exclude_same`` does not)."""
        return bool(
            self.ascii
            or self.alnum
            or self.regex is not None
            or self.include is not None
            or self.exclude
            or self.exclude_special
        )

    def mask(self, tokenizer: Any, d_vocab: int) -> Bool[Tensor, " d_vocab"] | None:
        """Boolean mask of allowed token ids, True = allowed.

        Args:
            tokenizer: The Hugging Face tokenizer of the model.
            d_vocab: The model's vocabulary size (length of the mask).

        Returns:
            A ``[d_vocab]`` bool tensor on the CPU, or None when no condition is active (every
            token allowed; cheaper for callers than an all-True mask).

        Raises:
            FilterError: An ``include``/``exclude`` entry names no token, or nothing is left.
        """
        if not self.active:
            return None
        texts = vocab_strings(tokenizer, d_vocab)
        known = len(tokenizer)
        allowed = [True] * d_vocab
        # Padded ids have placeholder text, not surface text: content conditions reject them.
        if self.ascii or self.alnum or self.regex is not None:
            pattern = None if self.regex is None else _compile(self.regex)
            for i, text in enumerate(texts):
                allowed[i] = (
                    i < known
                    and (not self.ascii or (bool(text) and text.isascii() and text.isprintable()))
                    and (not self.alnum or text.lstrip().isalnum())
                    and (pattern is None or pattern.search(text) is not None)
                )
        if self.include is not None:
            chosen = self._resolve(self.include, "include", texts, known)
            allowed = [ok and i in chosen for i, ok in enumerate(allowed)]
        if self.exclude:
            dropped = self._resolve(self.exclude, "exclude", texts, known)
            allowed = [ok and i not in dropped for i, ok in enumerate(allowed)]
        if self.exclude_special:
            special = special_ids(tokenizer, d_vocab)
            allowed = [ok and i < known and i not in special for i, ok in enumerate(allowed)]
        result = torch.tensor(allowed, dtype=torch.bool)
        if not bool(result.any()):
            raise FilterError(
                f"{self!r} allows none of the {d_vocab} tokens (every active condition must "
                f"hold); loosen the filter"
            )
        return result

    @staticmethod
    def _resolve(items: Any, name: str, texts: tuple[str, ...], known: int) -> set[int]:
        """Ids named by ``items`` (a tuple after construction); each must name a token."""
        by_text: dict[str, list[int]] = {}
        for i, text in enumerate(texts[:known]):
            by_text.setdefault(text, []).append(i)
        ids: set[int] = set()
        for item in items:
            if isinstance(item, int):
                if not 0 <= item < len(texts):
                    raise FilterError(
                        f"{name} id {item} is outside the vocabulary [0, {len(texts)}); "
                        f"fix the id or drop it"
                    )
                ids.add(item)
            elif item in by_text:
                ids.update(by_text[item])
            else:
                near = sorted({t for t in by_text if t.strip() == item.strip()})[:5]
                hint = f"; tokens with the same text up to spaces: {near!r}" if near else ""
                raise FilterError(
                    f"{name} string {item!r} is not the surface text of any token (matching is "
                    f"exact, leading spaces included){hint}; fix or drop it"
                )
        return ids


def _compile(pattern: str) -> "re.Pattern[str]":
    try:
        return re.compile(pattern)
    except re.error as err:
        raise FilterError(f"invalid regex {pattern!r} in TokenFilter: {err}") from err


__all__ = [
    "TokenFilter",
    "check_tokenizer",
    "decode_tokens",
    "special_ids",
    "visible",
    "vocab_strings",
]
