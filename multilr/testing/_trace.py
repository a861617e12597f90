"""Traces across environments, the pairwise comparison of backends, and the summary matrix.

Each test process appends one JSON line per cell to ``<dir>/<backend>.<pid>.jsonl``
(:func:`record`, when ``MULTILR_TRACES`` names ``<dir>``): status, expected-failure
reason, messages, effective rate per tensor per step, final parameters. Backends live
in different Python environments (OneFlow 0.9 needs Python 3.10, PyTorch 2.13 has no
3.10 wheels), so only files can bring them together: :func:`compare` reads every trace,
fails if a named backend or any of its cells is missing, compares every pair of
backends on the cells both passed, and prints the matrix.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from multilr.testing._cases import OPTIMIZERS, all_cases, case_by_id
from multilr.testing._check import CellResult, tolerance

__all__ = ["TRACE_ENV", "Comparison", "compare", "load_traces", "record"]

#: Environment variable naming the trace directory; unset: nothing is recorded.
TRACE_ENV = "MULTILR_TRACES"

_FAILED = ("failed", "xpass", "unsupported")


def record(result: CellResult, directory: str | os.PathLike[str] | None = None) -> Path | None:
    """Append ``result`` to this process's trace file for its backend.

    Args:
        result: A checked cell.
        directory: Trace directory; default: ``$MULTILR_TRACES`` (nothing recorded if unset).

    Returns:
        The file written, or ``None``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = record(CellResult("mine", "sgd-step-frozen"), d)
        ...     path.name.startswith("mine."), load_traces(d)["mine"]["sgd-step-frozen"]["status"]
        (True, 'passed')
    """
    where = directory if directory is not None else os.environ.get(TRACE_ENV)
    if not where:
        return None
    path = Path(where) / f"{result.backend}.{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(result.to_json()) + "\n")
    return path


def load_traces(directory: str | os.PathLike[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every recorded cell: backend -> case id -> record (the last record wins).

    Files are read oldest first (by modification time), so a run traced into a folder
    that still holds an earlier run's files overrides it; ``<backend>.<pid>.jsonl``
    names sort by pid as text, which says nothing about which run came last.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = record(CellResult("mine", "sgd-step-frozen", status="failed"), d)
        ...     _ = record(CellResult("mine", "sgd-step-frozen"), d)  # the last record wins
        ...     {b: {c: r["status"] for c, r in cells.items()} for b, cells in load_traces(d).items()}
        {'mine': {'sgd-step-frozen': 'passed'}}
    """
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    paths = sorted(Path(directory).glob("*.jsonl"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                out[rec["backend"]][rec["case"]] = rec
    return dict(out)


@dataclass
class Comparison:
    """What :func:`compare` found.

    Attributes:
        counts: backend -> status -> number of cells (``missing`` included).
        by_optimizer: (backend, optimizer) -> status -> number of cells.
        expected: backend -> reason -> number of cells that failed as expected.
        pairs: (backend a, backend b) -> number of cells compared.
        problems: Every failure, missing trace and disagreement, readable.
    """

    backends: Sequence[str]
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    by_optimizer: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    expected: dict[str, Counter[str]] = field(default_factory=dict)
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No failure, nothing missing, every pair agrees."""
        return not self.problems

    def matrix(self) -> str:
        """The summary printed at the end of the test run."""
        n = len(all_cases())
        lines = [f"multilr conformance: {n} cases x {len(self.backends)} backends", ""]
        head = f"{'backend':<16}{'passed':>8}{'expected-failure':>18}{'failed':>8}{'missing':>9}"
        lines += [head, "-" * len(head)]
        for b in self.backends:
            c = self.counts.get(b, Counter())
            failed = sum(c[s] for s in _FAILED)
            lines.append(f"{b:<16}{c['passed']:>8}{c['xfail']:>18}{failed:>8}{c['missing']:>9}")
        optimizers = list(OPTIMIZERS)
        lines += ["", "per optimizer (passed/expected-failure/failed):"]
        lines.append(f"{'optimizer':<12}" + "".join(f"{b:>16}" for b in self.backends))
        for o in optimizers:
            row = f"{o:<12}"
            for b in self.backends:
                c = self.by_optimizer.get((b, o), Counter())
                failed = sum(c[s] for s in (*_FAILED, "missing"))
                row += f"{c['passed']}/{c['xfail']}/{failed}".rjust(16)
            lines.append(row)
        if any(self.expected.values()):
            lines += ["", "expected failures:"]
            for b in self.backends:
                for reason, k in sorted(self.expected.get(b, Counter()).items()):
                    lines.append(f"  {b}: {k} cells: {reason}")
        if self.pairs:
            lines += ["", "pairs (cells passed by both; rates and final parameters compared):"]
            for (a, b), k in self.pairs.items():
                lines.append(f"  {a} ~ {b}: {k} cells")
        if self.problems:
            lines += ["", f"PROBLEMS ({len(self.problems)}):"] + [f"  {p}" for p in self.problems[:40]]
            if len(self.problems) > 40:
                lines.append(f"  ... and {len(self.problems) - 40} more")
        lines += ["", "conformance: OK" if self.ok else "conformance: FAILED"]
        return "\n".join(lines)


def compare(directory: str | os.PathLike[str], backends: Iterable[str]) -> Comparison:
    """Check the traces of ``backends`` in ``directory`` against each other.

    Args:
        directory: Where the test runs wrote their traces.
        backends: The backends that must be there (all of them, every case).

    Returns:
        The comparison; ``.ok`` and ``.matrix()``.

    Example:
        >>> import tempfile
        >>> from multilr.testing import ReferenceHarness, check_backend
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = check_backend(ReferenceHarness(), cases=all_cases()[:2], trace_dir=d)
        ...     result = compare(d, ["reference"])  # every case must be there: 186 are missing
        >>> result.ok, result.counts["reference"]["passed"], result.problems[0]
        (False, 2, 'reference-sgd-step-per_tensor: missing')
    """
    names = list(backends)
    traces = load_traces(directory)
    out = Comparison(names)
    ids = [c.id for c in all_cases()]
    for b in names:
        cells = traces.get(b, {})
        counts: Counter[str] = Counter()
        if not cells:
            out.problems.append(f"{b}: no traces in {directory} (did its test run happen?)")
        for cid in ids:
            rec = cells.get(cid)
            status = rec["status"] if rec else "missing"
            counts[status] += 1
            out.by_optimizer.setdefault((b, case_by_id(cid).optimizer), Counter())[status] += 1
            if rec and status == "xfail":
                out.expected.setdefault(b, Counter())[rec["reason"]] += 1
            if status in (*_FAILED, "missing") and cells:
                first = rec["messages"][0].splitlines()[0] if rec and rec["messages"] else ""
                out.problems.append(f"{b}-{cid}: {status}" + (f": {first}" if first else ""))
        out.counts[b] = counts
    for a, b in combinations(names, 2):
        both = [c for c in ids if _passed(traces, a, c) and _passed(traces, b, c)]
        out.pairs[(a, b)] = len(both)
        for cid in both:
            out.problems += _disagreements(a, b, cid, traces[a][cid], traces[b][cid])
    return out


def _passed(traces: Mapping[str, Mapping[str, Mapping[str, Any]]], backend: str, cid: str) -> bool:
    rec = traces.get(backend, {}).get(cid)
    return rec is not None and rec["status"] == "passed"


def _disagreements(a: str, b: str, cid: str, ra: Mapping[str, Any], rb: Mapping[str, Any]) -> list[str]:
    case = case_by_id(cid)
    # each side is within tolerance of the reference, so within twice it of each other
    rtol, ptol = (2 * x for x in tolerance(case))
    out = []
    for name in case.names():
        xa, xb = np.asarray(ra["rates"][name]), np.asarray(rb["rates"][name])
        # compared as 'not within', so that a NaN on either side is a disagreement
        if xa.shape != xb.shape or not np.all(np.abs(xa - xb) <= rtol * np.maximum(np.abs(xa), np.abs(xb))):
            out.append(
                f"{a} ~ {b} on {cid}: effective rates of {name} differ: {xa.tolist()} vs {xb.tolist()}"
            )
        fa, fb = np.asarray(ra["final"][name]), np.asarray(rb["final"][name])
        if fa.shape != fb.shape or not np.abs(fa - fb).max() <= ptol * max(1.0, float(np.abs(fa).max())):
            out.append(f"{a} ~ {b} on {cid}: final {name} differs by {np.abs(fa - fb).max():.3g}")
    return out
