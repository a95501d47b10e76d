"""Token display and filters, on small tokenizers built in memory (no downloads)."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tl_embspace import tokens
from tl_embspace.errors import FilterError
from tl_embspace.tokens import TokenFilter, decode_tokens, special_ids, visible, vocab_strings

CORPUS = [
    "hello world, the world says hello\n\tthe end.",
    "Paris is in France; 42 cats and 7 dogs!",
    "café naïve 日本 déjà vu",
    "def main():\n    return 0\r\n",
    "world\nworld hello",
] * 20


@pytest.fixture(scope="module")
def byte_level():
    """A GPT-2 style byte-level BPE tokenizer ('Ġ' marks a leading space)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<repo_name>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", additional_special_tokens=["<repo_name>"]
    )


@pytest.fixture(scope="module")
def wordpiece():
    """A BERT style WordPiece tokenizer ('##' marks a continuation)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "play", "##ing", "##s", "a", "."]
    vocab += ["<div>", "<|odd|>"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


@pytest.fixture(scope="module")
def metaspace():
    """A SentencePiece style tokenizer ('▁' marks a leading space; lone decoding drops it)."""
    vocab = {"<unk>": 0, "▁hello": 1, "hello": 2, "▁a": 3, "a": 4, "▁": 5, "ing": 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def ids_of(tokenizer, raw):
    return tokenizer.convert_tokens_to_ids(raw)


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------


def test_byte_level_tokens_keep_their_leading_space(byte_level):
    space_world = ids_of(byte_level, "Ġworld")
    world = ids_of(byte_level, "world")
    assert decode_tokens(byte_level, [space_world, world]) == [" world", "world"]


def test_byte_level_decoding_is_one_token_at_a_time(byte_level):
    ids = byte_level.encode("hello world", add_special_tokens=False)
    assert len(ids) > 1
    texts = decode_tokens(byte_level, torch.tensor(ids))
    assert len(texts) == len(ids)
    assert "".join(texts) == "hello world"


def test_wordpiece_continuations_attach_and_words_start_with_a_space(wordpiece):
    ids = [ids_of(wordpiece, t) for t in ["play", "##ing", "hello", "."]]
    texts = decode_tokens(wordpiece, ids)
    assert texts == [" play", "ing", " hello", "."]
    assert decode_tokens(wordpiece, [ids_of(wordpiece, "[CLS]")]) == ["[CLS]"]


def test_metaspace_tokens_keep_the_space_lone_decoding_drops(metaspace):
    assert metaspace.decode([1]) == "hello"  # the transformers behaviour this works around
    assert decode_tokens(metaspace, [1, 2, 5, 6]) == [" hello", "hello", " ", "ing"]


def test_unknown_and_padded_ids_get_placeholders(byte_level):
    size = len(byte_level)
    texts = decode_tokens(byte_level, [size, size + 7, -1])
    assert texts == [f"<id {size}>", f"<id {size + 7}>", "<id -1>"]
    strings = vocab_strings(byte_level, size + 3)
    assert len(strings) == size + 3
    assert strings[-3:] == (f"<id {size}>", f"<id {size + 1}>", f"<id {size + 2}>")


def test_vocab_strings_agree_with_decode_tokens_and_are_cached(byte_level, monkeypatch):
    size = len(byte_level)
    strings = vocab_strings(byte_level, size)
    assert list(strings) == decode_tokens(byte_level, range(size))
    assert strings[ids_of(byte_level, "<|endoftext|>")] == "<|endoftext|>"
    # A second call must not decode again.
    monkeypatch.setattr(tokens, "_surfaces", lambda *a: pytest.fail("decoded twice"))
    assert vocab_strings(byte_level, size) == strings
    assert vocab_strings(byte_level, 10) == strings[:10]


def test_vocab_strings_refreshes_after_tokens_are_added():
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "x": 1}, unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    assert len(vocab_strings(tokenizer, 2)) == 2
    tokenizer.add_tokens(["<new>"])
    assert vocab_strings(tokenizer, 3)[2] == "<new>"


def test_decode_tokens_rejects_matrices(byte_level):
    with pytest.raises(ValueError, match="1-D"):
        decode_tokens(byte_level, torch.zeros(2, 2, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# visible
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (" hello", "␣hello"),
        ("a\nb\tc\rd", "a↵b⇥c␍d"),
        ("", "∅"),
        ("\x00\x1b", "\\x00\\x1b"),
        ("\u00a0", "\\xa0"),  # no-break space
        ("\u200b\ufeff", "\\u200b\\ufeff"),  # zero-width space, BOM
        ("\U000e0001", "\\U000e0001"),  # language tag (format character)
        ("café 日本", "café␣日本"),
    ],
)
def test_visible(raw, shown):
    assert visible(raw) == shown


# ---------------------------------------------------------------------------------------------
# TokenFilter
# ---------------------------------------------------------------------------------------------


def allowed_texts(tokenizer, token_filter, d_vocab=None):
    d_vocab = d_vocab or len(tokenizer)
    mask = token_filter.mask(tokenizer, d_vocab)
    strings = vocab_strings(tokenizer, d_vocab)
    return {strings[i] for i in mask.nonzero()[:, 0].tolist()}, mask


def test_inactive_filter_gives_no_mask(byte_level):
    assert TokenFilter().mask(byte_level, len(byte_level)) is None
    assert TokenFilter(exclude_same=True).mask(byte_level, len(byte_level)) is None
    assert not TokenFilter(exclude_same=True).active


def test_ascii_filter(byte_level):
    texts, mask = allowed_texts(byte_level, TokenFilter(ascii=True))
    assert mask.dtype == torch.bool and mask.shape == (len(byte_level),)
    assert texts and all(t and t.isascii() and t.isprintable() for t in texts)
    everything = set(vocab_strings(byte_level, len(byte_level)))
    rejected = everything - texts
    assert any("\n" in t for t in rejected) and any("é" in t for t in rejected)


def test_alnum_filter_allows_leading_space_and_unicode_letters(byte_level):
    texts, _ = allowed_texts(byte_level, TokenFilter(alnum=True))
    assert " world" in texts and "world" in texts
    assert all(t.lstrip().isalnum() for t in texts)
    assert not any(t.strip() in {",", ".", "!", ""} for t in texts)
    assert any(not t.isascii() for t in texts)  # e.g. "é" or "日本" pieces


def test_conditions_intersect(byte_level):
    alnum, _ = allowed_texts(byte_level, TokenFilter(alnum=True))
    ascii_, _ = allowed_texts(byte_level, TokenFilter(ascii=True))
    both, _ = allowed_texts(byte_level, TokenFilter(alnum=True, ascii=True))
    assert both == alnum & ascii_
    assert both < alnum and both < ascii_


def test_regex_filter_and_bad_regex(byte_level):
    texts, _ = allowed_texts(byte_level, TokenFilter(regex=r"^ [a-z]+$"))
    assert texts and all(t.startswith(" ") and t[1:].isalpha() for t in texts)
    with pytest.raises(FilterError, match=r"invalid regex '\(unclosed'.*missing \)"):
        TokenFilter(regex="(unclosed")


def test_include_by_text_and_id(byte_level):
    world = ids_of(byte_level, "Ġworld")
    token_filter = TokenFilter(include=(" hello", world))
    texts, mask = allowed_texts(byte_level, token_filter)
    assert texts == {" hello", " world"}
    assert int(mask.sum()) == 2


def test_include_string_matching_nothing_raises_with_a_hint(byte_level):
    with pytest.raises(FilterError, match=r"'  world'.*not the surface text.*' world'"):
        TokenFilter(include=("  world",)).mask(byte_level, len(byte_level))
    with pytest.raises(FilterError, match="outside the vocabulary"):
        TokenFilter(include=(10**6,)).mask(byte_level, len(byte_level))


def test_exclude_and_no_silent_noop(byte_level):
    texts, _ = allowed_texts(byte_level, TokenFilter(exclude=(" world", "world"), alnum=True))
    assert " world" not in texts and "world" not in texts and " hello" in texts
    with pytest.raises(FilterError, match="not the surface text"):
        TokenFilter(exclude=("no such token",)).mask(byte_level, len(byte_level))


def test_include_accepts_a_bare_string_or_list(byte_level):
    expected = TokenFilter(include=(" hello",))
    assert TokenFilter(include=" hello") == TokenFilter(include=[" hello"]) == expected
    # A run-time type checker (as in this test suite) rejects it from the annotation first.
    with pytest.raises((FilterError, TypeError), match="token strings or int ids|exclude"):
        TokenFilter(exclude=(1.5,))


def test_exclude_special(byte_level, wordpiece):
    size = len(byte_level)
    texts, mask = allowed_texts(byte_level, TokenFilter(exclude_special=True), d_vocab=size + 5)
    assert "<|endoftext|>" not in texts and "<repo_name>" not in texts
    assert not bool(mask[size:].any())  # padding ids are not tokens
    assert " world" in texts
    wp = special_ids(wordpiece, len(wordpiece))
    # "[CLS]" etc. are declared special; "<|odd|>" looks special; "<div>" is ordinary text.
    assert {ids_of(wordpiece, t) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<|odd|>"]} <= wp
    assert ids_of(wordpiece, "<div>") not in wp


def test_content_conditions_reject_padding_ids(byte_level):
    size = len(byte_level)
    # Padding placeholders read "<id N>": a pattern matching them must still reject them.
    _, mask = allowed_texts(byte_level, TokenFilter(regex=r"\d|<"), d_vocab=size + 4)
    assert bool(mask[:size].any()) and not bool(mask[size:].any())


def test_filter_allowing_nothing_raises(byte_level):
    with pytest.raises(FilterError, match="allows none of the"):
        TokenFilter(ascii=True, regex="é").mask(byte_level, len(byte_level))


def test_vocab_decoding_is_fast_for_a_large_vocabulary():
    import time

    vocab = {f"t{i}": i for i in range(50_000)}
    vocab["[UNK]"] = 50_000
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    start = time.perf_counter()
    strings = vocab_strings(tokenizer, 50_001)
    TokenFilter(alnum=True, regex="7").mask(tokenizer, 50_001)
    assert time.perf_counter() - start < 5.0
    assert len(strings) == 50_001
