"""``tl-embspace compare``: the paper's parameters-vs-activations agreement on a corpus.

A thin shell over :func:`tl_embspace.compare.agreement.agreement`. Writes ``agreement.json``
(every per-layer figure and its provenance), ``agreement.md`` (the tables) and, when matplotlib
is installed, ``agreement.png`` (aligned vs random-position baseline per layer, as the paper's
figures) into ``--out``. Only these three files are written; existing ones are replaced only
with ``--overwrite``. ``--circuits`` adds each head's QK reading vs its observed attention and
OV reading vs its direct logit effect (:mod:`tl_embspace.compare.circuits`) to all three;
``--no-agreement`` leaves the paper's protocol out.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .. import zoo
from ..errors import OutputFolderError
from .run import DEFAULT_MODEL, layer_index, positive_int

FILES = ("agreement.json", "agreement.md", "agreement.png")


def add_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Declare ``compare`` and its options."""
    p = subparsers.add_parser(
        "compare",
        help="score how the weights' tokens agree with the logit lens on a corpus",
        description="Dar et al. (2023) §5: at each position and layer, do the top tokens of the "
        "most active FF neurons / sub-heads overlap the logit lens more than those of a random "
        "other position? Per layer: aligned, baseline, difference with a bootstrap 95%% CI.",
    )
    d = " (default: %(default)s)"
    p.add_argument("--model", default=DEFAULT_MODEL, help="zoo or TransformerLens name" + d)
    p.add_argument("--backend", default="bridge", choices=zoo.BACKENDS, help="backend" + d)
    p.add_argument("--corpus", required=True, help="UTF-8 text file, one text per line")
    p.add_argument("--positions", type=positive_int, default=1000, help="positions scored" + d)
    p.add_argument("--seq-len", type=positive_int, default=128, help="tokens per window" + d)
    p.add_argument("--n", type=positive_int, default=5, help="neurons/sub-heads per position" + d)
    p.add_argument("--k", type=positive_int, default=50, help="tokens per set" + d)
    p.add_argument("--layers", type=layer_index, nargs="+", metavar="LAYER", help="default: all")
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=("ff_key", "ff_gate", "ff_value", "v", "o"),
        help="parameter kinds (default: all the model has)",
    )
    p.add_argument(
        "--references",
        nargs="+",
        choices=("same", "final"),
        default=["same", "final"],
        help="logit-lens layers B is read at: the layer's own output, the final layer's" + d,
    )
    p.add_argument(
        "--variants",
        nargs="+",
        choices=("raw", "centered"),
        default=["raw", "centered"],
        help="raw: the paper's score; centered: lens and parameters minus their means" + d,
    )
    p.add_argument("--lens-basis", default="readout", help="how residuals are read" + d)
    p.add_argument(
        "--weights", choices=("raw", "folded"), default="raw", help="weights projected" + d
    )
    p.add_argument("--read", default="W_U", help="read-side basis (paper: W_U)" + d)
    p.add_argument("--write", default="W_U", help="write-side basis (paper: W_U)" + d)
    p.add_argument(
        "--vocab",
        choices=("raw", "hygiene"),
        default="raw",
        help="raw: every token (the paper's); hygiene: A and B over the tokens the hygiene mask "
        "keeps, parameters scored standardised (see 'Vocabulary hygiene')" + d,
    )
    p.add_argument(
        "--circuits",
        action="store_true",
        help="also compare each head's QK reading with its attention and its OV reading with "
        "its direct logit effect (against shuffled tokens)",
    )
    p.add_argument(
        "--circuit-measures",
        nargs="+",
        choices=("qk", "ov"),
        default=["qk", "ov"],
        help="with --circuits: which checks (OV needs a pre-norm decoder)" + d,
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="with --circuits: attention the top key needs for an OV event" + d,
    )
    p.add_argument(
        "--no-agreement",
        action="store_true",
        help="skip the paper's agreement protocol (with --circuits)",
    )
    p.add_argument("--seed", type=int, default=0, help="baseline and bootstrap seed" + d)
    p.add_argument("--batch-size", type=positive_int, default=8, help="windows per pass" + d)
    p.add_argument("--out", type=Path, default=Path("agreement-out"), help="output folder" + d)
    p.add_argument("--overwrite", action="store_true", help="replace existing agreement files")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def plot(result: Any, path: Path, circuits: Any = None) -> bool:
    """Plot aligned vs baseline per layer, a panel per (variant, reference, kind).

    ``result`` may be None (circuits only). With ``circuits`` (a ``CircuitResult``) one more
    row of panels: per layer, the mean over heads of each measure, aligned vs shuffled tokens.
    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib  # type: ignore[import-not-found]  # optional

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return False
    panels: list[tuple[str, str]] = []
    kinds: list[str] = []
    layers: list[int] = []
    if result is not None:
        prov = result.provenance
        panels = [(v, r) for v in prov["variants"] for r in prov["references"]]
        kinds, layers = prov["kinds"], prov["layers"]
    measures = [] if circuits is None else circuits.provenance["measures"]
    n_rows = len(panels) + (1 if measures else 0)
    n_cols = max(len(kinds), len(measures))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3 * n_cols, 2.4 * n_rows), squeeze=False)
    for i, (variant, ref) in enumerate(panels):
        for j, kind in enumerate(kinds):
            rows = [result.row(layer, kind, ref, variant) for layer in layers]  # type: ignore[union-attr]
            ax = axes[i][j]
            ax.plot(layers, [r.aligned for r in rows], label="aligned")
            ax.plot(layers, [r.baseline for r in rows], label="random position")
            ax.set_title(f"{kind}, B: {ref} layer, {variant}", fontsize=8)
            ax.set_xlabel("layer", fontsize=7)
    titles = {"qk": "QK: AUC of the attended key", "ov": "OV: r with direct logit effect"}
    for j, measure in enumerate(measures):
        summary = circuits.layers(measure)  # type: ignore[union-attr]
        ax = axes[len(panels)][j]
        x = [s.layer for s in summary]
        ax.plot(x, [s.aligned for s in summary], label="aligned (mean over heads)")
        ax.plot(x, [s.baseline for s in summary], label="shuffled tokens")
        ax.set_title(titles[measure], fontsize=8)
        ax.set_xlabel("layer", fontsize=7)
        ax.legend(fontsize=6)
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_axis_off()
    if panels:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _command(args: argparse.Namespace) -> str:
    """The ``tl-embspace compare`` command line equivalent to ``args`` (for the report)."""
    parts = ["tl-embspace", "compare"]
    for key, value in vars(args).items():
        if key in ("handler", "command") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Load the model, run the protocol, write the files."""
    from ..adapters import adapt
    from ..compare.agreement import agreement
    from ..compare.circuits import circuit_agreement
    from ..errors import InvalidArgumentError
    from ..space import EmbeddingSpace

    if args.no_agreement and not args.circuits:
        raise InvalidArgumentError("--no-agreement leaves nothing to do without --circuits")
    existing = [args.out / f for f in FILES if (args.out / f).exists()]
    if existing and not args.overwrite:
        raise OutputFolderError(
            f"{', '.join(map(str, existing))} exist; pass --overwrite or another --out"
        )
    if args.out.exists() and not args.out.is_dir():
        raise OutputFolderError(f"--out {args.out} is a file, not a folder")
    t0 = time.perf_counter()
    model = zoo.load(args.model, args.backend)
    t_load = time.perf_counter() - t0
    view = adapt(model)
    space = EmbeddingSpace(
        view if args.weights == "raw" else view.folded(), read=args.read, write=args.write
    )
    common: dict[str, Any] = dict(
        space=space,
        layers=args.layers,
        positions=args.positions,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    res = None
    if not args.no_agreement:
        res = agreement(
            model,
            args.corpus,
            n=args.n,
            k=args.k,
            kinds=args.kinds,
            references=args.references,
            variants=args.variants,
            lens_basis=args.lens_basis,
            vocab=args.vocab,
            **common,
        )
    circuits = None
    if args.circuits:
        circuits = circuit_agreement(
            model,
            args.corpus,
            measures=tuple(args.circuit_measures),
            threshold=args.threshold,
            **common,
        )
    total = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    data = {} if res is None else res.to_dict()
    if circuits is not None:
        data["circuits"] = circuits.to_dict()
    (args.out / "agreement.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    p = (res or circuits).provenance  # type: ignore[union-attr]  # one of them ran
    parts = [
        f"# Agreement of parameters and activations: {p['model']}",
        "",
        f"`{_command(args)}`",
        "",
        f"{p['n_positions']} positions, seed={p['seed']}; weights "
        f"{space.view.weights}, read basis {p['read_basis']}, write basis "
        f"{p['write_basis']}; model load {t_load:.0f} s, total {total:.0f} s.",
    ]
    if res is not None:
        parts[-1] += (
            f" Protocol: n={p['n']}, k={p['k']}, lens {p['lens']}, vocabulary "
            f"{p['vocab']['mode']} ({p['vocab_tokens']})."
        )
        for variant in p["variants"]:
            for ref in p["references"]:
                parts += [
                    "",
                    f"## {variant}, B from the {ref} layer",
                    "",
                    res.table(ref, None, variant),
                ]
    if circuits is not None:
        parts += [
            "",
            "## Circuits: QK vs attention, OV vs direct logit effect",
            "",
            f"Per layer, mean over heads: aligned / shuffled tokens, difference (heads whose "
            f"95% interval is above ↑ / below ↓ 0). OV events: the most attended key gets "
            f">= {circuits.provenance['threshold']} of the attention.",
            "",
            circuits.table(),
        ]
    text = "\n".join(parts) + "\n"
    (args.out / "agreement.md").write_text(text, encoding="utf-8")
    print(text)
    png = args.out / "agreement.png"
    wrote = plot(res, png, circuits)
    print(f"wrote {args.out}" + ("" if wrote else " (no plot: matplotlib not installed)"))
    return 0
