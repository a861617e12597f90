#!/usr/bin/env bash
# The README's test command: lint, type-check and test everything, in both environments.
#   torch side  (.venv, Python 3.11):          ruff, mypy, pytest: core, examples, torch backend
#   OneFlow side (.venv-oneflow, Python 3.10): pytest: core (framework-free), OneFlow backend
# Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env_torch.sh
bash scripts/env_oneflow.sh
V=.venv/bin
echo "== ruff"; "$V/ruff" check .
echo "== mypy"; "$V/mypy"
echo "== pytest: torch side (Python 3.11)"
"$V/python" -m pytest -q -n 2 -p no:cacheprovider "$@"
echo "== pytest: OneFlow side (Python 3.10)"
# Graph cases start their own processes (OneFlow can abort a process after a failed compile).
# build()'s doctest is a torch example, checked on the torch side.
.venv-oneflow/bin/python -m pytest -q -p no:cacheprovider \
  --deselect multilr/_build.py::multilr._build.build \
  multilr tests/test_spec.py tests/test_plan.py tests/test_depth.py tests/test_registry.py \
  backends/oneflow "$@"
