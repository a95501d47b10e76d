"""Whole-model job vs its matrix-multiply floors, from one run (issue 12's targets).

Runs the default job (``tl-embspace run``: hygiene vocabulary, search index) on a few layers of
a model (default: the offline SmolLM2, layer 15), then, in the same process, times the plain
matrix products the job cannot avoid, on tensors of the same shapes:

* **vector-projection GEMM floor**: ``[n, d_model] @ [d_model, n_allowed]`` for every vector
  the job ranks (FF keys/gates/values, Q/K/V/O sub-heads, SVD directions), in the engine's
  blocks (4096 rows x 8192 columns), without any top-k;
* **copying floor**: the products of the copying score (each head's two vocabulary factors and
  its ``[n_tokens, d_vocab]`` scores in blocks of 512), without the argmax;
* **SVD floor**: the factorisations (QR + core SVD of every head's OV and QK, full SVD of W_in
  and W_out) plus the vector-projection GEMMs of the directions kept.

and prints each stage's time, its floor and their ratio, plus the peak memory (resident set
size, and the Python heap's peak under tracemalloc, which does not see tensor storage).
Timings on a loaded machine vary; the ratios are measured in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_job.py                 # layer 15
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_job.py --layers 0 15 29
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_job.py --reference OLD_RUN_FOLDER
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_job.py --threads 1   # on a shared CPU

``--reference`` also checks the output against an earlier run's folder of the same layers and
options (``benchmarks/check_job_identity.py``). ``--keep FOLDER`` keeps the output.
"""

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def projection_floor(n_rows: int, d_model: int, n_cols: int, buffered: bool = False) -> float:
    """Seconds of the plain products ``[n_rows, d_model] @ [d_model, n_cols]``, engine-blocked.

    ``buffered``: each block written into one reused buffer (``out=``), as the engine does,
    instead of a fresh tensor per block (the plain ``r @ c`` a user writes, whose new pages
    the kernel zeroes on first touch: on this CPU that alone costs ~1.5-2x the product).
    """
    rows = torch.randn(min(n_rows, 4096), d_model)
    cols = torch.randn(d_model, min(n_cols, 8192))
    buffer = torch.empty(rows.shape[0] * cols.shape[1])
    t = 0.0
    for r0 in range(0, n_rows, 4096):
        r = rows[: min(4096, n_rows - r0)]
        for c0 in range(0, n_cols, 8192):
            c = cols[:, : min(8192, n_cols - c0)]
            if buffered:
                out = buffer[: r.shape[0] * c.shape[1]].view(r.shape[0], c.shape[1])
                t += _timed(lambda r=r, c=c, out=out: torch.matmul(r, c, out=out))
            else:
                t += _timed(lambda r=r, c=c: r @ c)
    return t


def copying_floor(
    n_heads: int, d_model: int, d_head: int, d_vocab: int, n_tokens: int, buffered: bool = False
) -> float:
    """Seconds of the copying score's products for ``n_heads`` heads, without the argmax.

    ``buffered``: the score blocks written into one reused buffer (as the job does), instead of
    a fresh block per product (as a user writes it); see :func:`projection_floor`.
    """
    basis = torch.randn(d_model, d_vocab)
    w_v, w_o = torch.randn(d_model, d_head), torch.randn(d_model, d_head)
    sample = basis[:, :n_tokens].contiguous()
    block = torch.empty(min(512, n_tokens), d_vocab)
    t = 0.0
    for _ in range(n_heads):
        t0 = time.perf_counter()
        left = sample.T @ w_v
        right = basis.T @ w_o
        for s in range(0, n_tokens, 512):
            rows = left[s : s + 512]
            if buffered:
                torch.matmul(rows, right.T, out=block[: rows.shape[0]])
            else:
                rows @ right.T
        t += time.perf_counter() - t0
    return t


def svd_floor(space, layer: int, svd_components: int, n_allowed: int) -> float:
    """Seconds of one layer's factorisations plus the projection GEMMs of the kept directions."""
    from tl_embspace._linalg import single_threaded
    from tl_embspace.interpreters.svd import low_rank_svd

    lw, spec = space.view.layer(layer), space.view.spec
    t0 = time.perf_counter()
    for h in range(spec.n_heads):
        low_rank_svd(lw.W_V[h], lw.W_O_written[h].T)
        low_rank_svd(lw.W_Q_qk[h], lw.W_K_qk[h])
    with single_threaded():
        for w in (lw.W_in, lw.W_out_written):
            if w is not None:
                torch.linalg.svd(w.double(), full_matrices=False)
    factor = time.perf_counter() - t0
    # Each call projects its own few directions: the job's calls, one GEMM each.
    comps = min(svd_components, spec.d_head)
    mlp = min(svd_components, spec.d_model, spec.d_mlp)
    gemm = 2 * spec.n_heads * projection_floor(comps, spec.d_model, n_allowed)
    gemm += 2 * projection_floor(mlp, spec.d_model, n_allowed)
    return factor + gemm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--layers", type=int, nargs="+", default=[15])
    p.add_argument("--reference", type=Path, help="an earlier run's folder to compare with")
    p.add_argument("--keep", type=Path, help="write the output here (default: a temp folder)")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default; 1: shared CPU)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import tl_embspace as te
    from tl_embspace.atlas import Atlas
    from tl_embspace.job import interpret_model
    from tl_embspace.vocab import choose_vocabulary

    model = te.load(args.model)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = args.keep or Path(tempfile.mkdtemp()) / "run"
    tracemalloc.start()
    t0 = time.perf_counter()
    interpret_model(model, out, layers=args.layers, progress=False, overwrite=args.keep is not None)
    wall = time.perf_counter() - t0
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    atlas = Atlas.open(out)
    timings = atlas.timings
    spec = te.adapt(model).spec
    # The job's own vocabulary choice, for how many tokens each ranking scores.
    view = te.adapt(model)
    raw = te.EmbeddingSpace(
        view.folded() if atlas.options["weights"] == "folded" else view, tokenizer=model.tokenizer
    )
    choice = choose_vocabulary(raw, atlas.options["vocab"]["mode"])
    f = choice.token_filter
    mask = None if f is None else f.mask(raw.tokenizer, spec.d_vocab_out)
    n_allowed = spec.d_vocab_out if mask is None else int(mask.sum())

    rows = svd_rows = 0
    for layer in atlas.layers:
        for name, table in atlas.layer(layer).vectors.items():
            if name.startswith("svd_"):
                svd_rows += len(table)
            else:
                rows += len(table)
    gemm_rows = projection_floor(rows, spec.d_model, n_allowed)
    gemm_all = gemm_rows + projection_floor(svd_rows, spec.d_model, n_allowed)
    gemm_buffered = projection_floor(rows + svd_rows, spec.d_model, n_allowed, buffered=True)
    stages = {str(k): v for k, v in timings["stages"].items()}
    sum_stage = lambda key: sum(s[key] for s in stages.values())  # noqa: E731
    svd_floor_s = sum(
        svd_floor(choice.space, layer, atlas.options["svd_components"], n_allowed)
        for layer in atlas.layers
    )
    copy_shape = (
        len(atlas.layers) * spec.n_heads,
        spec.d_model,
        spec.d_head,
        spec.d_vocab_out,
        min(atlas.options["copying_tokens"], spec.d_vocab),
    )
    copy_floor_s = copying_floor(*copy_shape)
    copy_floor_buffered = copying_floor(*copy_shape, buffered=True)
    job_s = timings["total"]
    lines = [
        f"machine: {platform.machine()} {platform.processor() or ''}, "
        f"{torch.get_num_threads()} torch threads; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"model {args.model}, layers {list(atlas.layers)}, vocab {atlas.options['vocab']['mode']} "
        f"({n_allowed} of {spec.d_vocab_out} tokens ranked), {rows} row vectors + {svd_rows} "
        "SVD directions",
        f"{'stage':<34}{'time s':>9}{'floor s':>9}{'ratio':>8}",
        f"{'whole job (wall, incl. writing)':<34}{wall:>9.2f}{gemm_all:>9.2f}"
        f"{wall / gemm_all:>8.2f}"
        "   floor: vector-projection GEMMs",
        f"{'  row interpreters':<34}{sum_stage('rows'):>9.2f}{gemm_rows:>9.2f}"
        f"{sum_stage('rows') / gemm_rows:>8.2f}",
        f"{'  SVD directions':<34}{sum_stage('svd'):>9.2f}{svd_floor_s:>9.2f}"
        f"{sum_stage('svd') / svd_floor_s:>8.2f}   floor: factorisations + their GEMMs",
        f"{'  token-pair search (bench_pairs.py)':<34}{sum_stage('pairs'):>9.2f}",
        f"{'  copying scores':<34}{timings['copying_scores']:>9.2f}{copy_floor_s:>9.2f}"
        f"{timings['copying_scores'] / copy_floor_s:>8.2f}   floor: its GEMMs",
        f"{'  (copying GEMMs into one buffer)':<34}{'':>9}{copy_floor_buffered:>9.2f}"
        f"{timings['copying_scores'] / copy_floor_buffered:>8.2f}",
        f"{'  (vector GEMMs into one buffer)':<34}{'':>9}{gemm_buffered:>9.2f}"
        f"{wall / gemm_buffered:>8.2f}   the same products, out= a reused buffer",
        f"{'  writing + index + site (rest)':<34}"
        f"{job_s - sum(timings['layers'].values()) - timings['copying_scores']:>9.2f}",
        f"peak RSS {rss_peak:.2f} GiB (after loading the model: {rss_loaded:.2f} GiB); "
        f"Python heap peak (tracemalloc) {heap_peak:.0f} MiB",
    ]
    print("\n".join(lines))
    if args.reference is not None:
        from check_job_identity import SWAPS, compare

        problems = compare(args.reference, out)
        print("identical to the reference:", "yes" if not problems else "NO")
        print("\n".join(problems[:20]))
        if SWAPS:
            print(f"  with {len(SWAPS)} near-tie swaps within float32 rounding:", *SWAPS[:20])
    print(json.dumps({"wall_s": wall, "timings_s": timings}, default=str)[:2000])


if __name__ == "__main__":
    main()
