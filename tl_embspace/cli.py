"""Command line: ``python -m tl_embspace run [--model NAME] [--out DIR] ...``.

A thin shell over ``tl_embspace.job.interpret_model``; ``main(argv) -> int`` for in-process tests.
"""

import argparse
import sys

DEFAULT_MODEL = "smollm2-135m-instruct"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tl-embspace", description="Read every parameter of a transformer in embedding space.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="interpret every parameter of a model into a folder")
    run.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo name or TransformerLens model name (default {DEFAULT_MODEL})")
    run.add_argument("--backend", default="bridge", choices=["bridge", "hooked"])
    run.add_argument("--out", default="embspace-out", help="output folder (must not exist unless --overwrite)")
    run.add_argument("--overwrite", action="store_true")
    run.add_argument("--layers", type=int, nargs="*", help="only these layers (default all)")
    run.add_argument("--k", type=int, default=20, help="tokens kept per vector, top and bottom")
    run.add_argument("--pair-k", type=int, default=50, help="token pairs kept per head, top and bottom")
    run.add_argument("--svd-components", type=int, default=8)
    run.add_argument("--weights", default="auto", choices=["auto", "raw", "folded"],
                     help="auto (default): norms folded in for pre-norm models, raw for post-norm encoders")
    run.add_argument("--read", default="W_E", help="read-side basis: W_E, W_U, pinv, pinv_W_E")
    run.add_argument("--write", default="W_U", help="write-side basis: W_U, W_E, pinv, readout")
    run.add_argument("--no-progress", action="store_true")
    sub.add_parser("zoo", help="list the offline models")
    return p


def main(argv: "list[str] | None" = None) -> int:
    args = build_parser().parse_args(argv)
    from . import zoo

    if args.command == "zoo":
        for name in zoo.available():
            print(name)
        return 0
    from .errors import EmbSpaceError
    from .job import interpret_model

    try:
        model = zoo.load(args.model, args.backend)
        out = interpret_model(
            model, args.out, k=args.k, pair_k=args.pair_k, svd_components=args.svd_components,
            layers=args.layers, weights=args.weights, read=args.read, write=args.write,
            overwrite=args.overwrite, progress=not args.no_progress,
        )
    except (EmbSpaceError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (open {out / 'index.html'})")
    return 0
