"""The rates a plan and a schedule give each group at each step, before any training.

The same formula the :class:`~multilr.Controller` writes into the optimizer at every
step, computed without an optimizer: for previews, plots (``multilr plot``) and as the
expected side of tests.
"""

from __future__ import annotations

from multilr._history import RateHistory
from multilr._plantypes import Plan
from multilr.schedules import Constant, Schedule
from multilr.schedules._base import check_steps

__all__ = ["planned_rates"]


def planned_rates(plan: Plan, steps: int, schedule: Schedule | None = None) -> RateHistory:
    """Each group's rate at steps ``0 .. steps-1``: planned rate x schedule factor (0 frozen).

    Args:
        plan: The plan (``groups.plan``).
        steps: How many optimizer steps to compute.
        schedule: Factor per step for every group (default: constant 1).

    Raises:
        SpecError: ``steps`` < 1, or the schedule gives a bad factor (the message names the step).

    Example:
        >>> from multilr import ParamInfo, Rule, Spec, plan
        >>> from multilr.schedules import Step
        >>> infos = [ParamInfo(n, (2,), "float32", n[0], ("Linear",), True, n) for n in ("a.w", "b.w")]
        >>> p = plan(infos, Spec(lr=0.1, rules=[Rule("b.*", lr_mult=10, name="head")]))
        >>> planned_rates(p, 3, Step(2, 0.5)).rates["head"]
        (1.0, 1.0, 0.5)
    """
    n = check_steps(steps, "steps")
    sched = schedule if schedule is not None else Constant()
    factors = [sched.factor(t) for t in range(n)]
    rates = {g.name: tuple(0.0 if g.frozen else g.lr * f for f in factors) for g in plan.groups}
    return RateHistory(
        tuple(g.name for g in plan.groups),
        tuple(range(n)),
        rates,
        {"source": "plan", "schedule": sched.describe(), "base_lr": plan.base_lr},
    )
