"""Pictures of rates: a PNG per rate history or finder run, and a text view for terminals.

matplotlib is optional (``pip install 'multilr[plot]'``) and imported only inside the
functions that draw, through its object API (``Figure`` + the Agg canvas): nothing here
touches pyplot or the user's global backend. :func:`terminal_view` needs nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multilr._check import number
from multilr._history import RateHistory
from multilr.errors import MultiLRError, SpecError

if TYPE_CHECKING:
    from multilr._finder import FinderResult

__all__ = ["MissingDependencyError", "plot_finder", "plot_rates", "sparkline", "terminal_view"]

#: More groups than this: colour by peak rate (colour bar) and name only the first and last.
LEGEND_MAX = 12
BLOCKS = "▁▂▃▄▅▆▇█"
ASCII_LEVELS = ".,-~=+*#"
_STYLES = ("-", "--", "-.", ":")  # groups with equal rates overlap; the dashes keep both visible


class MissingDependencyError(MultiLRError, ImportError):
    """An optional dependency (matplotlib for plots) is not installed."""


def _figure(size: tuple[float, float] = (8.0, 4.5)) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            "plotting needs matplotlib, which is not installed: pip install 'multilr[plot]'"
        ) from None
    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)  # attaches itself: fig.savefig renders with Agg, whatever pyplot uses
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, format="png", bbox_inches="tight")
    except OSError as exc:
        raise MultiLRError(f"cannot write plot {str(p)!r}: {exc.strerror or exc}") from None
    return p


def plot_rates(
    history: RateHistory,
    path: str | os.PathLike[str],
    *,
    log: bool = True,
    title: str | None = None,
) -> Path:
    """Draw each group's rate over the steps into a PNG file.

    One line per group (frozen stretches, rate 0, are gaps on a log axis). Up to
    ``LEGEND_MAX`` (12) groups get a legend entry each; beyond that the lines are coloured
    by each group's peak rate (colour bar) and only the first and last group are named.

    Args:
        history: The rates (:func:`multilr.planned_rates`, a recorder, or
            :meth:`RateHistory.load`).
        path: The PNG file to write (parent folders are created).
        log: Logarithmic rate axis (linear when no rate is above 0).
        title: Figure title (default: the number of groups and the schedule, if known).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        MultiLRError: The file cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> h = RateHistory(("body", "head"), (0, 1, 2), {"body": (0.1, 0.05, 0.0), "head": (1.0, 0.5, 0.1)})
        >>> out = plot_rates(h, pathlib.Path(tempfile.mkdtemp()) / "rates.png")
        >>> out.read_bytes()[:4] == bytes([0x89]) + b"PNG"
        True
    """
    fig = _figure()
    ax = fig.add_subplot()
    steps = list(history.steps)
    positive = [r for g in history.groups for r in history.rates[g] if r > 0]
    log = log and bool(positive)
    many = len(history.groups) > LEGEND_MAX
    colours = _peak_colours(history, fig, ax) if many else {}
    marker = "o" if len(steps) <= 2 else None
    for i, g in enumerate(history.groups):
        rates = history.rates[g]
        ys = [r if r > 0 or not log else math.nan for r in rates]
        label: str | None = g
        if many and 0 < i < len(history.groups) - 1:
            label = None
        elif all(r == 0 for r in rates):
            label = f"{g} (0 throughout)"
        ax.plot(
            steps,
            ys,
            label=label,
            marker=marker,
            linestyle=_STYLES[i % len(_STYLES)] if not many else "-",
            color=colours.get(g, f"C{i % 10}") if many else f"C{i % 10}",
            linewidth=1.2 if many else 1.6,
        )
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title if title is not None else _default_title(history), fontsize="medium")
    ax.legend(loc="center left", bbox_to_anchor=(1.02 if not many else 1.25, 0.5), fontsize="small")
    return _save(fig, path)


def _default_title(history: RateHistory) -> str:
    text = f"learning rate per group ({len(history.groups)} groups)"
    schedule = str(history.meta.get("schedule") or "")
    if len(schedule) > 90:
        schedule = schedule[:87] + "..."
    return f"{text}\nschedule {schedule}" if schedule else text


def _peak_colours(history: RateHistory, fig: Any, ax: Any) -> dict[str, Any]:
    """A colour per group from its peak rate on a log scale, and the colour bar explaining it."""
    import matplotlib
    from matplotlib import cm, colors

    peaks = {g: max(history.rates[g], default=0.0) for g in history.groups}
    pos = [v for v in peaks.values() if v > 0]
    if not pos:
        return {g: "0.5" for g in history.groups}
    lo, hi = min(pos), max(pos)
    norm = colors.LogNorm(lo, hi if hi > lo else lo * 10)
    cmap = matplotlib.colormaps["viridis"]
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="peak rate of the group")
    return {g: (cmap(norm(v)) if v > 0 else "0.5") for g, v in peaks.items()}


def plot_finder(result: FinderResult, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Draw a learning-rate finder run: loss against the swept rate, suggestions marked.

    Called by :meth:`FinderResult.plot`, which documents it.
    """
    fig = _figure()
    ax = fig.add_subplot()
    lrs = list(result.lrs)
    ax.plot(lrs, result.losses, color="0.7", linewidth=1.0, label="loss")
    ax.plot(lrs, result.smoothed, color="C0", linewidth=1.8, label="smoothed loss")
    ax.set_xscale("log")
    finite = [v for v in result.smoothed if math.isfinite(v)]
    if finite:
        lo, hi = min(finite), max(finite[: max(len(finite) - 5, 1)] or finite)
        pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
        ax.set_ylim(lo - pad, hi + pad)
    for k, (name, lr) in enumerate(result.suggestions.items()):
        chosen = name == result.method
        ax.axvline(
            lr,
            color="C3" if chosen else f"C{k + 4}",
            linestyle="-" if chosen else "--",
            linewidth=1.8 if chosen else 1.0,
            label=f"{name}: {lr:.3g}" + (" (suggested)" if chosen else ""),
        )
    ax.set_xlabel(f"base learning rate (rate of a group = ratio x this; {result.stop})")
    ax.set_ylabel("loss")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title if title is not None else f"learning-rate finder, {len(lrs)} steps")
    ax.legend(fontsize="small")
    return _save(fig, path)


# -- text ------------------------------------------------------------------------------


def sparkline(
    values: Sequence[float],
    *,
    width: int,
    lo: float,
    hi: float,
    log: bool = True,
    ascii: bool = False,
) -> str:
    """One character per column: each column's mean value on a fixed scale ``lo..hi``.

    Zero shows as a blank; non-finite values as ``!``.

    Example:
        >>> sparkline([1, 2, 4, 8], width=4, lo=1, hi=8)
        '▁▃▆█'
        >>> sparkline([0, 0.5, 1], width=3, lo=0.5, hi=1, log=False, ascii=True)
        ' .#'
    """
    levels = ASCII_LEVELS if ascii else BLOCKS
    n = len(values)
    cols = min(width, n)
    out = []
    for c in range(cols):
        chunk = values[c * n // cols : (c + 1) * n // cols]
        if any(not math.isfinite(v) for v in chunk):
            out.append("!")
            continue
        v = sum(chunk) / len(chunk)
        if v <= 0:
            out.append(" ")
            continue
        if hi <= lo:
            frac = 1.0
        elif log:
            frac = (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        else:
            frac = (v - lo) / (hi - lo)
        out.append(levels[min(max(round(frac * (len(levels) - 1)), 0), len(levels) - 1)])
    return "".join(out)


def terminal_view(
    history: RateHistory,
    *,
    width: int = 40,
    max_groups: int = 30,
    log: bool = True,
    ascii: bool = False,
) -> str:
    """A compact text view of a rate history: one line per group.

    Each line: the group's name, its rate at the first step, the smallest, largest and
    last rate, and a sparkline of the rate over the steps (on one scale shared by every
    group, logarithmic by default, so lines compare across groups; blank = rate 0).

    Args:
        history: The rates.
        width: Characters of the sparkline (steps are averaged into this many columns).
        max_groups: Show at most this many groups (first ones; a line counts the rest).
        log: Logarithmic sparkline scale.
        ascii: Plain ASCII characters instead of block characters.

    Raises:
        SpecError: ``width`` or ``max_groups`` below 1.

    Example:
        >>> h = RateHistory(("body", "head"), (0, 1, 2, 3), {"body": (0.1, 0.1, 0.05, 0.05),
        ...                                                  "head": (1.0, 1.0, 0.5, 0.5)})
        >>> print(terminal_view(h))
        rates of 2 groups over steps 0..3 (4 steps); sparklines share one log scale 0.05..1
        group  start  min   max  end   rate over the steps
        -----  -----  ----  ---  ----  -------------------
        body   0.1    0.05  0.1  0.05  ▃▃▁▁
        head   1      0.5   1    0.5   ██▆▆
    """
    width, max_groups = _count(width, "width"), _count(max_groups, "max_groups")
    if not history.steps:
        return "rates: no steps recorded"
    positive = [r for g in history.groups for r in history.rates[g] if r > 0]
    lo, hi = (min(positive), max(positive)) if positive else (0.0, 0.0)
    first, last = history.steps[0], history.steps[-1]
    scale = "log" if log else "linear"
    head = (
        f"rates of {len(history.groups)} groups over steps {first}..{last} ({len(history.steps)} steps); "
        f"sparklines share one {scale} scale {lo:.3g}..{hi:.3g}"
    )
    rows = []
    for g in history.groups[:max_groups]:
        r = history.rates[g]
        line = sparkline(r, width=width, lo=lo, hi=hi, log=log, ascii=ascii)
        if not any(r):
            line = "(rate 0 throughout)"
        rows.append((_cut(g, 32, ascii), *(f"{v:.3g}" for v in (r[0], min(r), max(r), r[-1])), line))
    out = [head, *_table(("group", "start", "min", "max", "end", "rate over the steps"), rows)]
    if len(history.groups) > max_groups:
        out.append(f"... {len(history.groups) - max_groups} more groups")
    return "\n".join(out)


def _cut(text: str, n: int, ascii: bool) -> str:
    if len(text) <= n:
        return text
    return text[: n - 3] + "..." if ascii else text[: n - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _count(value: Any, where: str) -> int:
    n = number(value, where, positive=True)
    if n != int(n):
        raise SpecError(f"{where} must be a whole number, got {value!r}")
    return int(n)
