#!/usr/bin/env bash
# Installs the web UI's npm packages at the versions web/package-lock.json pins (uPlot, and
# playwright-core for the browser tests) and copies the chart library into web/vendor/, from
# where the binary embeds it at build time: building needs no npm, and the pages need no
# internet. Run after changing web/package.json; the tests check web/vendor/ against the
# locked package. Downloads are cached under ~/.cache/quickchat-etl/npm.
#   scripts/vendor-web.sh           install, and refresh web/vendor/
#   scripts/vendor-web.sh install   install only (the tests)
set -euo pipefail
cd "$(dirname "$0")/../web"
cache=${QUICKCHAT_CACHE:-$HOME/.cache/quickchat-etl}
if ! cmp -s package-lock.json node_modules/.installed-lock.json 2>/dev/null; then
  npm ci --cache "$cache/npm" --prefer-offline --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json node_modules/.installed-lock.json
fi
if [ "${1:-}" != install ]; then
  cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE vendor/uplot/
fi
