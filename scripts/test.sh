#!/usr/bin/env bash
# Run the whole test suite on both TransformerLens lines (needs scripts/setup.sh first).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not real"`.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for venv in .venv .venv3; do
  echo "== $venv: transformer-lens $("$venv/bin/python" -c 'from importlib.metadata import version; print(version("transformer-lens"))')"
  HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" || status=1
done
exit $status
