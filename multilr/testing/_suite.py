"""Running the suite: expected failures, ``check_backend`` and the pytest helpers.

A backend states its expected failures as ``{pattern: reason}``, where ``pattern`` is an
``fnmatch`` pattern over case ids (``"dampening-*"``). An expected failure is strict:
a listed cell that passes is reported (``xpass``) so the list stays true, and a
pattern that matches no case is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from multilr.testing._cases import Case, all_cases
from multilr.testing._check import CellResult, Harness, check_cell
from multilr.testing._trace import record

__all__ = ["Cell", "Report", "assert_conformance", "check_backend", "conformance_cells", "expected_reason"]


def expected_reason(case_id: str, expected_failures: Mapping[str, str] | None) -> str:
    """The reason of the first pattern matching ``case_id``, or ``""``.

    Example:
        >>> expected_reason("dampening-step-mixed", {"dampening-*": "buffer starts at 0"})
        'buffer starts at 0'
    """
    for pattern, reason in (expected_failures or {}).items():
        if fnmatchcase(case_id, pattern):
            return reason
    return ""


def _validate(expected_failures: Mapping[str, str] | None, cases: Iterable[Case]) -> None:
    ids = [c.id for c in cases]
    for pattern, reason in (expected_failures or {}).items():
        if not reason.strip():
            raise ValueError(f"expected failure {pattern!r} needs a reason")
        if not any(fnmatchcase(i, pattern) for i in ids):
            raise ValueError(f"expected failure {pattern!r} matches no case id (ids look like {ids[0]!r})")


@dataclass(frozen=True)
class Cell:
    """One backend x case, with its expected-failure reason (``""`` if none)."""

    backend: str
    case: Case
    expected_failure: str = ""

    @property
    def id(self) -> str:
        """``backend-optimizer-schedule-feature``."""
        return f"{self.backend}-{self.case.id}"


def conformance_cells(
    backend: str, expected_failures: Mapping[str, str] | None = None, cases: Iterable[Case] | None = None
) -> list[Any]:
    """``pytest.param`` per cell, with readable ids, for ``@pytest.mark.parametrize("cell", ...)``.

    Args:
        backend: Name in the ids (``torch-adamw-step-layer_decay``).
        expected_failures: ``{case-id pattern: reason}``.
        cases: Cases to run (default: all shared cases).

    Example:
        >>> cells = conformance_cells("mine", {"rmsprop-*": "eps inside the sqrt"})
        >>> cells[0].id, len(cells)
        ('mine-sgd-step-head_backbone', 201)
    """
    import pytest  # only here: multilr.testing itself must import without pytest

    chosen = list(cases if cases is not None else all_cases())
    _validate(expected_failures, chosen)
    return [
        pytest.param(Cell(backend, c, expected_reason(c.id, expected_failures)), id=f"{backend}-{c.id}")
        for c in chosen
    ]


def assert_conformance(harness: Harness, cell: Cell) -> CellResult:
    """Check one cell inside a pytest test: pass, xfail with its reason, or fail with the details.

    The result is recorded in the trace directory when ``MULTILR_TRACES`` is set.

    Example:
        >>> from unittest import mock
        >>> from multilr.testing import ReferenceHarness, case_by_id
        >>> cell = Cell("reference", case_by_id("sgd-step-frozen"))
        >>> with mock.patch.dict("os.environ", {"MULTILR_TRACES": ""}):  # record no trace here
        ...     assert_conformance(ReferenceHarness(), cell).status
        'passed'
    """
    import pytest

    result = check_cell(harness, cell.case, expected_failure=cell.expected_failure)
    result.backend = cell.backend
    record(result)
    if result.status == "xfail":
        first = result.messages[0].splitlines()[0] if result.messages else ""
        pytest.xfail(f"{cell.expected_failure} [{first}]")
    if not result.ok:
        pytest.fail(result.describe(), pytrace=False)
    return result


@dataclass
class Report:
    """Results of :func:`check_backend`."""

    results: list[CellResult]

    @property
    def ok(self) -> bool:
        """Every cell passed or failed as expected."""
        return all(r.ok for r in self.results)

    def failures(self) -> list[CellResult]:
        """The cells that did not pass and were not expected to fail."""
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        """Counts per status, then every unexpected result."""
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        head = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        backend = self.results[0].backend if self.results else "?"
        return "\n".join(
            [f"{backend}: {len(self.results)} cells; {head}"] + [r.describe(3) for r in self.failures()]
        )


def check_backend(
    harness: Harness,
    *,
    expected_failures: Mapping[str, str] | None = None,
    cases: Iterable[Case] | None = None,
    trace_dir: str | None = None,
) -> Report:
    """Run the suite on one backend, without pytest.

    Args:
        harness: The backend's harness.
        expected_failures: ``{case-id pattern: reason}``.
        cases: Cases to run (default: all).
        trace_dir: Also record every cell there (see :func:`~multilr.testing.record`).

    Example:
        >>> from multilr.testing import ReferenceHarness, all_cases
        >>> report = check_backend(ReferenceHarness(), cases=all_cases()[:4])
        >>> report.ok, report.summary()
        (True, 'reference: 4 cells; passed: 4')
    """
    chosen = list(cases if cases is not None else all_cases())
    _validate(expected_failures, chosen)
    results = []
    for case in chosen:
        result = check_cell(harness, case, expected_failure=expected_reason(case.id, expected_failures))
        if trace_dir is not None:
            record(result, trace_dir)
        results.append(result)
    return Report(results)
