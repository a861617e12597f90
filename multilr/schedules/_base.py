"""What a schedule is: one scalar factor per optimizer step, applied to every group's rate.

A multilr schedule never sets a rate. It gives a *factor* ``f(t)`` for step ``t`` (0 =
the first optimizer step), and every group trains at ``its planned rate x f(t)``. So
the ratios the spec set (head x10, layer decay, per-tensor rates) hold at every step,
one-cycle peaks and cosine floors are per group by construction, and nothing can
collapse the groups to one rate: the failure of a scalar ``max_lr`` or an absolute
``eta_min`` (pytorch issue 73305) cannot be written.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any

from multilr.errors import SpecError

__all__ = ["Chain", "Schedule"]


class Schedule(ABC):
    """Base of every schedule: ``factor(step)``; subclasses are frozen dataclasses.

    Example:
        >>> from multilr.schedules import Step
        >>> Step(2, 0.5).factors(5)
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    @abstractmethod
    def _factor(self, step: int) -> float:
        """The factor at ``step`` (``step >= 0``), unchecked."""

    def factor(self, step: int) -> float:
        """The factor for optimizer step ``step`` (0 = the first step).

        Raises:
            SpecError: ``step`` is negative, or the schedule gives a negative or
                non-finite factor there (a user function, say).
        """
        if step < 0:
            raise SpecError(f"{self.describe()}: step must be >= 0, got {step}")
        try:
            value = float(self._factor(step))
        except OverflowError:  # e.g. gamma 1e300 ** step: a factor past float range is refused like inf
            value = math.inf
        if not math.isfinite(value) or value < 0:
            raise SpecError(
                f"{self.describe()} gives factor {value!r} at step {step}; factors must be finite and >= 0"
            )
        return value

    __call__ = factor

    def factors(self, steps: int) -> list[float]:
        """The factors of steps ``0 .. steps - 1``."""
        return [self.factor(t) for t in range(steps)]

    def then(self, other: Schedule, *, at: int) -> Chain:
        """This schedule for ``at`` steps, then ``other`` from its own step 0.

        Example:
            >>> from multilr.schedules import Constant, Exponential
            >>> Constant(0.1).then(Exponential(0.5), at=2).factors(4)
            [0.1, 0.1, 1.0, 0.5]
        """
        return Chain((self, other), (at,))

    def describe(self) -> str:
        """``Kind(field=value, ...)``, for messages and plots."""
        parts = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({parts})"

    def to_dict(self) -> dict[str, Any]:
        """The mapping form (see :func:`multilr.schedules.schedule_from_dict`)."""
        from multilr.schedules._io import schedule_to_dict

        return schedule_to_dict(self)


@dataclass(frozen=True)
class Chain(Schedule):
    """Schedules one after another; each starts at its own step 0 at its milestone.

    Attributes:
        parts: The schedules.
        milestones: Steps where the next part begins (one fewer than ``parts``, increasing).

    Example:
        >>> from multilr.schedules import Constant, Step
        >>> chain = Step(2, gamma=0.5).then(Constant(0.1), at=3)  # Schedule.then makes one
        >>> chain.factors(5), chain.milestones
        ([1.0, 1.0, 0.5, 0.1, 0.1], (3,))
    """

    parts: tuple[Schedule, ...]
    milestones: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        # checked like every other step count: int() would take 2.7 as 2, or "3" as 3
        milestones = tuple(check_steps(m, f"Chain.milestones[{i}]") for i, m in enumerate(self.milestones))
        object.__setattr__(self, "milestones", milestones)
        if len(self.parts) != len(self.milestones) + 1:
            raise SpecError(
                f"Chain needs one milestone fewer than parts, got {len(self.parts)} parts and "
                f"{len(self.milestones)} milestones"
            )
        if any(b <= a for a, b in zip((0, *self.milestones), self.milestones, strict=False)):
            raise SpecError(f"Chain milestones must be increasing and > 0, got {list(self.milestones)}")

    def _factor(self, step: int) -> float:
        start = 0
        for part, end in zip(self.parts, (*self.milestones, None), strict=True):
            if end is None or step < end:
                return part.factor(step - start)
            start = end
        raise AssertionError("unreachable")

    def then(self, other: Schedule, *, at: int) -> Chain:
        """Append ``other`` at global step ``at``."""
        return Chain((*self.parts, other), (*self.milestones, at))


def check_steps(value: Any, where: str, *, minimum: int = 1) -> int:
    """An integer count of steps ``>= minimum``.

    Raises:
        SpecError: Not an integer, or too small.
    """
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise SpecError(f"{where} must be an integer number of steps, got {value!r}")
    if int(value) < minimum:
        raise SpecError(f"{where} must be >= {minimum}, got {value!r}")
    return int(value)
