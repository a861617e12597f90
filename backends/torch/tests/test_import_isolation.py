"""``import multilr`` loads no framework; naming a backend loads exactly that one.

Each check runs in a fresh interpreter (this test process has torch loaded already)
and reports which of the watched modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

WATCHED = ("torch", "oneflow", "multilr_torch", "transformers", "matplotlib")

PRELUDE = f"""
import json, sys
import multilr
def loaded():
    return sorted(m for m in {WATCHED!r} if m in sys.modules)
"""


def run(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"got exit code {proc.returncode}, should be 0; stderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASES = [
    pytest.param(
        "names = multilr.list_backends()\nprint(json.dumps({'loaded': loaded(), 'names': names}))",
        [],
        id="list-backends",
    ),
    pytest.param(
        "infos = [multilr.ParamInfo(n, (4,), 'float32', n[:-2], ('Linear',), True, n)"
        " for n in ('a.w', 'b.w')]\n"
        "p = multilr.plan(infos, {'lr': 0.1, 'rules': [{'prefix': 'b', 'lr_mult': 2}]})\n"
        "print(json.dumps({'loaded': loaded(), 'names': [g.name for g in p.groups]}))",
        [],
        id="plan-from-paraminfo",
    ),
    pytest.param(
        "b = multilr.get_backend('torch')\nprint(json.dumps({'loaded': loaded(), 'names': [b.name]}))",
        ["multilr_torch", "torch"],
        id="get-backend-torch",
    ),
]


@pytest.mark.parametrize(("code", "should"), CASES)
def test_frameworks_load_only_when_named(code: str, should: list[str]) -> None:
    out = run(code)
    assert out["loaded"] == should, f"got {out['loaded']} in sys.modules, should be {should}"
    assert out["names"], f"got {out['names']}, should be non-empty [the call must have done its work]"


def test_list_backends_finds_torch_without_loading_it() -> None:
    out = run("print(json.dumps({'loaded': loaded(), 'names': multilr.list_backends()}))")
    assert "torch" in out["names"], f"got backends {out['names']}, should include 'torch'"
    assert "torch" not in out["loaded"], f"got {out['loaded']} loaded, should not include torch"
