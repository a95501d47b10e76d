"""Results kept beside an atlas, and the first-page sections that show them.

The atlas folder holds what the job wrote; other commands write their own folders
(``tl-embspace compare --out DIR``: ``agreement.json``; ``tl-embspace align --out DIR``:
``embedding.json`` and/or ``raw.json``). :class:`Attached` reads those files (never the result
classes: ``report`` sits below ``compare`` and ``apps``), and ``report.sections`` renders them::

    attached = Attached.load(compare="agreement-out", align="align-out")
    rerender("embspace-out", attached=attached)  # tl-embspace atlas OUT --compare C --align A

The sections live in ``sections``; the vocabulary-hygiene one reads the atlas's own manifest.
"""

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

AGREEMENT_FILE = "agreement.json"
ALIGN_SPACES = ("embedding", "raw")


@dataclass(frozen=True)
class Attached:
    """Results from outside the atlas that its first page shows.

    Attributes:
        agreement: The content of ``agreement.json`` (``tl-embspace compare``), or None.
        alignments: Per space (``"embedding"``, ``"raw"``), the content of ``{space}.json``
            (``tl-embspace align``).
        sources: The files read, for the page's notes.
    """

    agreement: dict[str, Any] | None = None
    alignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    @classmethod
    def load(
        cls,
        compare: "str | os.PathLike[str] | None" = None,
        align: "str | os.PathLike[str] | None" = None,
    ) -> "Attached":
        """Read a ``compare`` output folder (or its ``agreement.json``) and an ``align`` one.

        Raises:
            InvalidArgumentError: A folder lacks the files, or a file is not such a result.
        """
        agreement, alignments, sources = None, {}, []
        if compare is not None:
            path = Path(compare)
            path = path / AGREEMENT_FILE if path.is_dir() else path
            agreement = _read(path, ("provenance", "rows"), "tl-embspace compare --out DIR")
            sources.append(str(path))
        if align is not None:
            folder = Path(align)
            paths = [folder / f"{space}.json" for space in ALIGN_SPACES]
            if not any(p.is_file() for p in paths):
                raise InvalidArgumentError(
                    f"{folder} holds neither embedding.json nor raw.json; pass the folder "
                    "`tl-embspace align --out DIR` wrote"
                )
            for space, path in zip(ALIGN_SPACES, paths, strict=True):
                if path.is_file():
                    keys = ("space", "similarity", "layer_match", "aggregate")
                    alignments[space] = _read(path, keys, "tl-embspace align --out DIR")
                    sources.append(str(path))
        return cls(agreement, alignments, tuple(sources))


def _read(path: Path, keys: Sequence[str], writer: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"cannot read {path}: {e}; pass a file {writer} wrote") from e
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise InvalidArgumentError(f"{path} lacks {missing}: it is not a file {writer} wrote")
    return data


__all__ = ["ALIGN_SPACES", "AGREEMENT_FILE", "Attached"]
