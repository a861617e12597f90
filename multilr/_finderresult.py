"""What the learning-rate range test measured: :class:`FinderResult`.

A frozen value apart from :mod:`multilr._finder`, which produces it: reading a result
(its suggestion, each group's rate at it, a summary, a plot, the JSON form) needs
neither the model nor the optimizer the test ran on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from multilr._history import RateHistory
from multilr.errors import MultiLRError

__all__ = ["FinderResult"]


@dataclass(frozen=True)
class FinderResult:
    """What :func:`lr_find` measured.

    Attributes:
        lrs: The base rate of each step taken (the spec's ``lr``, or with no plan the
            fastest group's rate).
        losses: The loss ``step_fn`` returned at each step.
        smoothed: The smoothed loss at each step (``nan`` after a non-finite loss).
        rates: Every group's rate at each step (``ratio x lrs[i]``).
        ratios: Each group's rate divided by the base rate (0 for frozen groups).
        suggestions: Base rate suggested by each rule of :data:`METHODS` (empty when
            too few finite points were measured).
        method: The rule :attr:`suggestion` follows.
        stop: ``"completed"``, ``"diverged"`` or ``"non-finite"``.
        num_it: Steps asked for (``len(lrs)`` is smaller after an early stop).
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    rates: RateHistory
    ratios: Mapping[str, float]
    suggestions: Mapping[str, float]
    method: str = "valley"
    stop: str = "completed"
    num_it: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", MappingProxyType(dict(self.ratios)))
        object.__setattr__(self, "suggestions", MappingProxyType(dict(self.suggestions)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @property
    def suggestion(self) -> float | None:
        """The suggested base rate (by :attr:`method`), or ``None`` if none could be made."""
        return self.suggestions.get(self.method)

    def group_rates(self, lr: float | None = None) -> dict[str, float]:
        """Each group's rate at base rate ``lr`` (default: the suggestion)."""
        base = self.suggestion if lr is None else lr
        if base is None:
            raise MultiLRError(f"no suggestion: the run measured too few finite losses ({self.stop})")
        return {g: r * base for g, r in self.ratios.items()}

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Write a PNG: raw and smoothed loss against the base rate, suggestions marked.

        Raises:
            MissingDependencyError: matplotlib is not installed (``pip install 'multilr[plot]'``).
        """
        from multilr._plot import plot_finder

        return plot_finder(self, path, title=title)

    def summary(self, *, width: int = 60, ascii: bool = False) -> str:
        """A few lines for a terminal: range, stop reason, suggestions, group rates, a loss sparkline."""
        from multilr._plot import sparkline

        if not self.lrs:
            return "lr finder: no steps taken"
        lines = [
            f"lr finder: {len(self.lrs)} of {self.num_it} steps, base rate {self.lrs[0]:.3g} .. "
            f"{self.lrs[-1]:.3g}, stopped: {self.stop}"
        ]
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:
            hi = max(finite[:-5] or finite)  # the divergence at the end would flatten the rest
            line = sparkline(self.smoothed, width=width, lo=min(finite), hi=hi, log=False, ascii=ascii)
            lines.append(f"smoothed loss {finite[0]:.4g} -> min {min(finite):.4g}: {line}")
        if self.suggestion is None:
            lines.append("no suggestion: too few finite losses; widen the range or lower start_lr")
            return "\n".join(lines)
        others = ", ".join(f"{k} {v:.3g}" for k, v in self.suggestions.items() if k != self.method)
        lines.append(f"suggested base lr: {self.suggestion:.3g} ({self.method}; also {others})")
        if self.meta.get("absolute_rates"):
            # the sweep moved every group; replace(spec, lr=...) would move only the relative ones
            lines.append(
                f"apply it with spec.with_lr({self.suggestion:.3g}): this spec sets absolute rates "
                "(a rule's lr, a spread or rates), which the spec's lr alone does not move"
            )
        rates = self.group_rates()
        w = max(map(len, rates))
        lines.extend(f"  {g:<{w}}  {r:.3g}" for g, r in rates.items())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (non-finite losses as ``None``)."""

        def clean(xs: Sequence[float]) -> list[float | None]:
            return [x if math.isfinite(x) else None for x in xs]

        return {
            "format": "multilr.lr_find/1",
            "lrs": list(self.lrs),
            "losses": clean(self.losses),
            "smoothed": clean(self.smoothed),
            "ratios": dict(self.ratios),
            "suggestions": dict(self.suggestions),
            "suggestion": self.suggestion,
            "method": self.method,
            "stop": self.stop,
            "num_it": self.num_it,
            "rates": self.rates.to_dict(),
            "meta": dict(self.meta),
        }
