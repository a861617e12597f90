"""Figures a test run states at its end: fuzzed inputs, resumes compared, ranks compared.

A test that measures something the README's test command must print (issue 6: "their
output states the figures") calls :func:`state_figure`; pytest hides a passing test's
output (and xdist runs tests in other processes), so each figure goes to a small file
under ``$MULTILR_FIGURES``, and ``scripts/test.sh`` prints them all, sorted, at the end.
Without the variable nothing is written (a plain ``pytest`` run stays quiet).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["FIGURES_ENV", "read_figures", "state_figure"]

FIGURES_ENV = "MULTILR_FIGURES"


def state_figure(key: str, line: str, *, folder: str | os.PathLike[str] | None = None) -> None:
    """Record one line of figures under ``key`` (one file per key; a later call replaces it).

    Args:
        key: Unique per test and figure, sorted for printing (``"fuzz.spec-mappings"``).
        line: What to print, figures included (``"fuzz: 600 inputs, 0 escaped"``).
        folder: Where to write (default: ``$MULTILR_FIGURES``; without it, nothing is written).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> state_figure("doc.example", "example: 3 inputs, 0 escaped", folder=folder)
        >>> read_figures(folder)
        ['example: 3 inputs, 0 escaped']
    """
    folder = folder if folder is not None else os.environ.get(FIGURES_ENV)
    if not folder:
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
    (path / f"{safe}.txt").write_text(line.rstrip("\n") + "\n", encoding="utf-8")


def read_figures(folder: str | os.PathLike[str]) -> list[str]:
    """Every recorded line, sorted by key.

    Example:
        >>> read_figures("/nonexistent")
        []
    """
    path = Path(folder)
    if not path.is_dir():
        return []
    return [f.read_text(encoding="utf-8").rstrip("\n") for f in sorted(path.glob("*.txt"))]
