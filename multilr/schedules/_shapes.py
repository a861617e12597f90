"""The schedule shapes: warm-up, step, cosine, SGDR, one-cycle, cyclical, polynomial, a function.

Every shape is a factor of the planned rates (1 = the planned rate). Where PyTorch has
the same scheduler, the factors equal what it computes for a group whose ``initial_lr``
is 1 (the tests compare them step by step); floors and peaks (``final``, ``low``,
``high``) are factors too, so each group gets its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from multilr._check import number
from multilr.errors import SpecError
from multilr.schedules._base import Schedule, check_steps

__all__ = [
    "Constant",
    "Cosine",
    "Cyclical",
    "Exponential",
    "Function",
    "Inverse",
    "MultiStep",
    "OneCycle",
    "Polynomial",
    "SGDR",
    "Step",
    "Warmup",
]


@dataclass(frozen=True)
class Constant(Schedule):
    """The same factor at every step (default 1: the planned rates).

    Example:
        >>> Constant(0.5).factors(3)
        [0.5, 0.5, 0.5]
    """

    value: float = 1.0

    def __post_init__(self) -> None:
        number(self.value, "Constant.value")

    def _factor(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class Step(Schedule):
    """``gamma ** (step // step_size)`` (PyTorch ``StepLR``).

    Example:
        >>> Step(2, gamma=0.5).factors(5)
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_steps(self.step_size, "Step.step_size")
        number(self.gamma, "Step.gamma")

    def _factor(self, step: int) -> float:
        return float(self.gamma ** (step // self.step_size))


@dataclass(frozen=True)
class MultiStep(Schedule):
    """``gamma ** (number of milestones <= step)`` (PyTorch ``MultiStepLR``).

    Example:
        >>> [round(f, 4) for f in MultiStep((2, 4)).factors(6)]
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    """

    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "milestones", tuple(sorted(check_steps(m, "MultiStep.milestones") for m in self.milestones))
        )
        number(self.gamma, "MultiStep.gamma")

    def _factor(self, step: int) -> float:
        return float(self.gamma ** sum(1 for m in self.milestones if m <= step))


@dataclass(frozen=True)
class Exponential(Schedule):
    """``gamma ** step`` (PyTorch ``ExponentialLR``).

    Example:
        >>> [round(f, 4) for f in Exponential(0.9).factors(3)]
        [1.0, 0.9, 0.81]
    """

    gamma: float

    def __post_init__(self) -> None:
        number(self.gamma, "Exponential.gamma")

    def _factor(self, step: int) -> float:
        return float(self.gamma**step)


@dataclass(frozen=True)
class Inverse(Schedule):
    """``(1 + gamma * step) ** -power`` (Caffe's ``inv`` policy; seed 001's ``lr / (i + 1)``).

    Example:
        >>> Inverse().factors(4)
        [1.0, 0.5, 0.3333333333333333, 0.25]
    """

    gamma: float = 1.0
    power: float = 1.0

    def __post_init__(self) -> None:
        number(self.gamma, "Inverse.gamma")
        number(self.power, "Inverse.power")

    def _factor(self, step: int) -> float:
        return float((1.0 + self.gamma * step) ** -self.power)


def _cos(start: float, end: float, pct: float) -> float:
    """Half a cosine from ``start`` (pct 0) to ``end`` (pct 1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


@dataclass(frozen=True)
class Cosine(Schedule):
    """Half a cosine from 1 to ``final`` over ``total`` steps, then ``final``.

    PyTorch's ``CosineAnnealingLR`` with ``eta_min`` = ``final x`` each group's rate (its
    own ``eta_min`` is one absolute value for every group); it keeps ``final`` after
    ``total`` where PyTorch's would rise again.

    Example:
        >>> [round(f, 4) for f in Cosine(total=4).factors(6)]
        [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """

    total: int
    final: float = 0.0

    def __post_init__(self) -> None:
        check_steps(self.total, "Cosine.total")
        number(self.final, "Cosine.final")

    def _factor(self, step: int) -> float:
        return _cos(1.0, self.final, min(step, self.total) / self.total)


@dataclass(frozen=True)
class SGDR(Schedule):
    """Cosine with warm restarts (Loshchilov & Hutter; fastai, timm).

    Period ``i`` lasts ``period * period_mult**i`` steps and runs half a cosine from
    ``cycle_mult**i`` to ``final`` (as timm's ``cycle_decay`` and OneFlow's ``decay_rate``).
    With ``cycle_mult = 1`` this is PyTorch's ``CosineAnnealingWarmRestarts(T_0=period,
    T_mult=period_mult)`` (``eta_min`` per group).

    Example:
        >>> [round(f, 4) for f in SGDR(period=2, period_mult=2).factors(7)]  # restarts at 2 and 6
        [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0]
        >>> SGDR(period=2, cycle_mult=0.5).factors(6)  # each restart's peak halves
        [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    """

    period: int
    period_mult: int = 1
    cycle_mult: float = 1.0
    final: float = 0.0

    def __post_init__(self) -> None:
        check_steps(self.period, "SGDR.period")
        check_steps(self.period_mult, "SGDR.period_mult")
        number(self.cycle_mult, "SGDR.cycle_mult", positive=True)
        number(self.final, "SGDR.final")

    def _factor(self, step: int) -> float:
        length, cycle, t = self.period, 0, step
        while t >= length:
            t, length, cycle = t - length, length * self.period_mult, cycle + 1
        peak = self.cycle_mult**cycle
        return _cos(peak, self.final, t / length)


@dataclass(frozen=True)
class OneCycle(Schedule):
    """Smith's one-cycle policy (PyTorch ``OneCycleLR``, fastai ``fit_one_cycle``).

    Up from ``1/div`` to 1 (the planned rate is each group's peak) by step
    ``pct_start * total - 1``, then down to ``1/(div * final_div)`` at step ``total - 1``;
    ``three_phase`` goes back to ``1/div`` first. The defaults are PyTorch's.

    Example:
        >>> [round(f, 4) for f in OneCycle(total=10, div=10, final_div=100).factors(10)]
        [0.1, 0.55, 1.0, 0.9505, 0.8119, 0.6116, 0.3894, 0.1891, 0.0505, 0.001]
    """

    total: int
    pct_start: float = 0.3
    div: float = 25.0
    final_div: float = 1e4
    anneal: str = "cos"
    three_phase: bool = False

    def __post_init__(self) -> None:
        check_steps(self.total, "OneCycle.total", minimum=2)
        number(self.pct_start, "OneCycle.pct_start", positive=True, upper=1.0)
        number(self.div, "OneCycle.div", positive=True)
        number(self.final_div, "OneCycle.final_div", positive=True)
        if self.anneal not in ("cos", "linear"):
            raise SpecError(f"OneCycle.anneal must be 'cos' or 'linear', got {self.anneal!r}")

    def _factor(self, step: int) -> float:
        start = 1.0 / self.div
        low = start / self.final_div
        up = float(self.pct_start * self.total) - 1
        if self.three_phase:
            phases = [(up, start, 1.0), (2 * up, 1.0, start), (self.total - 1.0, start, low)]
        else:
            phases = [(up, start, 1.0), (self.total - 1.0, 1.0, low)]
        begin = 0.0
        for end, a, b in phases:
            if step <= end or end == phases[-1][0]:
                pct = min(1.0, (step - begin) / (end - begin)) if end > begin else 1.0
                return _cos(a, b, pct) if self.anneal == "cos" else a + (b - a) * pct
            begin = end
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Cyclical(Schedule):
    """Cyclical rates between ``low`` and ``high`` (Smith; PyTorch ``CyclicLR``).

    ``step_up`` steps from ``low`` to ``high``, ``step_down`` (default ``step_up``) back.
    ``triangular``: every cycle the same; ``triangular2``: the amplitude halves each
    cycle; ``exp_range``: the amplitude is multiplied by ``gamma ** step``.

    Example:
        >>> [round(f, 4) for f in Cyclical(low=0.1, high=1.0, step_up=2).factors(7)]
        [0.1, 0.55, 1.0, 0.55, 0.1, 0.55, 1.0]
    """

    low: float
    high: float
    step_up: int
    step_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0

    def __post_init__(self) -> None:
        number(self.low, "Cyclical.low")
        number(self.high, "Cyclical.high")
        check_steps(self.step_up, "Cyclical.step_up")
        if self.step_down is not None:
            check_steps(self.step_down, "Cyclical.step_down")
        if self.mode not in ("triangular", "triangular2", "exp_range"):
            raise SpecError(f"Cyclical.mode must be triangular, triangular2 or exp_range, got {self.mode!r}")
        number(self.gamma, "Cyclical.gamma", positive=True)

    def _factor(self, step: int) -> float:
        down = self.step_down if self.step_down is not None else self.step_up
        size = float(self.step_up + down)
        ratio = self.step_up / size
        cycle = math.floor(1 + step / size)
        x = 1.0 + step / size - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular":
            amp = 1.0
        elif self.mode == "triangular2":
            amp = 1 / 2.0 ** (cycle - 1)
        else:
            amp = self.gamma**step
        return self.low + (self.high - self.low) * scale * amp


@dataclass(frozen=True)
class Polynomial(Schedule):
    """From 1 to ``final`` over ``total`` steps as ``(1 - t/total) ** power``, then ``final``.

    With ``final = 0`` this is PyTorch's ``PolynomialLR(total_iters=total, power=power)``.

    Example:
        >>> Polynomial(total=4, power=2).factors(6)
        [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """

    total: int
    power: float = 1.0
    final: float = 0.0

    def __post_init__(self) -> None:
        check_steps(self.total, "Polynomial.total")
        number(self.power, "Polynomial.power")
        number(self.final, "Polynomial.final")

    def _factor(self, step: int) -> float:
        left = 1.0 - min(step, self.total) / self.total
        return float(self.final + (1.0 - self.final) * left**self.power)


@dataclass(frozen=True)
class Warmup(Schedule):
    """A warm-up of ``steps`` steps in front of another schedule.

    During warm-up the factor rises from ``start`` to the inner schedule's first
    factor, linearly (``mode="linear"``, as PyTorch's ``LinearLR`` and timm) or
    geometrically (``"exp"``); then the inner schedule runs from its own step 0.

    Example:
        >>> [round(f, 4) for f in Warmup(Cosine(total=4), steps=2).factors(6)]
        [0.01, 0.505, 1.0, 0.8536, 0.5, 0.1464]
    """

    inner: Schedule
    steps: int
    start: float = 0.01
    mode: str = "linear"

    def __post_init__(self) -> None:
        check_steps(self.steps, "Warmup.steps")
        number(self.start, "Warmup.start", positive=self.mode == "exp")
        if self.mode not in ("linear", "exp"):
            raise SpecError(f"Warmup.mode must be 'linear' or 'exp', got {self.mode!r}")

    def _factor(self, step: int) -> float:
        if step >= self.steps:
            return self.inner.factor(step - self.steps)
        target, pct = self.inner.factor(0), step / self.steps
        if self.mode == "linear":
            return self.start * target + (target - self.start * target) * pct
        return float(target * self.start ** (1.0 - pct))


@dataclass(frozen=True)
class Function(Schedule):
    """A user function of the step (seed 001's ``lambda i: 1 / (i + 1)``).

    Its values are checked as they are used: a negative or non-finite factor raises
    :class:`~multilr.SpecError` naming the step.

    Example:
        >>> inverse = Function(lambda i: 1 / (i + 1), name="inverse")
        >>> inverse.factors(3), inverse.describe()
        ([1.0, 0.5, 0.3333333333333333], 'Function(inverse)')
    """

    fn: Callable[[int], float] = field(compare=False)
    name: str = "function"

    def _factor(self, step: int) -> float:
        return float(self.fn(step))

    def describe(self) -> str:
        return f"Function({self.name})"
