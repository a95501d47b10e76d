"""The atlas: the output folder of a whole-model run, and the one owner of its format.

``schema`` defines the format (ids, file names, fields), ``writer`` is the only code that writes
it (atomically, never over a user's files) and ``reader`` the only code that parses it::

    atlas = Atlas.open("embspace-out")
    atlas.layer(3).vectors["ff_value"].top_ids      # [d_mlp, k] token ids
    atlas.matches(model)                            # computed with this model's unembedding?
"""

from .reader import Atlas, AtlasLayer, CopyingScores, PairTable, TokenPair, VectorTable
from .schema import FORMAT, READABLE_FORMATS, unembedding_hash
from .search import Hit, SearchIndex, build_index
from .writer import AtlasWriter, check_output_folder, replace_derived

__all__ = [
    "Atlas",
    "AtlasLayer",
    "AtlasWriter",
    "CopyingScores",
    "FORMAT",
    "Hit",
    "PairTable",
    "READABLE_FORMATS",
    "SearchIndex",
    "TokenPair",
    "VectorTable",
    "build_index",
    "check_output_folder",
    "replace_derived",
    "unembedding_hash",
]
