#!/usr/bin/env bash
# Create (or reuse) .venv-oneflow: Python 3.10 with OneFlow 0.9.0 (runs on the CPU here),
# flowvision 0.2.1, and multilr + multilr-oneflow installed editable. Idempotent (see
# _venv.sh). About 2.3 GB to download and 5 GB installed on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
VENV=.venv-oneflow

venv_is_current "$VENV" requirements/oneflow-dev.txt pyproject.toml backends/oneflow/pyproject.toml && exit 0
PY=$(find_python 3.10) || {
  echo "error: Python 3.10 not found (looked for python3.10 on PATH and under \$(pyenv root)/versions/3.10*)." >&2
  echo "OneFlow 0.9.0 has wheels for CPython 3.7-3.10 only; install Python 3.10 (e.g. pyenv install 3.10)." >&2
  exit 1
}
echo "setting up $VENV with $PY (OneFlow 0.9.0; the first run downloads about 2.3 GB)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_quiet "$VENV" -r requirements/oneflow-dev.txt
pip_quiet "$VENV" --no-deps -e . -e backends/oneflow
"$VENV/bin/python" -c "import multilr_oneflow, flowvision; assert multilr_oneflow.import_oneflow().__version__ == '0.9.0'" 2>/dev/null \
  || { echo "error: the OneFlow environment in $VENV is incomplete" >&2; exit 1; }
write_stamp "$VENV"
