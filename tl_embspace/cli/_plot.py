"""matplotlib for the subcommands' plots, when it is installed (it is an optional extra)."""

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or None when not installed."""
    try:
        import matplotlib  # type: ignore[import-not-found]  # optional

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return None
    return plt


def refuse_existing(paths: list[Any], overwrite: bool) -> None:
    """Raise OutputFolderError when any of ``paths`` exists and ``overwrite`` is off."""
    from ..errors import OutputFolderError

    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise OutputFolderError(
            f"{', '.join(existing)} already exist; pass --overwrite to replace them, or choose "
            "another --out"
        )
