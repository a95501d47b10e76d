"""Command line: ``tl-embspace COMMAND ...`` or ``python -m tl_embspace COMMAND ...``.

A thin shell: each subcommand is one module with an ``add_parser(subparsers)`` that declares its
arguments and a ``run(args) -> int`` that does the work. Adding a subcommand is one module plus
one entry in :data:`SUBCOMMANDS`. :func:`main` takes ``argv`` and returns the exit code, so it can
be tested in-process.
"""

import argparse
import sys

from .. import __version__
from ..errors import EmbSpaceError
from . import align, atlas, compare, finetune_diff, merge, run, search, show, translate, zoo

SUBCOMMANDS = (run, merge, show, search, atlas, compare, align, finetune_diff, translate, zoo)


def build_parser() -> argparse.ArgumentParser:
    """The ``tl-embspace`` parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="tl-embspace",
        description="Read every parameter of a transformer in embedding space.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers).set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 2 on a usage error (argparse prints it) or when the library
        refuses the input (printed as one ``error: ...`` line on stderr), 130 when interrupted
        (Ctrl-C, or SIGTERM during ``run``).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has already printed
        return exit_.code if isinstance(exit_.code, int) else 0
    try:
        return args.handler(args)
    except EmbSpaceError as error:
        print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM during `run`: outputs were left as they were
        print("error: interrupted; no output was written or changed", file=sys.stderr)
        return 130
