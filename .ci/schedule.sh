#!/usr/bin/env bash
# The recurring-jobs tests (tests/schedule/) need python-dateutil for their RRULEs (the
# `schedule` extra); without it they skip, saying so. Idempotent and quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c "import dateutil" 2> /dev/null; then
    "$PY" -m pip install -q -e '.[schedule]'
fi
