"""Importing the OneFlow backends needs no LD_LIBRARY_PATH; the registry finds both.

Runs in a fresh process (this one has already imported OneFlow) with ``LD_LIBRARY_PATH``
removed from the environment: OneFlow 0.9.0's wheel needs cuDNN 8 / cuBLAS 11 even on a CPU
machine, and ``multilr_oneflow`` must load them from the ``nvidia-*-cu11`` wheels itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import multilr

PROBE = r"""
import json, sys
import multilr
out = {"oneflow_after_import_multilr": "oneflow" in sys.modules, "backends": multilr.list_backends()}
import multilr_oneflow
import oneflow
out["eager"] = type(multilr.get_backend("oneflow")).__name__
out["graph"] = type(multilr.get_backend("oneflow-graph")).__name__
m = oneflow.nn.Linear(2, 2)
out["tensor"] = float((m(oneflow.ones(1, 2)) * 0).sum().numpy())
try:
    multilr.get_backend("torch")
    out["torch"] = "found"
except multilr.BackendNotFoundError as exc:
    out["torch"] = str(exc)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe() -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"got exit code {proc.returncode}, should import and run without LD_LIBRARY_PATH:\n{proc.stderr[-3000:]}"
    )
    return json.loads(lines[-1].removeprefix("RESULT "))  # type: ignore[no-any-return]


def test_import_without_ld_library_path(probe: dict[str, object]) -> None:
    assert probe["eager"] == "EagerBackend" and probe["graph"] == "GraphBackend", (
        f"got {probe['eager']}, {probe['graph']}, should be EagerBackend and GraphBackend"
    )
    assert probe["tensor"] == 0.0, f"got {probe['tensor']} from a OneFlow forward, should be 0.0"


def test_import_multilr_loads_no_framework(probe: dict[str, object]) -> None:
    assert probe["oneflow_after_import_multilr"] is False, (
        "got oneflow imported by `import multilr` + list_backends(), should load only when a backend is named"
    )


def test_both_oneflow_backends_listed(probe: dict[str, object]) -> None:
    for name in ("oneflow", "oneflow-graph"):
        assert name in probe["backends"], f"got backends {probe['backends']}, should list {name!r}"  # type: ignore[operator]
    assert "oneflow" in multilr.list_backends() and "oneflow-graph" in multilr.list_backends(), (
        f"got {multilr.list_backends()} in this process, should list both OneFlow backends"
    )


def test_torch_backend_not_installed_names_its_package(probe: dict[str, object]) -> None:
    msg = probe["torch"]
    assert msg != "found", (
        "got a torch backend in the OneFlow venv, should be absent (torch is not installed here)"
    )
    assert "'multilr-torch'" in str(msg) and "not installed" in str(msg), (
        f"got {msg!r}, should name the package multilr-torch"
    )
    with pytest.raises(multilr.BackendNotFoundError) as info:
        multilr.build(object(), {"lr": 0.1}, backend="torch")
    assert "'multilr-torch'" in str(info.value), f"got {info.value}, should name multilr-torch [this process]"
    assert "oneflow" in str(info.value), f"got {info.value}, should list the installed backends"


#: Shown as a literal ``Example::`` block, not run: each compiles an nn.Graph, which OneFlow
#: 0.9 can crash a long-lived process with (the graph cases run in processes of their own).
LITERAL_EXAMPLES = {"add_optimizer", "graph_recorder"}


def test_every_public_function_shows_an_example() -> None:
    # as tests/test_docstrings.py does for the core: the examples run as doctests
    import inspect

    import multilr_oneflow

    functions = [n for n in multilr_oneflow.__all__ if inspect.isfunction(getattr(multilr_oneflow, n))]
    assert len(functions) >= 6 and set(functions) >= LITERAL_EXAMPLES
    for name in functions:
        doc = inspect.getdoc(getattr(multilr_oneflow, name)) or ""
        if name in LITERAL_EXAMPLES:
            assert "Example::" in doc, name
        else:
            assert "Example:" in doc and ">>> " in doc.split("Example:", 1)[1], name
