"""The conformance suite on ``oneflow`` (eager) and ``oneflow-graph``.

Every shared case of :mod:`multilr.testing`, on both OneFlow backends, checked against
the NumPy reference; where OneFlow genuinely differs from PyTorch's formulas, or nn.Graph
cannot run a case, the cell is an expected failure with its reason (``_conformance.py``).
With ``MULTILR_TRACES`` set, every cell is recorded for the cross-environment comparison.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import multilr_oneflow
import pytest

from multilr.testing import (
    Cell,
    TorchLikeHarness,
    all_cases,
    assert_conformance,
    check_backend,
    conformance_cells,
)

from . import _conformance as conf  # a sibling module (pytest's importlib mode allows this)

EAGER = TorchLikeHarness(multilr_oneflow.import_oneflow(), "oneflow")


@pytest.fixture(scope="module")
def graph() -> Iterator[Any]:
    server = conf.GraphServer()
    yield server
    server.close()


@pytest.mark.parametrize("cell", conformance_cells("oneflow", conf.EAGER_EXPECTED))
def test_eager(cell: Cell) -> None:
    assert_conformance(EAGER, cell)


@pytest.mark.parametrize("cell", conformance_cells("oneflow-graph", conf.GRAPH_EXPECTED))
def test_graph(cell: Cell, graph: Any) -> None:
    assert_conformance(graph, cell)


@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_graph_groups_in_eager_mode_are_caught(family: str) -> None:
    """A real mistake: ``oneflow-graph`` groups (base ``lr`` + ``lr_scale``) given to an eager
    optimizer, which ignores ``lr_scale``: every scale is dropped, and every cell must fail."""
    wrong = TorchLikeHarness(multilr_oneflow.import_oneflow(), "oneflow-graph", name="graph-groups-in-eager")
    # not the controlled cases: multilr.Controller refuses graph groups before anything trains
    cases = [c for c in all_cases() if c.setup.kind.startswith(family) and c.dtype == "float32"]
    cases = [c for c in cases if not c.controlled]
    cases = [c for c in cases if c.optimizer not in conf.EAGER_EXPECTED_OPTIMIZERS][::3]
    report = check_backend(wrong, cases=cases)
    assert cases and all(r.status == "failed" for r in report.results), report.summary()
    assert all(any("trained at rate" in m for m in r.messages) for r in report.results)
