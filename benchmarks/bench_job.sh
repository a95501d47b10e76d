#!/usr/bin/env bash
# Time the main job on the default model (offline SmolLM2, all 30 layers) and report peak memory.
#   bash benchmarks/bench_job.sh [extra CLI args, e.g. --layers 0 1]
# Prints the job's own per-stage timings (from manifest.json) and /usr/bin/time's wall clock and
# maximum resident set size. Needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)/run
HF_HUB_OFFLINE=1 /usr/bin/time -v .venv/bin/python -m tl_embspace run --out "$out" --no-progress "$@" 2>"$out.time"
grep -E "Elapsed \(wall clock\)|Maximum resident set size" "$out.time"
.venv/bin/python - "$out" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/manifest.json"))
t = m["timings_s"]
per_layer = list(t["layers"].values())
print(f"layers: {len(per_layer)}, per layer: min {min(per_layer):.1f}s, max {max(per_layer):.1f}s; "
      f"copying scores {t['copying_scores']:.1f}s; job total {t['total']:.1f}s (excluding model load)")
PY
du -sh "$out"
