#!/usr/bin/env bash
# Regenerate the architecture coverage table (docs/coverage.md, the README region) and the test
# snapshot (tests/coverage_expected.json) from both TransformerLens lines (.venv = 4.x,
# .venv3 = 3.x; see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
.venv3/bin/python scripts/coverage_table.py --json "$tmp/tl3.json"
.venv/bin/python scripts/coverage_table.py --json "$tmp/tl4.json"
.venv/bin/python scripts/coverage_table.py --write "$tmp/tl4.json" "$tmp/tl3.json"
echo "wrote docs/coverage.md, the README coverage region and tests/coverage_expected.json"
