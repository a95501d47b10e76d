"""Shared pieces of the SST-2 demos (fine-tune, reading its deltas, translating its classifier).

* where the data is (``--data``, else ``$TL_EMBSPACE_DATA``, else ``../shared/data`` relative
  to the repository root) and where models and features go (``$TL_EMBSPACE_CACHE`` or
  ``~/.cache/tl_embspace``, under ``sst2/``: never inside the repository);
* :func:`read_sst2`: the TSV files (``sentence<TAB>label``, a header line);
* :func:`load_base`: SmolLM2 from the offline zoo, or any saved Hugging Face causal-LM folder
  (a tiny one for the smoke tests), as ``(hf_model, tokenizer)``;
* :func:`hidden_batches`: a frozen model's residual stream at one layer, per length-sorted
  batch (the expensive pass, done once; training then runs on the cached activations);
* :func:`mean_pool`: the mean over each sentence's real tokens.
"""

import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
# A script's own folder is first on sys.path, not the checkout: put the checkout's tl_embspace
# ahead of any installed copy, so a demo runs the code beside it.
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data"
SMOLLM2 = "smollm2-135m-instruct"


def data_dir(path: str | None) -> Path:
    """The folder holding ``sst2/``: the argument, the env var, the default."""
    from tl_embspace.vocab.corpus import DATA_ENV

    return Path(path or os.environ.get(DATA_ENV) or DEFAULT_DATA)


def cache_root() -> Path:
    """``<cache>/sst2``: fine-tuned models and cached features (outside the repository)."""
    from tl_embspace.vocab.corpus import cache_dir

    return cache_dir() / "sst2"


def read_sst2(folder: Path, split: str) -> tuple[list[str], list[int]]:
    """``(sentences, labels)`` of ``folder/sst2/{split}.tsv``; exits with a message if absent."""
    path = folder / "sst2" / f"{split}.tsv"
    if not path.is_file():
        raise SystemExit(
            f"error: {path} not found; pass --data or set TL_EMBSPACE_DATA to the folder holding "
            "sst2/ (train.tsv, test.tsv: sentence<TAB>label with a header)"
        )
    sentences, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        text, _, label = line.rpartition("\t")
        if text.strip():
            sentences.append(text.strip())
            labels.append(int(label))
    return sentences, labels


def sample(
    sentences: list[str], labels: list[int], n: int, seed: int, min_words: int = 0
) -> tuple[list[str], list[int]]:
    """``n`` rows drawn without replacement (seeded), keeping sentences of ``min_words`` or more."""
    rows = [i for i, s in enumerate(sentences) if len(s.split()) >= min_words]
    chosen = random.Random(seed).sample(rows, min(n, len(rows)))
    return [sentences[i] for i in chosen], [labels[i] for i in chosen]


def load_base(name: str) -> tuple[Any, Any]:
    """``(hf_model, tokenizer)``: a zoo name (SmolLM2) or a saved HF causal-LM folder."""
    if Path(name).is_dir():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=torch.float32, attn_implementation="eager", local_files_only=True
        )
        return model.eval(), AutoTokenizer.from_pretrained(name, local_files_only=True)
    from tl_embspace import zoo

    return zoo.load_hf(name)


def ensure_pad(tokenizer: Any) -> Any:
    """Right padding with a pad token (the EOS token when the tokenizer has none)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def batches(
    tokenizer: Any, sentences: list[str], batch_size: int, max_len: int
) -> list[tuple[list[int], Tensor, Tensor]]:
    """Length-sorted batches ``(row indices, input_ids, attention_mask)`` (little padding)."""
    ensure_pad(tokenizer)
    lengths = [len(tokenizer(s)["input_ids"]) for s in sentences]
    order = sorted(range(len(sentences)), key=lambda i: lengths[i])
    out = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        enc = tokenizer(
            [sentences[i] for i in rows],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_len,
        )
        out.append((rows, enc["input_ids"], enc["attention_mask"]))
    return out


@torch.no_grad()
def hidden_batches(
    hf_model: Any, batched: list[tuple[list[int], Tensor, Tensor]], layer: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Per batch, the frozen model's residual stream entering block ``layer`` and its final output.

    ``layer == n_layers`` gives the final-normed output. Yields ``(resid [batch, seq, d_model],
    mean-pooled final-normed output [batch, d_model])``; prints progress every 20 batches.
    """
    for b, (_, ids, mask) in enumerate(batched):
        out = hf_model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        if b % 20 == 0:
            print(f"  batch {b + 1}/{len(batched)}", flush=True)
        yield out.hidden_states[layer].float(), mean_pool(out.hidden_states[-1].float(), mask)


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The mean of ``hidden [b, s, d]`` over each row's real tokens (``mask [b, s]``)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
