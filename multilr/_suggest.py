"""The finder's suggestions: a base rate read off a range test's curve, as fastai does.

Pure functions of the rates and smoothed losses, apart from :mod:`multilr._finder`,
which runs the test: the rules need no model, optimizer or framework, so a curve
measured elsewhere (a saved run, a test's made-up losses) gets the same suggestions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["METHODS", "suggest"]

#: Suggestion rules, as in fastai: ``valley`` (the default), ``steep``, ``minimum``.
METHODS = ("valley", "steep", "minimum")


def suggest(
    lrs: Sequence[float], losses: Sequence[float], *, skip_start: int = 0, skip_end: int = 5
) -> dict[str, float]:
    """The three suggestions of fastai suggestions from rates and smoothed losses.

    Points ``skip_start .. len - skip_end`` are used (all of them if that leaves fewer
    than 3), up to the first non-finite loss.

    Example:
        >>> lrs = [10 ** (k / 4 - 6) for k in range(20)]
        >>> losses = [1.0, 1.0, 1.0, 0.98, 0.9, 0.7, 0.5, 0.4, 0.35, 0.33,
        ...           0.32, 0.34, 0.4, 0.6, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
        >>> {k: f"{v:.2g}" for k, v in suggest(lrs, losses, skip_start=2).items()}
        {'valley': '1.8e-05', 'steep': '1e-05', 'minimum': '3.2e-05'}
    """
    lo, hi = skip_start, len(losses) - skip_end
    if hi - lo < 3:
        lo, hi = 0, len(losses)
    xs, ys = [], []
    for x, y in zip(lrs[lo:hi], losses[lo:hi], strict=True):
        if not math.isfinite(y):
            break
        xs.append(x)
        ys.append(y)
    if len(xs) < 2:
        return {}
    return {"valley": _valley(xs, ys), "steep": _steep(xs, ys), "minimum": xs[ys.index(min(ys))] / 10}


def _valley(lrs: list[float], losses: list[float]) -> float:
    """As fastai's ``valley``: the longest decreasing run of losses, a point about halfway down it."""
    n = len(losses)
    run = [1] * n  # length of the longest decreasing subsequence ending at i
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
            if run[end] < run[i]:
                end, start = i, i - run[i]
    third = (end - start) / 3
    return lrs[max(start + int(third) + int(third / 2), 0)]  # fastai's start can be -1


def _steep(lrs: list[float], losses: list[float]) -> float:
    """As fastai's ``steep``: the rate where the loss falls fastest per unit of log rate."""
    slopes = [
        (losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)
    ]
    return lrs[slopes.index(min(slopes))]
