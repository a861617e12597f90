#!/usr/bin/env bash
# Create (or reuse) .venv: Python 3.11 with torch 2.13.0 CPU, multilr and multilr-torch
# installed editable, and the dev tools. Idempotent: a stamp of the inputs skips the
# work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv

find_python311() {
  local c
  for c in python3.11 "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/3.11.7/bin/python")" python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/3.11*/bin/python; do [ -x "$c" ] && { echo "$c"; return 0; }; done
  fi
  return 1
}

stamp_inputs() { cat requirements/torch-dev.txt pyproject.toml backends/torch/pyproject.toml | sha256sum | cut -d' ' -f1; }

want=$(stamp_inputs)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.multilr-stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
PY=$(find_python311) || { echo "error: Python 3.11 not found (looked for python3.11 on PATH and under pyenv)" >&2; exit 1; }
echo "setting up $VENV with $PY (torch 2.13.0 CPU; first run takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/torch-dev.txt 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e . -e backends/torch 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$VENV/bin/python" -c "import torch, multilr, multilr_torch; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
  || { echo "error: the torch environment in $VENV is incomplete" >&2; exit 1; }
echo "$want" > "$VENV/.multilr-stamp"
