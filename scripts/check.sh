#!/usr/bin/env bash
# The static checks CI runs before the tests (needs scripts/setup.sh first; tools live in .venv).
#   ruff (lint + format), pyright (basic) on the package, codespell, import-linter contracts.
# `bash scripts/check.sh --fix` applies ruff's fixes and formatting instead of only checking.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
status=0
run() { echo "== $*"; "$@" || status=1; }
if [ "${1:-}" = "--fix" ]; then
  "$bin/ruff" check --fix . && "$bin/ruff" format .
fi
run "$bin/ruff" check .
run "$bin/ruff" format --check .
run "$bin/pyright" tl_embspace
run "$bin/codespell"
run "$bin/lint-imports"
exit $status
