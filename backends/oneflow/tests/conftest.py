"""Test set-up for the OneFlow backends.

Run with the OneFlow venv (Python 3.10)::

    .venv-oneflow/bin/python -m pytest -q -p no:cacheprovider backends/oneflow/tests

Eager cases run in this process. Every case that compiles an ``nn.Graph`` runs in a
fresh subprocess through ``_graph_case.py`` (see its docstring for why), via the
``run_case`` fixture. The shared model, spec and gradients come from the ``cases``
fixture, which is that same module (pytest's ``--import-mode=importlib`` makes these
tests modules of the namespace package ``backends.oneflow.tests``: siblings are
imported relatively, ``from . import _conformance``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

RUNNER = Path(__file__).with_name("_graph_case.py")

#: One case: OneFlow import (~3 s) + graph compile (~1-2 s) + a few steps; generous for a
#: loaded 2-core machine, still far below a hang.
CASE_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def cases() -> ModuleType:
    """``_graph_case.py`` as a module: ``make_model``, ``make_spec``, ``gradient``, ..."""
    from . import _graph_case  # imported here: it imports OneFlow

    return _graph_case


def run_graph_process(
    command: list[str], what: str, *, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a process that compiles an ``nn.Graph``; one killed by a signal runs once more.

    OneFlow 0.9 crashed at random in ~2% of long-lived graph runs (a SIGABRT, also seen in
    a loaded ``make test``), and such runs passed when rerun fresh; the rerun comes with a
    warning naming ``what``. The caller judges the second result.
    """
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode < 0:
        warnings.warn(
            f"{what} died with signal {-proc.returncode}; rerunning it once in a fresh process", stacklevel=2
        )
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return proc


def run_graph_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one graph case in a fresh process; its ``RESULT`` JSON, or a failure with its output.

    A process killed by a signal is run once more (:func:`run_graph_process`); a second
    crash, a non-zero exit or a missing result fails the test.
    """
    command = [sys.executable, str(RUNNER), json.dumps(case)]
    proc = run_graph_process(command, f"graph case {case}", timeout=CASE_TIMEOUT_S, cwd=RUNNER.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"got exit code {proc.returncode} and {len(lines)} RESULT lines from graph case {case}, "
            f"should be 0 and 1\n--- stdout (tail) ---\n{proc.stdout[-3000:]}\n"
            f"--- stderr (tail) ---\n{proc.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    if set(result) == {"error", "traceback"}:
        pytest.fail(f"graph case {case} raised, should have run:\n{result['traceback']}")
    return result


@pytest.fixture(scope="session")
def graph_process() -> Any:
    """:func:`run_graph_process`, for tests that start a graph process of their own."""
    return run_graph_process


@pytest.fixture(scope="session")
def run_case() -> Any:
    """Call ``run_case({"kind": ..., ...})`` to run a graph case in its own process."""
    return run_graph_case
