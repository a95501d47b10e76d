"""``tl-embspace merge``: join atlases of one run over disjoint layers (process-level shards).

A thin shell over :func:`tl_embspace.job.merge_atlases`: run ``tl-embspace run --layers ...``
once per shard (on as many processes or machines as you like), then merge the folders.
"""

import argparse
from pathlib import Path


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``merge`` and its options."""
    p = subparsers.add_parser(
        "merge",
        help="merge atlases of one run over disjoint layers (shards) into one atlas",
        description="Merge atlas folders written by `tl-embspace run --layers ...` with the same "
        "model and options into one atlas, identical to a single run over all their layers.",
    )
    p.add_argument("out", type=Path, help="the merged atlas's folder")
    p.add_argument("shards", type=Path, nargs="+", help="the shard folders")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder")
    p.add_argument("--no-index", action="store_true", help="do not write index.sqlite")
    return p


def run(args: argparse.Namespace) -> int:
    """Merge the shards, report where."""
    from ..job import merge_atlases

    out = merge_atlases(
        args.out, args.shards, overwrite=args.overwrite, search_index=not args.no_index
    )
    print(f"wrote {out} (open {out / 'index.html'})")
    return 0
