"""``tl-embspace atlas``: re-render the HTML atlas (and, on request, the search index) of a folder.

For an atlas written by an older version, after changing the page's sections, or to show
results kept in other folders (``--compare``: what ``tl-embspace compare --out`` wrote;
``--align``: what ``tl-embspace align --out`` wrote) in sections of the first page: the data
files are read, never written; only ``index.html`` and ``html/`` (and ``index.sqlite`` with
``--index``) are replaced, each atomically. A re-render without ``--compare``/``--align`` drops
their sections.
"""

import argparse
from pathlib import Path

from ..atlas import Atlas, build_index


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``atlas`` and its options."""
    p = subparsers.add_parser(
        "atlas",
        help="re-render the HTML atlas of an atlas folder",
        description="Re-render index.html and html/ of an atlas folder from its data files "
        "(which are left untouched); with --index also rebuild its search index.",
    )
    p.add_argument("folder", type=Path, help="atlas folder written by `tl-embspace run`")
    p.add_argument("--index", action="store_true", help="also rebuild index.sqlite")
    p.add_argument(
        "--compare",
        type=Path,
        metavar="DIR",
        help="show the agreement figures in DIR (agreement.json of `tl-embspace compare --out`)",
    )
    p.add_argument(
        "--align",
        type=Path,
        metavar="DIR",
        help="show the alignment in DIR ({embedding,raw}.json of `tl-embspace align --out`)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Open the atlas (refusing what is not one), re-render, report where."""
    from ..report import Attached, rerender

    atlas = Atlas.open(args.folder)
    attached = Attached.load(compare=args.compare, align=args.align)  # checked before writing
    page = rerender(atlas, attached=attached)
    print(f"wrote {page}")
    if args.index:
        print(f"wrote {build_index(atlas)}")
    return 0
