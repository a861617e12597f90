#!/usr/bin/env bash
# The README's test command: lint, type-check and test everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env_torch.sh
V=.venv/bin
echo "== ruff"; "$V/ruff" check .
echo "== mypy"; "$V/mypy"
echo "== pytest (torch, Python 3.11)"; "$V/python" -m pytest -q -n 2 -p no:cacheprovider "$@"
