"""Run the paper's parameters-vs-activations agreement protocol on a real model and corpus.

Default: the offline SmolLM2-135M-Instruct (bridge) over the first 1,000 non-BOS positions of
WikiText-2's test split (read by path from ``../shared/data``, or ``--corpus``), n=5, k=50,
every layer, both references (same layer / final layer), the paper's raw scores and the centred
variant. Writes ``agreement.json`` (every figure and its provenance), ``agreement.md`` (the
tables) and, when matplotlib is installed, ``agreement.png`` into ``--out``.

Usage::

    python benchmarks/agreement.py --out agreement-out
    python benchmarks/agreement.py --model all-minilm-l6-v2 --references same --lens-basis W_E
"""

import argparse
import os
import sys
import time
from pathlib import Path

import tl_embspace as te
from tl_embspace.compare.agreement import agreement

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = (
    Path(os.environ.get("TL_EMBSPACE_DATA", ROOT.parent / "shared" / "data"))
    / "wikitext-2"
    / "test.txt"
)


def _plot(result, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    variants, refs = result.provenance["variants"], result.provenance["references"]
    kinds = result.provenance["kinds"]
    fig, axes = plt.subplots(
        len(variants) * len(refs),
        len(kinds),
        figsize=(3 * len(kinds), 2.4 * len(variants) * len(refs)),
        squeeze=False,
    )
    layers = result.provenance["layers"]
    for i, (variant, ref) in enumerate((v, r) for v in variants for r in refs):
        for j, kind in enumerate(kinds):
            rows = [result.row(layer, kind, ref, variant) for layer in layers]
            ax = axes[i][j]
            ax.plot(layers, [r.aligned for r in rows], label="aligned")
            ax.plot(layers, [r.baseline for r in rows], label="random position")
            ax.set_title(f"{kind}, {ref} layer, {variant}", fontsize=8)
            ax.set_xlabel("layer", fontsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    p.add_argument("--positions", type=int, default=1000)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--layers", type=int, nargs="*")
    p.add_argument("--references", nargs="+", default=["same", "final"])
    p.add_argument("--variants", nargs="+", default=["raw", "centered"])
    p.add_argument("--lens-basis", default="readout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="agreement-out")
    args = p.parse_args()
    if not Path(args.corpus).is_file():
        print(f"corpus {args.corpus} not found; pass --corpus or set TL_EMBSPACE_DATA")
        return 2
    t0 = time.perf_counter()
    model = te.load(args.model)
    t_load = time.perf_counter() - t0
    res = agreement(
        model,
        args.corpus,
        n=args.n,
        k=args.k,
        layers=args.layers,
        references=args.references,
        variants=args.variants,
        positions=args.positions,
        seq_len=args.seq_len,
        seed=args.seed,
        lens_basis=args.lens_basis,
    )
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agreement.json").write_text(res.to_json(indent=1), encoding="utf-8")
    command = "python " + " ".join(sys.argv)
    parts = [
        f"# Agreement: {res.provenance['model']}\n",
        f"`{command}`\n",
        f"model load {t_load:.0f} s, total {elapsed:.0f} s\n",
    ]
    for variant in args.variants:
        for ref in args.references:
            parts.append(
                f"\n## {variant}, B from the {ref} layer: aligned / baseline (diff [95% CI])\n"
            )
            parts.append(res.table(ref, variant=variant))
    (out / "agreement.md").write_text("\n".join(parts) + "\n", encoding="utf-8")
    print("\n".join(parts))
    print(
        "plot:",
        out / "agreement.png" if _plot(res, out / "agreement.png") else "matplotlib not installed",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
