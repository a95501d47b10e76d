"""Memory and speed of the streaming logit lens as the corpus grows.

Runs ``logit_lens_topk`` (top-k tokens of the logit lens at the chosen layers, per position) on
the offline SmolLM2-135M-Instruct over the first N positions of WikiText-2's test split, for two
corpus sizes, each in a fresh subprocess, and prints each run's peak resident memory (the whole
process, model included), their ratio, and the wall time against a plain forward pass over the
same tokens (the model's own logits, nothing kept).

Usage::

    python benchmarks/bench_stream_memory.py                      # 1,000 and 8,000 positions
    python benchmarks/bench_stream_memory.py --sizes 1000 8000 --layers 0 15 29 --k 10
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

DATA = Path(
    os.environ.get(
        "TL_EMBSPACE_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)


class _PeakRSS:
    """Samples the process's resident memory every 5 ms in a thread; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.005)

    def __enter__(self) -> "_PeakRSS":
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def child(positions: int, layers: list[int], k: int, batch_size: int) -> None:
    import torch

    import tl_embspace as te
    from tl_embspace import compare

    model = te.load("smollm2-135m-instruct")
    win = compare.windows(model, DATA / "wikitext-2" / "test.txt", positions=positions)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, win.tokens.shape[0], batch_size):
            model(win.tokens[s : s + batch_size])
    t_forward = time.perf_counter() - t0
    before = _PeakRSS.now()
    t0 = time.perf_counter()
    with _PeakRSS() as rss:
        out = compare.logit_lens_topk(
            model, win.tokens, layers=layers, k=k, batch_size=batch_size, progress=False
        )
    t_lens = time.perf_counter() - t0
    kept = sum(t.ids.numel() * 8 + t.scores.numel() * 4 for t in out.values())
    print(f"RESULT {positions} {before} {rss.peak} {t_forward:.2f} {t_lens:.2f} {kept}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs=2, default=[1000, 8000])
    p.add_argument("--layers", type=int, nargs="+", default=[0, 15, 29])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.layers, args.k, args.batch_size)
        return 0
    results = {}
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(size), "--k", str(args.k)]
        cmd += ["--batch-size", str(args.batch_size), "--layers", *map(str, args.layers)]
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        line = next(ln for ln in text.splitlines() if ln.startswith("RESULT"))
        _, n, base, peak, t_fwd, t_lens, kept = line.split()
        results[size] = (int(base), int(peak), float(t_fwd), float(t_lens), int(kept))
        print(
            f"{size:>6} positions: peak RSS during the lens {int(peak) / 2**20:.0f} MiB (before "
            f"it {int(base) / 2**20:.0f} MiB); kept {int(kept) / 2**20:.2f} MiB of top-k; "
            f"lens {float(t_lens):.1f} s vs plain forward {float(t_fwd):.1f} s "
            f"(x{float(t_lens) / float(t_fwd):.1f})"
        )
    small, large = args.sizes
    ratio = results[large][1] / results[small][1]
    growth = [(results[n][1] - results[n][0]) / 2**20 for n in (small, large)]
    print(f"peak RSS ratio {large}/{small} positions: {ratio:.3f}")
    print(f"growth above the pre-lens RSS: {growth[0]:.0f} MiB vs {growth[1]:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
