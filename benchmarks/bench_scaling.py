"""How the pair search and the vector projections scale with vocabulary, d_model and heads.

Random models (seeded): a token embedding ``E [vocab, d_model]`` with heavy-tailed (log-normal)
row norms, per-head ``W_Q, W_K, W_V [d_model, 64]`` and ``W_O [64, d_model]``. For each case it
measures, in one process:

* **pair search**: ``topk_pairs_both`` (top and bottom 50) of one head's QK factors
  ``(E W_Q, E W_K)`` and OV factors ``(E W_V, E W_Oᵀ)``, against the GEMM floor (the plain
  chunked product) measured on a slice of rows and scaled to the whole vocabulary (a 256k x
  256k product is never run), and the peak resident memory the call adds (Linux ``VmHWM``,
  reset before the call);
* **vector projections**: ``topk_vocab`` (top and bottom 50) of FF vectors against ``Eᵀ``,
  against their plain chunked GEMM, measured on a slice of vectors and scaled to the
  ``2 x d_mlp = 8 d_model`` FF vectors of a layer.

Cases: vocabulary 50,257 / 128,256 / 256,000 at d_model 1024 (GPT-2-medium width), and d_model
512 / 1024 / 2048 at vocabulary 50,257. Every head and layer is an independent task of the same
size, so a model's time is (layers x heads x 2) pair searches plus (layers) projection sets: the
script extrapolates GPT-2-medium (24 layers x 16 heads, vocabulary 50,257) and a Llama-3-like
vocabulary (128,256) from the measured heads, and fits ``time ∝ vocab^p``.

Usage::

    python benchmarks/bench_scaling.py --threads 1          # a few minutes on 2 loaded cores
    python benchmarks/bench_scaling.py --quick              # seconds (smoke test)
"""

import argparse
import math
import time

import torch

from tl_embspace.engine import topk_pairs_both, topk_vocab

D_HEAD, K = 64, 50


def reset_peak() -> int:
    """Reset the process's peak resident memory (Linux) and return the current RSS in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status("VmRSS")


def _status(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_since(rss_before: int) -> int:
    """Bytes of peak resident memory above ``rss_before`` (0 where /proc is unavailable)."""
    return max(0, _status("VmHWM") - rss_before)


def embedding(vocab: int, d_model: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scale = torch.exp(0.5 * torch.randn(vocab, 1, generator=gen))  # heavy-tailed norms
    return torch.randn(vocab, d_model, generator=gen).mul_(scale).div_(math.sqrt(d_model))


def head_factors(emb: torch.Tensor, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    d_model = emb.shape[1]
    w_q, w_k, w_v, w_o_t = (torch.randn(d_model, D_HEAD, generator=gen) for _ in range(4))
    return {"qk": (emb @ w_q, emb @ w_k), "ov": (emb @ w_v, emb @ w_o_t)}


def pair_case(emb: torch.Tensor, seed: int, heads: int, floor_rows: int) -> dict[str, float]:
    """Mean seconds per head matrix (engine), scaled floor, peak added memory, scored fraction."""
    engine, floors, peaks, scored = [], [], [], []
    for head in range(heads):
        for left, right in head_factors(emb, seed + head).values():
            before = reset_peak()
            t0 = time.perf_counter()
            top, _ = topk_pairs_both(left, right, K)
            engine.append(time.perf_counter() - t0)
            peaks.append(peak_since(before))
            scored.append(top.scored / (left.shape[0] * right.shape[0]))
            rows = left[:floor_rows]
            t0 = time.perf_counter()
            rows @ right.T
            floors.append((time.perf_counter() - t0) * left.shape[0] / rows.shape[0])
    n = len(engine)
    return {
        "engine": sum(engine) / n,
        "floor": sum(floors) / n,
        "peak": max(peaks),
        "scored": sum(scored) / n,
    }


def projection_case(emb: torch.Tensor, n_vectors: int, seed: int) -> dict[str, float]:
    """Seconds per layer (8 d_model FF vectors) for topk_vocab and for its plain GEMM."""
    gen = torch.Generator().manual_seed(seed)
    d_model = emb.shape[1]
    vectors = torch.randn(n_vectors, d_model, generator=gen)
    matrix = emb.T  # [d_model, vocab]
    before = reset_peak()
    t0 = time.perf_counter()
    topk_vocab(vectors, matrix, K)
    engine = time.perf_counter() - t0
    peak = peak_since(before)
    t0 = time.perf_counter()
    for start in range(0, emb.shape[0], 8192):
        vectors @ emb[start : start + 8192].T
    floor = time.perf_counter() - t0
    per_layer = 8 * d_model / n_vectors
    return {"engine": engine * per_layer, "floor": floor * per_layer, "peak": peak}


def fit_power(xs: list[float], ys: list[float]) -> float:
    """Least-squares exponent p of y = c x^p."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    num = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    return num / sum((a - mx) ** 2 for a in lx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=1, help="heads (QK and OV each) per case")
    parser.add_argument("--floor-rows", type=int, default=512, help="rows of the floor slice")
    parser.add_argument("--vectors", type=int, default=64, help="FF vectors actually projected")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--vocab-d-model", type=int, default=512, help="d_model of the vocabulary sweep"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # The vocabulary sweep runs at a modest width to fit a 256k embedding in a small machine's
    # memory: the pair search does not depend on d_model (its factors are [vocab, d_head]) and
    # projections per layer scale as d_model^2 (the d_model sweep), which the totals apply.
    vocabs, d_models, d_fixed, d_target = [50257, 128256, 256000], [512, 1024, 2048], 512, 1024
    d_fixed = args.vocab_d_model
    if args.quick:
        vocabs, d_models, d_fixed, d_target = [2000, 4000], [32, 64], 32, 64
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, k={K}, d_head {D_HEAD}")

    print(
        f"\nvocabulary sweep (d_model {d_fixed}); per head matrix / per layer (8 d_model vectors)"
    )
    print(
        "vocab     pair s  floor s  pair/floor  scored    pair peak MiB"
        "  | proj s  proj floor s  proj/floor  proj peak MiB"
    )
    by_vocab = {}
    for vocab in vocabs:
        emb = embedding(vocab, d_fixed, seed=vocab)
        pair = pair_case(emb, seed=1, heads=args.heads, floor_rows=args.floor_rows)
        proj = projection_case(emb, args.vectors, seed=2)
        by_vocab[vocab] = (pair, proj)
        print(
            f"{vocab:<8} {pair['engine']:7.2f}  {pair['floor']:7.1f}"
            f"  {pair['engine'] / pair['floor']:10.4f}"
            f"  {pair['scored']:.1e}  {pair['peak'] / 2**20:13.0f}"
            f"  | {proj['engine']:6.1f}  {proj['floor']:12.1f}"
            f"  {proj['engine'] / proj['floor']:10.2f}"
            f"  {proj['peak'] / 2**20:13.0f}",
            flush=True,
        )
        del emb

    print(f"\nd_model sweep (vocab {vocabs[0]})")
    print("d_model  pair s  floor s  pair/floor  | proj s per layer  proj floor s")
    by_width = {}
    for d_model in d_models:
        emb = embedding(vocabs[0], d_model, seed=d_model)
        pair = pair_case(emb, seed=3, heads=args.heads, floor_rows=args.floor_rows)
        proj = projection_case(emb, args.vectors, seed=4)
        by_width[d_model] = (pair, proj)
        print(
            f"{d_model:<7} {pair['engine']:7.2f}  {pair['floor']:7.1f}"
            f"  {pair['engine'] / pair['floor']:10.4f}"
            f"  | {proj['engine']:16.1f}  {proj['floor']:12.1f}",
            flush=True,
        )
        del emb

    xs = [float(v) for v in vocabs]
    p_pair = fit_power(xs, [by_vocab[v][0]["engine"] for v in vocabs])
    p_floor = fit_power(xs, [by_vocab[v][0]["floor"] for v in vocabs])
    p_proj = fit_power(xs, [by_vocab[v][1]["engine"] for v in vocabs])
    p_mem = fit_power(xs, [max(by_vocab[v][0]["peak"], 1.0) for v in vocabs])
    ws = [float(d) for d in d_models]
    q_pair = fit_power(ws, [by_width[d][0]["engine"] for d in d_models])
    q_proj = fit_power(ws, [by_width[d][1]["engine"] for d in d_models])
    print(
        f"\nfitted exponents: pair search time ∝ vocab^{p_pair:.2f} (its floor ∝ vocab^"
        f"{p_floor:.2f}), pair peak memory ∝ vocab^{p_mem:.2f}, projections ∝ vocab^{p_proj:.2f};"
        f" in d_model: pair search ∝ d^{q_pair:.2f}, projections per layer ∝ d^{q_proj:.2f}"
    )

    # Whole-model extrapolations: every head matrix and every layer is an independent task.
    # Pair searches from the vocabulary sweep; a layer's projections from the d_model sweep at
    # the target width, scaled to the vocabulary by the fitted exponent.
    for name, vocab, layers, heads in (
        ("GPT-2-medium shape", vocabs[0], 24, 16),
        ("Llama-3-like vocabulary, GPT-2-medium width and depth", vocabs[1], 24, 16),
    ):
        pair = by_vocab[vocab][0]
        proj = by_width[d_target][1]
        proj_layer = proj["engine"] * (vocab / vocabs[0]) ** p_proj
        pairs_s = layers * heads * 2 * pair["engine"]
        floor_s = layers * heads * 2 * pair["floor"]
        proj_s = layers * proj_layer
        print(
            f"{name} (vocab {vocab}, {layers} layers x {heads} heads, d_model {d_target}): "
            f"pair searches {pairs_s / 60:.1f} min (their floor {floor_s / 60:.0f} min), "
            f"FF projections {proj_s / 60:.1f} min; a pair search holds "
            f"{pair['peak'] / 2**20:.0f} MiB above its inputs"
        )


if __name__ == "__main__":
    main()
