"""What the demo shows: the results table and the accuracy figure."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from multilr import Plan
from multilr._plot import _figure, _save  # the core's matplotlib set-up: Agg, and the missing-package message

__all__ = ["Run", "plot_accuracy", "results_table"]


@dataclass(frozen=True)
class Run:
    """One fine-tuning run: its label, how its rates were set, ``(epoch, loss, test acc)`` per epoch."""

    label: str
    rates: str
    history: tuple[tuple[int, float, float], ...]

    @property
    def final_acc(self) -> float:
        """Test accuracy after the last epoch."""
        return self.history[-1][2]

    @property
    def best_acc(self) -> float:
        """Best test accuracy over the epochs (what early stopping could have kept)."""
        return max(acc for _, _, acc in self.history)


def results_table(runs: Sequence[Run]) -> str:
    """A plain table of the runs; gains are against the first run.

    Example:
        >>> uniform = Run("uniform", "0.003 everywhere", ((1, 0.9, 0.80), (2, 0.5, 0.90)))
        >>> spec = Run("multilr", "head 0.003, blocks x0.5", ((1, 0.8, 0.85), (2, 0.4, 0.95)))
        >>> print(results_table([uniform, spec]))
        run      rates                    final acc  best acc  gain (final)
        -------  -----------------------  ---------  --------  ------------
        uniform  0.003 everywhere            0.9000    0.9000
        multilr  head 0.003, blocks x0.5     0.9500    0.9500       +0.0500
    """
    header = ("run", "rates", "final acc", "best acc", "gain (final)")
    rows = [
        (
            r.label,
            r.rates,
            f"{r.final_acc:.4f}",
            f"{r.best_acc:.4f}",
            "" if i == 0 else f"{r.final_acc - runs[0].final_acc:+.4f}",
        )
        for i, r in enumerate(runs)
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:2], widths, strict=False)]
        right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += [line(row) for row in rows]
    return "\n".join(out)


def _depth_rates(plan: Plan) -> list[tuple[str, float, bool]]:
    """Per depth: the shared module path of its tensors, its rate (0 when frozen), frozen."""
    by_depth: dict[int, list[str]] = {}
    for p in plan.params:
        by_depth.setdefault(p.depth if p.depth is not None else -1, []).append(p.name)
    out = []
    for depth in sorted(by_depth):
        names = by_depth[depth]
        common = names[0].split(".")[:-1]  # the module path the depth's tensors share
        for name in names[1:]:
            pairs = zip(common, name.split("."), strict=False)  # names are longer than the module path
            common = [a for a, _ in itertools.takewhile(lambda ab: ab[0] == ab[1], pairs)]
        label = ".".join(common) or f"depth {depth}"
        first = plan.param(names[0])
        out.append((label, 0.0 if first.frozen else first.lr, first.frozen))
    return out


def plot_accuracy(runs: Sequence[Run], plan: Plan, uniform_lr: float, path: str | os.PathLike[str]) -> Path:
    """Two panels: test accuracy per epoch of every run; the multilr rate per depth vs. the uniform rate.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    fig = _figure((11.0, 4.2))
    acc, rates = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for i, r in enumerate(runs):
        epochs = [e for e, _, _ in r.history]
        acc.plot(epochs, [a for _, _, a in r.history], marker="o", markersize=3, color=f"C{i}",
                 label=f"{r.label} (final {r.final_acc:.3f})")
    acc.set_xlabel("fine-tuning epoch")
    acc.set_ylabel("test accuracy (digits 5-9)")
    acc.grid(True, alpha=0.3)
    acc.legend(loc="lower right")
    acc.set_title("accuracy per epoch", fontsize="medium")

    depths = _depth_rates(plan)
    ys = range(len(depths))
    rates.barh(list(ys), [lr for _, lr, _ in depths], color="C1", label="multilr spec")
    for y, (_, _, frozen) in zip(ys, depths, strict=True):
        if frozen:
            rates.text(uniform_lr * 0.02, y, "frozen", va="center", fontsize="small")
    rates.axvline(uniform_lr, color="C0", linestyle="--", label=f"uniform {uniform_lr:g}")
    rates.set_yticks(list(ys), [label for label, _, _ in depths])
    rates.set_xlabel("learning rate")
    rates.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))  # 0.0005 steps crowd the axis
    rates.set_xlim(0, max(uniform_lr, *(lr for _, lr, _ in depths)) * 1.1 or 1.0)
    rates.legend(loc="lower right", fontsize="small")
    rates.set_title("rate per depth (input at the bottom)", fontsize="medium")
    return _save(fig, path)
