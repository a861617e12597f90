#!/usr/bin/env bash
# Create (or reuse) .venv-oneflow: Python 3.10 with OneFlow 0.9.0 (runs on the CPU here),
# flowvision 0.2.1, and multilr + multilr-oneflow installed editable. Idempotent: a
# stamp of the inputs skips the work when nothing changed. About 2.3 GB to download
# and 5 GB installed on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-oneflow

find_python310() {
  local c
  if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
    command -v python3.10; return 0
  fi
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/3.10*/bin/python; do [ -x "$c" ] && { echo "$c"; return 0; }; done
  fi
  return 1
}

stamp_inputs() { cat requirements/oneflow-dev.txt pyproject.toml backends/oneflow/pyproject.toml | sha256sum | cut -d' ' -f1; }

want=$(stamp_inputs)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.multilr-stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
PY=$(find_python310) || {
  echo "error: Python 3.10 not found (looked for python3.10 on PATH and under \$(pyenv root)/versions/3.10*)." >&2
  echo "OneFlow 0.9.0 has wheels for CPython 3.7-3.10 only; install Python 3.10 (e.g. pyenv install 3.10)." >&2
  exit 1
}
echo "setting up $VENV with $PY (OneFlow 0.9.0; the first run downloads about 2.3 GB)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/oneflow-dev.txt 2>&1 | grep -v -E "^WARNING: Location|DEPRECATION|legacy 'setup.py install'" >&2 || true
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e . -e backends/oneflow 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$VENV/bin/python" -c "import multilr_oneflow, flowvision; assert multilr_oneflow.import_oneflow().__version__ == '0.9.0'" 2>/dev/null \
  || { echo "error: the OneFlow environment in $VENV is incomplete" >&2; exit 1; }
echo "$want" > "$VENV/.multilr-stamp"
