"""The non-circular check of hygiene: the weights-vs-activations agreement gap, raw vs hygiene.

A thin wrapper over the comparison package's protocol (``tl_embspace.compare.agreement``, Dar
et al. §5: at each position the ``n`` most active parameters' top-``k`` tokens A against the
logit lens's top-``k`` tokens B, ``|A ∩ B| / |B|``, baseline = the parameters of a random other
position), run twice on the offline SmolLM2-135M-Instruct over WikiText-2's test split with the
paper's bases (``E = W_U`` both sides): ``vocab="raw"`` (every token, raw scores) and
``vocab="hygiene"`` (A and B over the tokens the hygiene mask keeps, parameters scored
standardised over random directions; B stays the model's own logits). Each run is what
``tl-embspace compare --vocab raw|hygiene`` computes. Prints, per kind and reference residual
(same layer, final layer), the mean gap over the layers, how many layers' 95% intervals exclude
0, in how many layers hygiene's gap is larger, and the per-layer gaps.

Usage::

    TL_EMBSPACE_DATA=../shared/data python benchmarks/vocab_agreement_gap.py --positions 1000
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch

import tl_embspace as te
from tl_embspace import vocab
from tl_embspace.compare.agreement import agreement

ROOT = Path(__file__).resolve().parents[1]
MODES = ("raw", "hygiene")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = os.environ.get(vocab.corpus.DATA_ENV, ROOT.parent / "shared" / "data")
    p.add_argument("--corpus", default=str(Path(data) / "wikitext-2" / "test.txt"))
    p.add_argument("--positions", type=int, default=1000)
    p.add_argument("--kinds", nargs="+", default=["ff_key", "ff_value", "v", "o"])
    p.add_argument("--layers", type=int, nargs="*")
    p.add_argument("--threads", type=int, help="torch threads (a shared machine: 1)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.corpus).is_file():
        print(f"corpus {args.corpus} not found; pass --corpus or set {vocab.corpus.DATA_ENV}")
        return 2
    t0 = time.perf_counter()
    model = te.load("smollm2-135m-instruct")
    results = {}
    for mode in MODES:
        results[mode] = agreement(
            model,
            args.corpus,
            layers=args.layers,
            kinds=args.kinds,
            positions=args.positions,
            vocab=mode,
            progress=False,
        )
        print(f"({mode} done, {time.perf_counter() - t0:.0f} s)", flush=True)
    prov = results["hygiene"].provenance
    print(f"\n`python {' '.join(sys.argv)}` ({time.perf_counter() - t0:.0f} s)")
    print(f"hygiene: {prov['vocab_tokens']}; bases {prov['write_basis']}")
    layers = prov["layers"]
    print(f"\nGap aligned - baseline over {len(layers)} layers, {prov['n_positions']} positions:\n")
    print("| kind | B | mean gap: raw | hygiene | CI excludes 0: raw | hygiene | hygiene > raw |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind in args.kinds:
        for ref in ("same", "final"):
            rows = {m: [results[m].row(layer, kind, ref) for layer in layers] for m in MODES}
            mean = {m: sum(r.difference for r in rows[m]) / len(layers) for m in MODES}
            sig = {m: sum(r.ci_low > 0 or r.ci_high < 0 for r in rows[m]) for m in MODES}
            wins = sum(h.difference > r.difference for r, h in zip(*rows.values(), strict=True))
            print(
                f"| {kind} | {ref} | {mean['raw']:+.3f} | {mean['hygiene']:+.3f} | "
                f"{sig['raw']} | {sig['hygiene']} | {wins} of {len(layers)} |"
            )
    for ref in ("same", "final"):
        print(f"\nPer layer, gap raw → hygiene, B from the {ref} layer:\n")
        print("| layer | " + " | ".join(args.kinds) + " |")
        print("|---|" + "---:|" * len(args.kinds))
        for layer in layers:
            cells = []
            for kind in args.kinds:
                r, h = (results[m].row(layer, kind, ref) for m in MODES)
                cells.append(f"{r.difference:+.3f} → {h.difference:+.3f}")
            print(f"| {layer} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
