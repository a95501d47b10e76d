"""Memory and time of aligning real SmolLM2-135M with a permuted copy of itself (apps.align).

Loads the offline zoo's SmolLM2-135M-Instruct (README "Offline zoo"), folds its norms, builds a
copy whose 30 layers, 9 heads per layer (kv groups kept together) and 1536 neurons per layer are
shuffled with a fixed seed (``PermutedView``: no second model in memory), aligns the two, and
prints the scores, the wall time and the peak resident memory *of the alignment alone* (the
kernel resets the process's peak after loading, via /proc/self/clear_refs), next to the memory
the explicit-projection alternative would need.

Usage::

    python benchmarks/bench_align.py                        # rms aggregate, embedding space
    python benchmarks/bench_align.py --aggregate mean_abs   # the paper's aggregate (slower)
    python benchmarks/bench_align.py --space raw            # the raw-feature baseline
    python benchmarks/bench_align.py --noise 0.5            # Gaussian noise on the copy
"""

import argparse
import os
import resource
import time

import torch

import tl_embspace as te
from tl_embspace.adapters import NoisyView, PermutedView, WeightView


def peak_rss_gib() -> float:
    """Peak resident memory since the last reset (VmHWM), in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def current_rss_gib() -> float:
    """Resident memory now (VmRSS), in GiB (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def explicit_estimate_gib(view: WeightView) -> dict[str, float]:
    """float32 memory the explicit projections would take (``n x d_vocab`` per vector group)."""
    s = view.spec
    group = s.n_heads // s.n_kv_heads
    per_layer = (3 if s.gated_mlp else 2) * s.d_mlp + s.n_heads * s.d_head * 2
    per_layer += 2 * (s.n_heads // group) * s.d_head  # K and V columns, one per kv head
    gib = 4 / 2**30
    return {
        "vectors_per_layer": per_layer,
        "one_layer_pair": 2 * per_layer * s.d_vocab * gib,
        "all_layers_both_models": 2 * s.n_layers * per_layer * s.d_vocab * gib,
        "one_head_circuit": s.d_vocab**2 * gib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aggregate", default="rms", choices=te.apps.AGGREGATES)
    parser.add_argument("--space", default="embedding", choices=te.apps.SPACES)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    t0 = time.perf_counter()
    model = te.load("smollm2-135m-instruct")
    base = te.adapt(model).folded()
    for layer in range(base.spec.n_layers):  # read every layer now, so loading is not counted
        base.layer(layer)
    base.globals  # noqa: B018 - same: materialise the embeddings before the reset
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_gib()
    reset = reset_peak()
    rss_at_reset = current_rss_gib()

    copy = PermutedView.shuffled(base, args.seed)
    other: WeightView = NoisyView(copy, args.noise) if args.noise else copy
    t1, c1 = time.perf_counter(), time.process_time()
    result = te.apps.align(base, other, space=args.space, aggregate=args.aggregate)
    align_s, align_cpu = time.perf_counter() - t1, time.process_time() - c1
    peak = peak_rss_gib()

    layers, heads, neurons = copy.expected_matches()
    score = result.score(expected_layers=layers, expected_heads=heads, expected_neurons=neurons)
    est = explicit_estimate_gib(base)
    s = base.spec
    print(f"model: {s.model_name} ({s.n_layers} layers, d_model {s.d_model}, d_vocab {s.d_vocab})")
    print(
        f"options: space={args.space} aggregate={args.aggregate} noise={args.noise} "
        f"seed={args.seed} threads={torch.get_num_threads()}"
    )
    print(f"load + fold + read all layers: {load_s:.1f} s, peak RSS so far {rss_loaded:.2f} GiB")
    print(f"alignment wall time: {align_s:.1f} s (process CPU time {align_cpu:.1f} s)")
    label = "alignment alone" if reset else "whole process (peak reset unavailable)"
    print(f"peak RSS during the {label}: {peak:.2f} GiB (resident at start: {rss_at_reset:.2f})")
    print(
        "explicit projections instead (float32): "
        f"{est['one_layer_pair']:.2f} GiB for one layer pair's vectors, "
        f"{est['all_layers_both_models']:.1f} GiB for every layer of both models, "
        f"{est['one_head_circuit']:.1f} GiB for ONE head's vocab x vocab circuit "
        f"({est['vectors_per_layer']} vectors per layer)"
    )
    for group, sc in score["layers"].items():
        print(
            f"  layers by {group:9s}: fraction matched {sc['fraction_matched']:.3f}, "
            f"mean rank {sc['mean_rank']:.2f}"
        )
    print(f"  heads matched: {score['heads']:.3f}   neurons matched: {score['neurons']:.3f}")


if __name__ == "__main__":
    main()
