"""Seeds 001, 002 and 004 (examples/seed_workflows.py) on OneFlow: eager runs all three; nn.Graph runs 001
and refuses 002 (per-part schedules) and 004 (stages) with a message that says why and what to use.

Graph runs go through the example's command line in their own process (a failed compile
can abort a OneFlow process).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import multilr_oneflow
import pytest

import multilr

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "seed_workflows.py"
sys.path.insert(0, str(EXAMPLE.parent))
import seed_workflows  # noqa: E402

flow = multilr_oneflow.import_oneflow()


def _graph(graph_process: Any, seed: str) -> dict:
    """The example's JSON from a process of its own (a death by signal is rerun once, conftest)."""
    command = [sys.executable, str(EXAMPLE), "--seed", seed, "--backend", "oneflow-graph", "--json"]
    out = graph_process(command, f"seed {seed} on oneflow-graph", timeout=300)
    assert out.returncode == 0, f"seed {seed} on oneflow-graph exited {out.returncode}:\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("seed", ["001", "002", "004"])
def test_eager_trains_at_the_planned_rates(seed: str) -> None:
    run = seed_workflows.run(seed, "oneflow")
    model = seed_workflows.make_model(flow, seed)
    spec = multilr.Spec.from_yaml(seed_workflows.SPECS[seed])
    planned = multilr.planned_rates(multilr.build(model, spec, backend="oneflow").plan, len(run["rates"]))
    for t, rates in enumerate(run["rates"]):
        assert rates == pytest.approx(planned.at(t), rel=1e-12), f"step {t}"
    assert all(math.isfinite(v) for v in run["losses"])


def test_graph_runs_seed_001_at_the_eager_rates(graph_process: Any) -> None:
    graph = _graph(graph_process, "001")
    eager = seed_workflows.run("001", "oneflow")
    assert graph["groups"] == eager["groups"]
    for t, (g, e) in enumerate(zip(graph["rates"], eager["rates"], strict=True)):
        assert g == pytest.approx(e, rel=1e-9), f"step {t}"
    # same weights, batches and rates: the graph trains as eager mode does
    assert graph["losses"] == pytest.approx(eager["losses"], rel=1e-4)


@pytest.mark.parametrize(
    ("seed", "words"),
    [
        ("002", ("own schedule", "backend='oneflow'")),
        ("004", ("stage", "requires_grad", "backend='oneflow'")),
    ],
    ids=["002-own-schedules", "004-stages"],
)
def test_graph_refuses_what_it_cannot_run(graph_process: Any, seed: str, words: tuple[str, ...]) -> None:
    result = _graph(graph_process, seed)
    assert result.get("refused") == "UnsupportedFeatureError", f"got {result}, should be refused"
    for word in words:
        assert word in result["message"], f"got {result['message']!r}, should mention {word!r}"


def test_seed_004_finder_leaves_the_eager_run_as_it_was() -> None:
    with_finder = seed_workflows.run("004", "oneflow")
    without = seed_workflows.run("004", "oneflow", finder=False)
    assert with_finder["losses"] == without["losses"], "the finder changed the training that followed"
    assert 1e-4 < with_finder["suggestion"] < 10
