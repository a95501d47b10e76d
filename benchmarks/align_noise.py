"""Where does alignment stop recovering a permuted copy? A noise sweep on a tiny random model.

Model A: a seeded 6-layer tiny Llama (GQA, gated MLP, 96-token vocabulary; ``tests/tinymodels``),
norms folded. Model B: A with every layer, head and neuron shuffled (``PermutedView.shuffled``)
plus Gaussian noise of ``sigma`` times each weight's std (``NoisyView``). For each sigma and
seed, both spaces (embedding, raw) report the fraction of layers, heads and neurons matched to
where they really went; the first sigma where any fraction drops below 1 is printed per space.

Usage (from the repository root)::

    python -m benchmarks.align_noise                     # sigmas 0 .. 4, 3 seeds, mean_abs
    python -m benchmarks.align_noise --seeds 5 --aggregate rms
"""

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from tests import tinymodels as tm  # noqa: E402
from tl_embspace import adapt  # noqa: E402
from tl_embspace.adapters import NoisyView, PermutedView  # noqa: E402
from tl_embspace.apps import AGGREGATES, align  # noqa: E402

SIGMAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--aggregate", default="mean_abs", choices=AGGREGATES)
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    args = parser.parse_args()
    base = adapt(tm.arch_bridge("LlamaForCausalLM", num_hidden_layers=6)).folded()
    start = time.perf_counter()
    print(
        f"model A: tiny Llama, 6 layers, d_model 32, 4 heads / 2 kv, d_mlp 48, vocab {tm.D_VOCAB}"
    )
    print(f"aggregate={args.aggregate}, seeds={args.seeds}; mean fraction matched (min over seeds)")
    print(f"{'sigma':>6} {'space':>9} {'layers':>13} {'heads':>13} {'neurons':>13}")
    breaks: dict[str, float | None] = {"embedding": None, "raw": None}
    for sigma in args.sigmas:
        for space in ("embedding", "raw"):
            rows = []
            for seed in range(args.seeds):
                perm = PermutedView.shuffled(base, seed)
                other = NoisyView(perm, sigma, seed) if sigma else perm
                layers, heads, neurons = perm.expected_matches()
                score = align(base, other, space=space, aggregate=args.aggregate).score(
                    expected_layers=layers, expected_heads=heads, expected_neurons=neurons
                )
                rows.append(
                    (
                        score["layers"]["combined"]["fraction_matched"],
                        score["heads"],
                        score["neurons"],
                    )
                )
            r = np.array(rows)
            cells = [f"{r[:, i].mean():.3f} ({r[:, i].min():.2f})" for i in range(3)]
            print(f"{sigma:>6g} {space:>9} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13}")
            if breaks[space] is None and r.min() < 1:
                breaks[space] = sigma
    for space, sigma in breaks.items():
        where = "never, within the sweep" if sigma is None else f"at sigma = {sigma:g}"
        print(f"{space}: recovery first falls below exact {where}")
    print(f"wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
