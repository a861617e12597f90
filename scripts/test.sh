#!/usr/bin/env bash
# The README's test command: lint, type-check and test everything, in both environments.
#   torch side  (.venv, Python 3.11):          ruff, mypy, pytest: core, examples, torch backend
#   OneFlow side (.venv-oneflow, Python 3.10): pytest: core (framework-free), OneFlow backend
#   then: the conformance comparison across both environments and its summary matrix
# Extra arguments go to both pytest runs (and skip the comparison, which needs every cell).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env_torch.sh
bash scripts/env_oneflow.sh
V=.venv/bin
# Every conformance cell of every backend writes its trace here (multilr.testing.record).
export MULTILR_TRACES=build/conformance
rm -rf "$MULTILR_TRACES"
# Tests that measure something (fuzzed inputs, resumes, ranks) state it here; printed at the end.
export MULTILR_FIGURES=build/figures
rm -rf "$MULTILR_FIGURES"
echo "== ruff"; "$V/ruff" check .
echo "== mypy"; "$V/mypy"
echo "== pytest: torch side (Python 3.11)"
"$V/python" -m pytest -q -n 2 -p no:cacheprovider "$@"
echo "== pytest: OneFlow side (Python 3.10)"
# Graph cases start their own processes (OneFlow can abort a process after a failed compile).
# These doctests are torch examples (plot_rates: matplotlib), checked on the torch side.
.venv-oneflow/bin/python -m pytest -q -n 2 -p no:cacheprovider \
  --deselect multilr/_build.py::multilr._build.build \
  --deselect multilr/_checkpoint.py::multilr._checkpoint.state_dict \
  --deselect multilr/_checkpoint.py::multilr._checkpoint.load_state_dict \
  --deselect multilr/_control.py::multilr._control.Controller \
  --deselect multilr/_finder.py::multilr._finder.lr_find \
  --deselect multilr/_plot.py::multilr._plot.plot_rates \
  --deselect multilr/testing/_harness.py::multilr.testing._harness.TorchLikeHarness \
  multilr tests/test_spec.py tests/test_plan.py tests/test_depth.py tests/test_registry.py \
  tests/test_testing.py tests/test_testing_strictness.py tests/test_recorder.py tests/test_runtime_spec.py tests/test_hints.py tests/test_towers.py \
  backends/oneflow "$@"
if [ "$#" -eq 0 ]; then
  echo "== conformance: every backend's traces, every pair, the summary"
  "$V/python" -m multilr.testing compare "$MULTILR_TRACES" --backends torch,oneflow,oneflow-graph
else
  echo "== conformance comparison skipped: pytest was given arguments, so not every cell ran"
fi
echo "== figures stated by the tests"
"$V/python" -m multilr.testing figures "$MULTILR_FIGURES"
