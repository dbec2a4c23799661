#!/usr/bin/env bash
# Create .venv (if needed) and install edgekd with its test extras.
# torch is installed first with an exact pin: `pip install torch==2.13.0` takes the local CPU wheel,
# while any looser requirement pulls the newest CUDA build (gigabytes). See DEVELOPERS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
