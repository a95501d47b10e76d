"""``tl-embspace search``: which parameters promote a token, which heads copy (from index.sqlite).

Reads the atlas's search index (built with the atlas, or now if it has none): answers come from
SQLite in milliseconds, whatever the model size.
"""

import argparse
import sys
import time
from pathlib import Path

from ..atlas import SearchIndex
from ..errors import InvalidArgumentError
from ._output import print_json, print_table
from .run import layer_index, positive_int


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``search`` and its options."""
    p = subparsers.add_parser(
        "search",
        help="which parameters promote (or suppress) a token; which heads copy",
        description="Search an atlas's index: the vectors whose top (or, with --suppress, "
        "bottom) tokens include TOKEN, strongest first; with --pairs the heads' QK/OV token "
        "pairs that involve it; with --copying the OV heads by copying score. TOKEN is the "
        "token's text (' Paris', with its leading space) or its display form ('␣Paris').",
        epilog="examples: tl-embspace search embspace-out ' Paris' --side write; "
        "tl-embspace search embspace-out --copying",
    )
    default = " (default: %(default)s)"
    p.add_argument("atlas", type=Path, help="atlas folder written by `tl-embspace run`")
    p.add_argument("token", nargs="?", help="the token to look for (omit with --copying)")
    p.add_argument(
        "--suppress",
        action="store_true",
        help="search the bottom lists (tokens suppressed / least responded to) instead",
    )
    p.add_argument(
        "--side",
        choices=("read", "write"),
        help="only write-side vectors (they add logits: 'promote') or read-side ones "
        "(default: both)",
    )
    p.add_argument(
        "--kind",
        nargs="+",
        metavar="INTERPRETER",
        help="only these vector kinds, e.g. ff_value o svd_ov (default: all)",
    )
    p.add_argument(
        "--layers", type=layer_index, nargs="+", metavar="LAYER", help="only these layers"
    )
    p.add_argument(
        "--contains",
        action="store_true",
        help="match every token containing TOKEN, case-insensitively (default: exact token)",
    )
    p.add_argument("--pairs", action="store_true", help="search the heads' QK/OV token pairs")
    p.add_argument("--copying", action="store_true", help="list OV heads by copying score")
    p.add_argument(
        "--limit", type=positive_int, default=20, help="at most this many rows" + default
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--timing", action="store_true", help="print the query time on stderr")
    return p


def run(args: argparse.Namespace) -> int:
    """Open (or build) the index, run the one query asked for, print it."""
    if args.copying == (args.token is not None):
        raise InvalidArgumentError("give either a TOKEN or --copying (not both, not neither)")
    with SearchIndex.open(args.atlas) as index:
        t0 = time.perf_counter()
        if args.copying:
            heads = index.copying_heads(limit=args.limit)
            elapsed = time.perf_counter() - t0
            if args.json:
                print_json([h._asdict() for h in heads])
            else:
                print_table(
                    ("head", "copying score"),
                    [(f"L{h.layer}.H{h.head}", h.copying_score) for h in heads],
                )
        elif args.pairs:
            pairs = index.pairs_with(args.token, limit=args.limit, contains=args.contains)
            elapsed = time.perf_counter() - t0
            if args.json:
                print_json([p._asdict() for p in pairs])
            else:
                _say_if_empty(index, args, bool(pairs))
                print_table(
                    ("pair table", "rank", "token i", "token j", "score"),
                    [(p.label, p.rank, p.token_i, p.token_j, p.score) for p in pairs],
                )
        else:
            hits = index.hits(
                args.token,
                polarity=-1 if args.suppress else 1,
                limit=args.limit,
                side=args.side,
                interpreters=args.kind,
                layers=args.layers,
                contains=args.contains,
            )
            elapsed = time.perf_counter() - t0
            if args.json:
                print_json([h._asdict() for h in hits])
            else:
                _say_if_empty(index, args, bool(hits))
                print_table(
                    ("vector", "side", "token", "rank", "score"),
                    [(h.label, h.side, h.token, h.rank, h.score) for h in hits],
                )
    if args.timing:
        print(f"query: {elapsed * 1000:.2f} ms", file=sys.stderr)
    return 0


def _say_if_empty(index: SearchIndex, args: argparse.Namespace, found: bool) -> None:
    """Tell an unknown token (likely a typo, or a missing leading space) from a mere no-hit."""
    if found:
        return
    if not index.token_ids(args.token, contains=args.contains):
        raise InvalidArgumentError(
            f"no token {args.token!r} in this model's vocabulary; words usually start with a "
            "space (' Paris'), or try --contains"
        )
    print(f"no vector has {args.token!r} in its lists")
