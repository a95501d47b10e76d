"""The atlas format, defined once: format ids, file names, manifest fields and array names.

An atlas is a folder::

    manifest.json     format id, provenance, model spec, options, copying scores, timings,
                      unembedding hash, and the list of every file in the folder
    vocab.json        display string of every token id (whitespace made visible)
    L{layer:02d}.npz  per vector interpreter ``{name}.top_ids/top_scores/bottom_ids/bottom_scores``
                      ([n, k] arrays: int32 ids, float32 scores) and ``{name}.extra.{key}`` columns
    L{layer:02d}.json per vector interpreter its row labels, side, basis and note; the QK/OV
                      token pairs of every head (small, so stored whole)

and files derived from those, which may be missing and may be (re)built at any time from the
data above (they are not listed in the manifest's ``files``)::

    index.html        the HTML atlas's first page (see ``tl_embspace.report``)
    html/             its assets: style, script, one script of data per layer
    index.sqlite      the search index (see ``tl_embspace.atlas.search``)

Format history: ``tl_embspace.job/1`` (written by the job before this module existed) is the
same layout without ``unembedding_hash``; ``tl_embspace.atlas/2`` adds it. Both are read.
"""

import hashlib

import numpy as np
import torch
from torch import Tensor

FORMAT = "tl_embspace.atlas/2"
#: Every format the reader understands (and that ``overwrite=True`` may replace), newest first.
READABLE_FORMATS = (FORMAT, "tl_embspace.job/1")

MANIFEST = "manifest.json"
VOCAB = "vocab.json"
REPORT = "index.html"
REPORT_ASSETS = "html"
SEARCH_INDEX = "index.sqlite"
#: Files derived from the atlas's data: optional, rebuildable, not in the manifest's ``files``.
DERIVED = (REPORT, REPORT_ASSETS, SEARCH_INDEX)

#: Manifest fields every readable atlas has; ``FORMAT`` adds ``UNEMBEDDING_HASH``.
MANIFEST_FIELDS = (
    "format",
    "provenance",
    "spec",
    "options",
    "copying_scores",
    "timings_s",
    "files",
)
UNEMBEDDING_HASH = "unembedding_hash"

#: The four ``[n, k]`` arrays of every vector interpreter, and their dtypes on disk.
VECTOR_ARRAYS = {
    "top_ids": np.int32,
    "top_scores": np.float32,
    "bottom_ids": np.int32,
    "bottom_scores": np.float32,
}
EXTRA = "extra"

COPYING_DEFINITION = (
    "fraction of sampled tokens t whose top promoted token under the head's OV circuit is t"
)


def layer_arrays_file(layer: int) -> str:
    """Name of a layer's array file, e.g. ``L03.npz``."""
    return f"L{layer:02d}.npz"


def layer_meta_file(layer: int) -> str:
    """Name of a layer's JSON file (labels, notes, token pairs), e.g. ``L03.json``."""
    return f"L{layer:02d}.json"


def array_name(interpreter: str, field: str) -> str:
    """Key of one of ``VECTOR_ARRAYS`` in a layer's npz, e.g. ``ff_value.top_ids``."""
    return f"{interpreter}.{field}"


def extra_name(interpreter: str, key: str) -> str:
    """Key of an extra column in a layer's npz, e.g. ``svd_ov.extra.singular_value``."""
    return f"{interpreter}.{EXTRA}.{key}"


def is_plain_file_name(name: str) -> bool:
    """True for a name the manifest may list: no folder part, not hidden, not ``..``."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def unembedding_hash(matrix: Tensor, bias: Tensor | None = None) -> str:
    """``"sha256:<hex>"`` of the write basis: shape, then float32 bytes of matrix and bias.

    The hash identifies the unembedding the scores were computed with (after folding, when the
    atlas was written from folded weights), so an atlas can be matched to weights later (compare
    tuned-lens ``Unembed.unembedding_hash``). Bytes are C-order, native float32.
    """
    h = hashlib.sha256()
    h.update(f"{tuple(matrix.shape)}".encode())
    h.update(matrix.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    if bias is not None:
        h.update(b"bias")
        h.update(bias.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return "sha256:" + h.hexdigest()
