"""The non-circular check of hygiene: the weights-vs-activations agreement gap, raw vs hygiene.

Runs the paper's agreement protocol (``tl_embspace.compare.agreement``: at each position the
``n`` most active parameters' top-``k`` tokens A against the logit lens's top-``k`` tokens B,
``|A ∩ B| / |B|``, baseline = the parameters of a random other position) on the offline
SmolLM2-135M-Instruct over WikiText-2's test split, twice: with the paper's bases (``E = W_U``
both sides, raw scores) and with the same bases standardised over random directions (the job's
hygiene normalisation, ``score / ‖W_U[:, t]‖``). B, the logit lens, is the paper's in both.
Prints, per layer, the gap (aligned - baseline) of each, for the same layer's and the final
layer's residual.

Needs the comparison package (``tl_embspace.compare``). Usage::

    TL_EMBSPACE_DATA=../shared/data python benchmarks/vocab_agreement_gap.py --positions 300
"""

import argparse
import os
import sys
import time
from pathlib import Path

import tl_embspace as te
from tl_embspace import vocab

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = os.environ.get(vocab.corpus.DATA_ENV, ROOT.parent / "shared" / "data")
    p.add_argument("--corpus", default=str(Path(data) / "wikitext-2" / "test.txt"))
    p.add_argument("--positions", type=int, default=300)
    p.add_argument("--kinds", nargs="+", default=["ff_value", "ff_key"])
    p.add_argument("--layers", type=int, nargs="*")
    args = p.parse_args()
    try:
        from tl_embspace.compare.agreement import agreement
    except ImportError:
        print("needs tl_embspace.compare (the comparison package), which is not installed here")
        return 2
    if not Path(args.corpus).is_file():
        print(f"corpus {args.corpus} not found; pass --corpus or set {vocab.corpus.DATA_ENV}")
        return 2
    t0 = time.perf_counter()
    model = te.load("smollm2-135m-instruct")
    paper = te.EmbeddingSpace.paper(te.adapt(model))
    spaces = {"raw": paper, "standardised": vocab.normalised_space(paper)}
    results = {
        name: agreement(
            model,
            args.corpus,
            layers=args.layers,
            kinds=args.kinds,
            positions=args.positions,
            space=space,
            progress=False,
        )
        for name, space in spaces.items()
    }
    print(f"`python {' '.join(sys.argv)}` ({time.perf_counter() - t0:.0f} s)\n")
    for ref in ("same", "final"):
        print(f"\nGap aligned - baseline [95% CI], B from the {ref} layer:\n")
        print("| layer | " + " | ".join(f"{k} {n}" for k in args.kinds for n in spaces) + " |")
        print("|---|" + "---:|" * (len(args.kinds) * len(spaces)))
        layers = results["raw"].provenance["layers"]
        means = {(k, n): [] for k in args.kinds for n in spaces}
        for layer in layers:
            cells = []
            for kind in args.kinds:
                for name, res in results.items():
                    r = res.row(layer, kind, ref)
                    means[(kind, name)].append(r.difference)
                    cells.append(
                        f"{r.aligned:.3f}/{r.baseline:.3f} {r.difference:+.3f} "
                        f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
                    )
            print(f"| {layer} | " + " | ".join(cells) + " |")
        avg = [f"{sum(v) / len(v):+.3f}" for v in means.values()]
        print("| mean gap | " + " | ".join(avg) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
