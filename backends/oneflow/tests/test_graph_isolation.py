"""OneFlow graph isolation: one failed compile, or a process it kills, cannot abort the rest.

OneFlow 0.9 can abort the whole process after a failed ``nn.Graph`` compile, and crashed
at random in long-lived graph runs. So no graph compiles in the pytest process: the
conformance cells go through ``GraphServer`` (a served subprocess, replaced when it dies)
and every other graph case through ``run_case`` (a fresh process each). These tests make
a real graph fail to compile, and a process die right after, then run a real case next.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from multilr.testing import case_by_id, check_cell, state_figure

# a sibling module: the same object as test_conformance.py's (pytest's importlib mode
# names these tests as modules of the namespace package backends.oneflow.tests)
from . import _conformance as conf

CASE = "sgd-step-layer_decay"  # a real conformance cell nn.Graph passes


def _passes_next(server: Any) -> None:
    result = check_cell(server, case_by_id(CASE))
    assert result.status == "passed", (
        f"got {result.status} for {CASE} after the probe, should pass: {result.messages}"
    )


def test_the_server_reports_a_failed_compile_and_runs_the_next_case() -> None:
    server = conf.GraphServer()
    try:
        out = server._ask("probe:failed-compile")
        assert out is not None, "got a dead process, should have reported the failed compile"
        assert "cannot compile" in out.get("error", ""), f"got {out}, should carry the compile error"
        _passes_next(server)
        state_figure(
            "oneflow.isolation.1-compile",
            f"oneflow isolation: served graph process reported a failed compile; next cell {CASE} passed",
        )
    finally:
        server.close()


def test_the_server_replaces_a_process_that_died_after_a_failed_compile() -> None:
    server = conf.GraphServer()
    try:
        first = server._proc
        assert server._ask("probe:abort") is None, "got a result, the process should have died"
        _passes_next(server)
        assert server._proc is not None and server._proc is not first, (
            "should run the next case in a fresh process"
        )
        state_figure(
            "oneflow.isolation.2-abort",
            f"oneflow isolation: served graph process died after a failed compile; replaced, next cell {CASE} passed",
        )
    finally:
        server.close()


def test_a_graph_case_process_that_aborts_leaves_the_next_one_running(run_case: Any) -> None:
    runner = Path(__file__).with_name("_graph_case.py")
    probe = json.dumps({"kind": "failed-compile", "abort": True})
    dead = subprocess.run([sys.executable, str(runner), probe], capture_output=True, text=True, timeout=120)
    assert dead.returncode < 0, f"got exit code {dead.returncode}, the probe should have died by a signal"
    r = run_case({"kind": "rates", "opt": "sgd", "sched": "step"})
    first = r["steps"][0]
    moved = [n for n in first["grads"] if first["after"][n] != first["before"][n]]
    assert moved == list(first["grads"]), (
        f"got {moved} moved, should be every trained tensor {list(first['grads'])}"
    )
    state_figure(
        "oneflow.isolation.3-per-case",
        "oneflow isolation: a per-case graph process killed after a failed compile; the next case ran (every tensor moved)",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
