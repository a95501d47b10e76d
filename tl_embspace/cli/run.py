"""``tl-embspace run``: interpret every parameter of a model into an output folder.

A thin shell over :func:`tl_embspace.job.interpret_model`. What argparse can check (positive
counts, known bases, no repeated layer) is checked while parsing; what needs the model (whether
each layer exists) is checked right after loading it, before any work.
"""

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from .. import zoo
from .._linalg import torch_threads
from ..errors import InvalidArgumentError
from ..space import BASIS_NAMES

DEFAULT_MODEL = "smollm2-135m-instruct"
WEIGHTS = ("auto", "raw", "folded")
# The job scores token pairs and copying scores, which need linear bases: "readout" (final
# norm, then W_U and b_U) is not one, so it is not offered here.
JOB_BASES = tuple(name for name in BASIS_NAMES if name != "readout")


def model_name(text: str) -> str:
    """Argparse type: a non-empty model name."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a model name, got an empty string")
    return text


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def layer_index(text: str) -> int:
    """Argparse type: a layer number, counted from 0 (no negative indexing)."""
    return _int_at_least(text, 0, "a layer number (0 or more)")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


class _DistinctLayers(argparse.Action):
    """Stores the layers, refusing one given twice (it would be interpreted twice)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        layers: list[int] = list(values) if isinstance(values, list) else []
        repeated = sorted({layer for layer in layers if layers.count(layer) > 1})
        if repeated:
            parser.error(f"{option_string}: layer(s) {repeated} given more than once")
        setattr(namespace, self.dest, layers)


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``run`` and its options."""
    p = subparsers.add_parser(
        "run",
        help="interpret every parameter of a model into a folder",
        description="Interpret every parameter of a model into a folder (open its index.html).",
    )
    default = " (default: %(default)s)"
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        type=model_name,
        help="offline zoo name (see `tl-embspace zoo`) or TransformerLens model name" + default,
    )
    p.add_argument(
        "--backend",
        default="bridge",
        choices=zoo.BACKENDS,
        help="TransformerBridge, or HookedTransformer/HookedEncoder (TransformerLens 3)" + default,
    )
    p.add_argument("--out", default="embspace-out", type=Path, help="output folder" + default)
    p.add_argument("--overwrite", action="store_true", help="replace the output folder")
    p.add_argument(
        "--layers",
        type=layer_index,
        nargs="+",
        action=_DistinctLayers,
        metavar="LAYER",
        help="only these layers, counted from 0 (default: all)",
    )
    p.add_argument(
        "--k",
        type=positive_int,
        default=20,
        help="tokens kept per vector, top and bottom" + default,
    )
    p.add_argument(
        "--pair-k",
        type=positive_int,
        default=50,
        help="token pairs kept per head, top and bottom" + default,
    )
    p.add_argument(
        "--svd-components",
        type=positive_int,
        default=8,
        help="singular directions kept per head circuit and MLP matrix" + default,
    )
    p.add_argument(
        "--copying-tokens",
        type=positive_int,
        default=2048,
        help="tokens sampled for each OV head's copying score" + default,
    )
    p.add_argument(
        "--weights",
        default="auto",
        choices=WEIGHTS,
        help="raw weights, norms folded in, or auto: folded for pre-norm models, raw for "
        "post-norm encoders" + default,
    )
    p.add_argument("--read", default="W_E", choices=JOB_BASES, help="read-side basis" + default)
    p.add_argument("--write", default="W_U", choices=JOB_BASES, help="write-side basis" + default)
    p.add_argument(
        "--vocab",
        default="hygiene",
        choices=("hygiene", "raw"),
        help="hygiene: leave out special, unreachable, illegible, under-trained and fragment "
        "tokens and standardise scores; raw: every token, raw scores (the paper's view)" + default,
    )
    p.add_argument(
        "--corpus",
        type=Path,
        help="with --vocab hygiene, keep only tokens seen in this text file (counts cached)",
    )
    p.add_argument(
        "--min-count",
        type=positive_int,
        default=1,
        help="occurrences in --corpus a token needs" + default,
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads for the run (default: torch's own, one per core); on a machine "
        "busy with other jobs give the free cores: more threads than free cores make the job "
        "several times slower",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--no-index",
        action="store_true",
        help="do not write the search index index.sqlite (build it later with "
        "`tl-embspace atlas OUT --index`)",
    )
    return p


def _terminated(signum: int, frame: object) -> None:
    # Raised where the job is, so the atlas writer's cleanup runs as for Ctrl-C.
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def run(args: argparse.Namespace) -> int:
    """Load the model, check the layers against it, and write the results.

    SIGTERM is handled like Ctrl-C while it runs: the partial output is removed and any
    previous atlas is left as it was.
    """
    if threading.current_thread() is not threading.main_thread():
        return _run(args)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from ..adapters import adapt
    from ..atlas import check_output_folder

    # The job checks it too; checked here first so that a refusal (an existing folder without
    # --overwrite, or one that is not an atlas) comes before the slow model load.
    check_output_folder(args.out, overwrite=args.overwrite)
    if args.corpus is not None and (args.vocab == "raw" or not args.corpus.is_file()):
        raise InvalidArgumentError(
            f"--corpus {args.corpus}: "
            + ("needs --vocab hygiene" if args.vocab == "raw" else "no such file")
        )
    model = zoo.load(args.model, args.backend)
    if args.layers is not None:
        n_layers = adapt(model).spec.n_layers
        missing = [layer for layer in args.layers if layer >= n_layers]
        if missing:
            raise InvalidArgumentError(
                f"--layers {' '.join(map(str, missing))}: {args.model} has {n_layers} layers, "
                f"numbered 0 to {n_layers - 1}"
            )
    corpus = None
    if args.corpus is not None:
        from ..vocab import count_tokens

        corpus = count_tokens(model.tokenizer, args.corpus)
    with torch_threads(args.threads):
        out = _interpret(model, args, corpus)
    print(f"wrote {out} (open {out / 'index.html'})")
    return 0


def _interpret(model: Any, args: argparse.Namespace, corpus: Any) -> Path:
    from ..job import interpret_model

    return interpret_model(
        model,
        args.out,
        k=args.k,
        pair_k=args.pair_k,
        svd_components=args.svd_components,
        copying_tokens=args.copying_tokens,
        layers=args.layers,
        weights=args.weights,
        read=args.read,
        write=args.write,
        vocab=args.vocab,
        corpus=corpus,
        min_count=args.min_count,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        search_index=not args.no_index,
    )
