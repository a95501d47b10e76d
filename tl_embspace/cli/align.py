"""``tl-embspace align A B``: match the layers, heads and neurons of two models (``apps.align``).

Writes ``{space}.json`` (similarity matrices, matches, score, provenance), ``{space}.svg``
(heatmap, no plotting library needed) and, when matplotlib is installed, ``{space}.png`` (the
same heatmap) into ``--out`` for each space asked for. ``--shuffle-b SEED`` aligns A with a shuffled
copy of B, the known answer: the score then counts layers, heads and neurons put back in place.
Existing files are never replaced without ``--overwrite``.
"""

import argparse
import json
from pathlib import Path
from typing import Any

from .. import zoo
from ..errors import OutputFolderError
from ..space import BASIS_NAMES

WEIGHTS = ("auto", "raw", "folded")


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``align`` and its options."""
    from ..apps import AGGREGATES, GROUPS

    p = subparsers.add_parser(
        "align",
        help="match the layers, heads and neurons of two models sharing a vocabulary",
        description="Align two models in embedding space (and raw space, the baseline).",
    )
    default = " (default: %(default)s)"
    p.add_argument("model_a", help="offline zoo name or TransformerLens model name")
    p.add_argument("model_b", help="the other model (the same name for a model with itself)")
    p.add_argument("--backend", default="bridge", choices=zoo.BACKENDS, help="backend" + default)
    p.add_argument("--out", default=Path("align-out"), type=Path, help="output folder" + default)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--space",
        default="both",
        choices=("embedding", "raw", "both"),
        help="embedding space, raw coordinates (the baseline), or both" + default,
    )
    p.add_argument("--aggregate", default="mean_abs", choices=AGGREGATES, help="per layer pair")
    p.add_argument("--groups", nargs="+", choices=GROUPS, help="parameter groups (default: all)")
    p.add_argument(
        "--shared-tokens",
        action="store_true",
        help="allow different vocabularies: use the tokens both share by decoded text",
    )
    p.add_argument(
        "--shuffle-b",
        type=int,
        metavar="SEED",
        help="align A with a copy of B whose layers, heads and neurons are shuffled (known answer)",
    )
    p.add_argument(
        "--weights",
        default="auto",
        choices=WEIGHTS,
        help="raw, norms folded in, or auto (folded for pre-norm models)" + default,
    )
    p.add_argument("--read", default="W_E", choices=BASIS_NAMES, help="read-side basis" + default)
    p.add_argument("--write", default="W_U", choices=BASIS_NAMES, help="write-side basis" + default)
    return p


def _view(model: Any, weights: str) -> Any:
    from ..adapters import adapt

    view = adapt(model)
    if weights == "folded" or (weights == "auto" and view.spec.norm_placement == "pre"):
        return view.folded()
    return view


def heatmap_png(result: Any, path: Path) -> bool:
    """The combined similarity matrix as a PNG heatmap, matched cells marked (needs matplotlib).

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    from ._plot import pyplot

    plt = pyplot()
    if plt is None:
        return False
    sim = result.similarity["combined"]
    n_a, n_b = sim.shape
    matched = [(i, j) for i, j in enumerate(result.layer_match) if j is not None]
    fig, ax = plt.subplots(figsize=(2 + 0.18 * n_b, 1.5 + 0.18 * n_a))
    image = ax.imshow(sim, cmap="Greys", aspect="auto")
    ax.scatter(
        [j for _, j in matched],
        [i for i, _ in matched],
        marker="s",
        s=30,
        facecolors="none",
        edgecolors="red",
        linewidths=1,
    )
    ax.set_xlabel("layer of B")
    ax.set_ylabel("layer of A")
    ax.set_title(f"{result.space} space, combined ({result.aggregate}); red: matching", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(args: argparse.Namespace) -> int:
    """Load both models, align them in each space asked for, and write JSON and SVG files."""
    from ..adapters import PermutedView
    from ..apps import align
    from ..space import EmbeddingSpace

    spaces = ["embedding", "raw"] if args.space == "both" else [args.space]
    targets = [args.out / f"{space}.{ext}" for space in spaces for ext in ("json", "svg", "png")]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise OutputFolderError(
            f"{', '.join(existing)} already exist; pass --overwrite to replace them, or choose "
            "another --out"
        )
    model_a = zoo.load(args.model_a, args.backend)
    model_b = model_a if args.model_b == args.model_a else zoo.load(args.model_b, args.backend)
    view_a, view_b = _view(model_a, args.weights), _view(model_b, args.weights)
    expected: dict[str, Any] = {}
    if args.shuffle_b is not None:
        view_b = PermutedView.shuffled(view_b, args.shuffle_b)
        layers, heads, neurons = view_b.expected_matches()
        expected = dict(expected_layers=layers, expected_heads=heads, expected_neurons=neurons)
    space_a = EmbeddingSpace(view_a, read=args.read, write=args.write)
    space_b = EmbeddingSpace(view_b, read=args.read, write=args.write)
    args.out.mkdir(parents=True, exist_ok=True)
    for space in spaces:
        result = align(
            space_a,
            space_b,
            space=space,
            groups=args.groups,
            aggregate=args.aggregate,
            shared_tokens=args.shared_tokens,
        )
        n_a, n_b = result.similarity["combined"].shape
        score = result.score(**expected) if expected or n_a == n_b else None
        data = {**result.to_dict(), "score": score, "shuffle_b_seed": args.shuffle_b}
        (args.out / f"{space}.json").write_text(json.dumps(data))
        (args.out / f"{space}.svg").write_text(result.heatmap_svg())
        if not heatmap_png(result, args.out / f"{space}.png"):
            (args.out / f"{space}.png").unlink(missing_ok=True)  # stale (only with --overwrite)
        if score is not None:
            combined = score["layers"]["combined"]
            line = (
                f"{space}: layers matched {combined['fraction_matched']:.3f}, "
                f"mean rank {combined['mean_rank']:.2f}"
            )
            for part in ("heads", "neurons"):
                if part in score:
                    line += f"; {part} {score[part]:.3f}"
            print(line)
    print(f"wrote {', '.join(str(t) for t in targets if t.exists())}")
    return 0
