"""Shared by the subcommands that print results: plain tables for people, JSON for machines."""

import json
import sys
from collections.abc import Sequence
from typing import Any

from ..tokens import visible


def print_json(data: Any) -> None:
    """One JSON document on stdout (tokens as their display strings, non-ASCII kept)."""
    json.dump(data, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; numbers right-aligned, 4 significant digits.

    Every cell goes through ``visible`` so a token made of whitespace or control characters
    can neither vanish nor break the table.
    """
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    numeric = [
        bool(rows) and all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(header))
    ]
    print(
        "  ".join(
            f"{h:>{w}}" if n else f"{h:<{w}}"
            for h, w, n in zip(header, widths, numeric, strict=True)
        ).rstrip()
    )
    for row in cells:
        print(
            "  ".join(
                f"{c:>{w}}" if n else f"{c:<{w}}"
                for c, w, n in zip(row, widths, numeric, strict=True)
            ).rstrip()
        )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return value if isinstance(value, str) and value.isprintable() else visible(str(value))
