#!/usr/bin/env bash
# A screenshot of one view of an HTML atlas, taken in headless Chromium from file:// (what the
# README's docs/atlas.png is):
#   bash scripts/atlas_screenshot.sh ATLAS_DIR OUT.png ['#layer=29&head=1'] [WIDTH,HEIGHT]
# The view's data loads within Chromium's virtual-time budget, as in tests/test_browser.py.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 ATLAS_DIR OUT.png ['#layer=29&head=1'] [1280,900]" >&2
  exit 2
fi
atlas=$(cd "$1" && pwd)
out=$2
view=${3:-}
size=${4:-1280,900}
[ -f "$atlas/index.html" ] || { echo "error: $atlas/index.html not found (tl-embspace atlas $1)" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome) || {
  echo "error: headless Chromium is not installed (apt-get install chromium)" >&2
  exit 2
}
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --allow-file-access-from-files \
  --virtual-time-budget=15000 --window-size="$size" --screenshot="$out" "file://$atlas/index.html$view" \
  2>/dev/null
echo "wrote $out"
