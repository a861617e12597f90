"""Progress of long work (demo epochs, finder steps) on stderr, readable in a terminal and in CI.

A terminal on stderr with rich installed gets a live bar; anything else (a CI log, a
pipe) gets a plain line at most every ``interval`` seconds, so a short task prints
nothing and a long one leaves a few readable lines; ``quiet`` prints nothing at all.
Results are not progress: they go to stdout whatever the reporter (:meth:`Progress.log`
drops only the running commentary under ``quiet``).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["INTERVAL", "Progress", "progress"]

INTERVAL = 10.0  # seconds between plain progress lines: a few lines per minute of work in a CI log

Advance = Callable[[int], None]


class Progress:
    """Reports nothing: the ``--quiet`` reporter, and the interface of the others.

    Example:
        >>> p = progress(quiet=True)
        >>> with p.task("training", total=3) as advance:
        ...     for _ in range(3):
        ...         advance(1)
        >>> p.log("epoch 1 done")  # quiet: dropped
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        """A unit of work of ``total`` steps; yields ``advance(n)``, called after each ``n`` steps."""
        yield lambda n: None

    def log(self, line: str) -> None:
        """A line of running commentary (an epoch's loss) on stdout; dropped when quiet."""


class LineProgress(Progress):
    """Plain lines on ``stream``, at most one per ``interval`` seconds of a task."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 10.0) -> None:
        super().__init__(stream)
        self.interval = interval

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        start = last = time.monotonic()
        done = 0
        shown = False

        def advance(n: int) -> None:
            nonlocal done, last, shown
            done += n
            now = time.monotonic()
            if now - last >= self.interval and done < total:
                pct = 100 * done // max(total, 1)
                line = f"{description}: {done}/{total} ({pct}%), {now - start:.0f}s"
                print(line, file=self.stream, flush=True)
                last, shown = now, True

        yield advance
        if shown:  # close what was opened; a task that never reported stays silent
            print(f"{description}: {done}/{total} done in {time.monotonic() - start:.1f}s", file=self.stream)

    def log(self, line: str) -> None:
        print(line, flush=True)


class RichProgress(LineProgress):
    """A rich bar on ``stream`` (a terminal); lines logged meanwhile print above it."""

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        # stdout is redirected above the bar only when it shares the terminal; a piped
        # stdout must keep its lines rather than have them land in stderr
        bar = Progress(
            *columns, console=Console(file=self.stream), transient=True, redirect_stdout=sys.stdout.isatty()
        )
        with bar:
            tid = bar.add_task(description, total=total)
            yield lambda n: bar.advance(tid, n)


def progress(*, quiet: bool = False, stream: TextIO | None = None, interval: float | None = None) -> Progress:
    """The reporter for this run: quiet, a rich bar (terminal and rich installed), or plain lines.

    Args:
        quiet: Report nothing (``--quiet``).
        stream: Where progress goes (default stderr, so stdout keeps only results).
        interval: Seconds between plain lines (default :data:`INTERVAL`).

    Example:
        >>> import io
        >>> p = progress(stream=io.StringIO(), interval=0)  # not a terminal: plain lines
        >>> with p.task("sweep", total=4) as advance:
        ...     advance(2)
        >>> print(p.stream.getvalue(), end="")
        sweep: 2/4 (50%), 0s
        sweep: 2/4 done in 0.0s
    """
    out = stream if stream is not None else sys.stderr
    interval = INTERVAL if interval is None else interval
    if quiet:
        return Progress(out)
    if out.isatty() and _has_rich():
        return RichProgress(out, interval=interval)
    return LineProgress(out, interval=interval)


def _has_rich() -> bool:
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True
