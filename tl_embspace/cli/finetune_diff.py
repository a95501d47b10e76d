"""``tl-embspace finetune-diff BASE TUNED``: what fine-tuning moved, read in embedding space.

A thin shell over :func:`tl_embspace.apps.finetune_diff`. BASE and TUNED each name a model the
way :func:`tl_embspace.zoo.load` does: an offline zoo name (``smollm2-135m-instruct``), a hub id
TransformerLens can load (from the local Hugging Face cache when offline), or a local folder
written by ``save_pretrained`` (config, weights and tokenizer: what ``demos/finetune_sst2.py``
saves), loaded with ``TransformerBridge.boot_transformers``. Writes into ``--out``:

* ``finetune_diff.json``: every parameter's relative Frobenius change (most moved first), the
  readings of the changed layers (top and bottom tokens of the deltas) and the provenance;
* ``finetune_diff.png`` (when matplotlib is installed): the most-moved parameters, and the
  largest relative change per layer.

Existing files are replaced only with ``--overwrite``.
"""

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .. import zoo
from ..errors import InvalidArgumentError
from ..space import BASIS_NAMES
from ._output import print_table
from ._plot import pyplot, refuse_existing
from .align import WEIGHTS, _view
from .run import layer_index, positive_int

FILES = ("finetune_diff.json", "finetune_diff.png")


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``finetune-diff`` and its options."""
    p = subparsers.add_parser(
        "finetune-diff",
        help="rank the parameters a fine-tune moved and read their deltas in embedding space",
        description="Dar et al. §5: each parameter's relative change ‖tuned − base‖/‖base‖, and "
        "the deltas of the changed layers read with the base model's bases. BASE and TUNED: an "
        "offline zoo name, a hub id, or a save_pretrained folder (model, config, tokenizer).",
    )
    d = " (default: %(default)s)"
    p.add_argument("base", help="the base model: zoo name, hub id or save_pretrained folder")
    p.add_argument("tuned", help="the fine-tuned model, same architecture (same kinds of names)")
    p.add_argument("--backend", default="bridge", choices=zoo.BACKENDS, help="backend" + d)
    p.add_argument(
        "--weights",
        default="auto",
        choices=WEIGHTS,
        help="raw, norms folded in, or auto (folded for pre-norm models)" + d,
    )
    p.add_argument("--read", default="W_E", choices=BASIS_NAMES, help="read-side basis" + d)
    p.add_argument("--write", default="W_U", choices=BASIS_NAMES, help="write-side basis" + d)
    p.add_argument(
        "--layers", type=layer_index, nargs="+", metavar="LAYER", help="default: changed"
    )
    p.add_argument("--top-n", type=positive_int, default=5, help="deltas read per group" + d)
    p.add_argument("--components", type=positive_int, default=3, help="SVD directions" + d)
    p.add_argument("--k", type=positive_int, default=20, help="top/bottom tokens kept" + d)
    p.add_argument("--show", type=positive_int, default=10, help="parameters printed" + d)
    p.add_argument("--out", type=Path, default=Path("finetune-diff-out"), help="output folder" + d)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def check_model_name(name: str) -> None:
    """Refuse at once (before any slow load) a path-like name that is not a folder."""
    path = Path(name).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidArgumentError(
            f"{name} is a file; pass a zoo name, a hub id or a save_pretrained folder"
        )
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path and not path.exists():
        raise InvalidArgumentError(
            f"folder {name} does not exist; pass a zoo name ({', '.join(zoo.available())}), a "
            "hub id or a save_pretrained folder"
        )


def load_model(name: str, backend: str) -> Any:
    """:func:`zoo.load` of a zoo name, hub id or ``save_pretrained`` folder (``~`` expanded)."""
    check_model_name(name)
    path = Path(name).expanduser()
    return zoo.load(str(path) if path.is_dir() else name, backend)


def plot(changes: list[dict[str, Any]], n_layers: int, path: Path, top: int = 25) -> bool:
    """Bar charts: the ``top`` most-moved parameters, and the largest change per layer."""
    plt = pyplot()
    if plt is None:
        return False
    finite = [c for c in changes if c["relative"] is not None and math.isfinite(c["relative"])]
    shown = [c for c in finite if c["relative"] > 0][:top]
    per_layer = [0.0] * n_layers
    for c in finite:
        if c["layer"] is not None:
            per_layer[c["layer"]] = max(per_layer[c["layer"]], c["relative"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.22 * len(shown) + 1)))
    ax1.barh([c["name"] for c in shown][::-1], [c["relative"] for c in shown][::-1])
    ax1.set_xlabel("relative change ‖Δ‖/‖base‖")
    ax1.set_title("most-moved parameters", fontsize=9)
    ax1.tick_params(axis="y", labelsize=7)
    ax2.bar(range(n_layers), per_layer)
    ax2.set_xlabel("layer")
    ax2.set_ylabel("largest relative change")
    ax2.set_title("per layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(args: argparse.Namespace) -> int:
    """Load both models, compute the diff, write the files, print the most-moved parameters."""
    from ..apps import finetune_diff
    from ..apps.finetune import _finite
    from ..space import EmbeddingSpace

    targets = [args.out / f for f in FILES]
    refuse_existing(targets, args.overwrite)
    if args.out.exists() and not args.out.is_dir():
        raise InvalidArgumentError(f"--out {args.out} is a file, not a folder")
    for name in (args.base, args.tuned):
        check_model_name(name)
    base = load_model(args.base, args.backend)
    tuned = load_model(args.tuned, args.backend)
    view_base, view_tuned = _view(base, args.weights), _view(tuned, args.weights)
    space = EmbeddingSpace(view_base, read=args.read, write=args.write)
    diff = finetune_diff(
        view_tuned,
        space,
        layers=args.layers,
        top_n=args.top_n,
        components=args.components,
        k=args.k,
    )
    data = _finite(diff.to_dict(args.k))
    data["provenance"] = {
        **data["provenance"],
        "base_name": args.base,
        "tuned_name": args.tuned,
        "backend": args.backend,
        "weights_option": args.weights,
        "n_changed": len(diff.changed()),
        "n_parameters": len(diff.changes),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune_diff.json").write_text(
        json.dumps(data, ensure_ascii=False, allow_nan=False), encoding="utf-8"
    )
    rows = [(c.name, c.relative, c.delta_norm, c.base_norm) for c in diff.changes[: args.show]]
    print(f"{len(diff.changed())} of {len(diff.changes)} parameters changed")
    print_table(("parameter", "relative", "‖Δ‖", "‖base‖"), rows)
    png = plot(data["changes"], view_base.spec.n_layers, targets[1])
    if not png:
        targets[1].unlink(missing_ok=True)  # an earlier run's plot (only with --overwrite)
    written = [str(t) for t in targets if t.exists()]
    note = "" if png else " (no plot: matplotlib not installed)"
    print(f"wrote {', '.join(written)}{note}")
    return 0
