#!/usr/bin/env bash
# What the dashboard tests (tests/dashboard/) need: Debian's chromium and chromium-driver
# (a real headless browser), npm (to fetch the pinned chart library), and in the venv
# Selenium, prometheus-client (the 'dashboard' extra) and the chart library in the package.
# Usage: bash .ci/dashboard.sh [VENV]   (default .venv; made if missing). Idempotent, quiet.
# Without root or apt-get the browser is not installed, and the browser tests skip saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v npm > /dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
    else
        echo "dashboard.sh: not root or no apt-get: ${missing[*]} not installed" >&2
    fi
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "selenium>=4.10,<5" -e ".[dashboard]"
if command -v npm > /dev/null; then
    "$VENV/bin/python" scripts/vendor_uplot.py > /dev/null
fi
