#!/usr/bin/env bash
# Create (or reuse) .venv: Python 3.11 with torch 2.13.0 CPU, multilr and multilr-torch
# installed editable, and the dev tools. Idempotent (see _venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
VENV=.venv

venv_is_current "$VENV" requirements/torch-dev.txt pyproject.toml backends/torch/pyproject.toml && exit 0
PY=$(find_python 3.11) || { echo "error: Python 3.11 not found (looked for python3.11 on PATH and under pyenv)" >&2; exit 1; }
echo "setting up $VENV with $PY (torch 2.13.0 CPU; first run takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_quiet "$VENV" -r requirements/torch-dev.txt
pip_quiet "$VENV" --no-deps -e . -e backends/torch
"$VENV/bin/python" -c "import torch, multilr, multilr_torch; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
  || { echo "error: the torch environment in $VENV is incomplete" >&2; exit 1; }
write_stamp "$VENV"
