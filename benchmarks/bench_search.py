"""Search-index benchmark: build time, size, query latency, and hits equal to a brute-force scan.

    .venv/bin/python benchmarks/bench_search.py ATLAS_FOLDER [TOKEN ...]

ATLAS_FOLDER is any atlas (e.g. from `tl-embspace run --layers 29`). Prints the time to build
index.sqlite from the atlas, its size, the median latency of each query over 50 runs, and
whether each token's hits equal a scan of the atlas's arrays (they must).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tl_embspace.atlas import Atlas, SearchIndex, build_index


def brute_force(atlas: Atlas, token_ids: list[int]) -> set[tuple[str, int]]:
    found = set()
    for layer in atlas.layers:
        for table in atlas.layer(layer).vectors.values():
            rows, ranks = np.nonzero(np.isin(table.top_ids, token_ids))
            found |= {(table.labels[r], int(k)) for r, k in zip(rows, ranks, strict=True)}
    return found


def median_ms(fn, runs: int = 50) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(folder: str, tokens: list[str]) -> None:
    atlas = Atlas.open(folder)
    path = Path(tempfile.mkdtemp()) / "index.sqlite"
    t0 = time.perf_counter()
    build_index(atlas, path)
    build_s = time.perf_counter() - t0
    with SearchIndex.open(path) as index:
        counts = index.counts()
        print(
            f"model {atlas.provenance['model_name']}, layers {list(atlas.layers)}: "
            f"{counts['params']} vectors, {counts['hits']} token rows, {counts['pairs']} pairs; "
            f"built in {build_s:.1f} s, {path.stat().st_size / 2**20:.1f} MiB, "
            f"FTS5 {index.meta['fts5']}"
        )
        for token in tokens:
            hits = index.promoting(token, limit=None)
            same = {(h.label, h.rank) for h in hits} == brute_force(atlas, index.token_ids(token))
            ms = median_ms(lambda token=token: index.promoting(token, limit=20))
            print(
                f"promoting {token!r}: {len(hits)} hits, same as brute force: {same}, "
                f"median {ms:.2f} ms"
            )
            if not same:
                raise SystemExit(f"index and brute force disagree on {token!r}")
        ms = median_ms(lambda: index.token_ids("paris", contains=True))
        print(f"tokens containing 'paris': median {ms:.2f} ms")
        ms = median_ms(lambda: index.copying_heads(limit=20))
        print(f"copying heads: median {ms:.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or [" Paris", " the", "ing", " France"])
