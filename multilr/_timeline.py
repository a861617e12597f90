"""The rate each group gets at each step: the formula the Controller writes, without an optimizer.

``rate(g, t) = planned rate of g x multiplier of g x schedule(t) x g's own schedule(t)``,
and 0 while ``g`` is frozen; a spec stage unfreezes its groups at its step with the
stage's ``lr_mult`` as their multiplier. :class:`Program` holds that formula;
:class:`~multilr.Controller` applies it to an optimizer, :func:`planned_rates` runs it
ahead of time for previews, plots (``multilr plot``) and the expected side of tests.
"""

from __future__ import annotations

from multilr._history import RateHistory
from multilr._plantypes import Plan
from multilr.schedules import Constant, Schedule
from multilr.schedules._base import check_steps

__all__ = ["Program", "planned_rates"]

#: A controller's state: each group's multiplier and frozen flag, and the stages applied.
State = tuple[list[float], list[bool], set[str]]


class Program:
    """A plan's rates as a function of the step and the runtime state.

    Args:
        plan: The plan.
        schedule: Factor per step for every group (default: the spec's ``schedule``,
            else constant 1).
        steps_per_epoch: Needed when a spec stage is given in epochs.

    Raises:
        SpecError: An epoch stage without ``steps_per_epoch``.
    """

    def __init__(self, plan: Plan, schedule: Schedule | None = None, *, steps_per_epoch: int | None = None):
        if steps_per_epoch is not None:
            steps_per_epoch = check_steps(steps_per_epoch, "steps_per_epoch")
        if schedule is None:
            schedule = plan.spec.schedule if plan.spec.schedule is not None else Constant()
        self.plan = plan
        self.schedule = schedule
        self.lr = [g.lr for g in plan.groups]
        self.own = [g.schedule for g in plan.groups]  # a rule's schedule, on top of the base one
        #: stage name -> (first step, lr_mult, indices of its groups)
        self.stages = {
            st.name: (
                st.start(steps_per_epoch),
                st.lr_mult,
                [i for i, g in enumerate(plan.groups) if g.stage == st.name],
            )
            for st in plan.spec.stages
            if any(g.stage == st.name for g in plan.groups)
        }

    def initial(self) -> State:
        """The state before the first step: multipliers 1, the plan's frozen flags."""
        return [1.0] * len(self.lr), [g.frozen for g in self.plan.groups], set()

    def due(self, step: int, state: State) -> State:
        """``state`` with every stage due by ``step`` applied (a new state; ``state`` is kept).

        A stage's group that is no longer frozen (unfrozen by hand) keeps its multiplier.
        """
        mult, frozen, done = list(state[0]), list(state[1]), set(state[2])
        for name, (start, lr_mult, idx) in self.stages.items():
            if name in done or start > step:
                continue
            done.add(name)
            for i in idx:
                if frozen[i]:
                    frozen[i], mult[i] = False, lr_mult
        return mult, frozen, done

    def rates(self, step: int, mult: list[float], frozen: list[bool]) -> list[float]:
        """Each group's rate at ``step``.

        Raises:
            SpecError: A schedule gives a negative or non-finite factor at ``step``.
        """
        factor = self.schedule.factor(step)
        return [
            0.0 if f else lr * m * factor * (own.factor(step) if own is not None else 1.0)
            for lr, m, f, own in zip(self.lr, mult, frozen, self.own, strict=True)
        ]


def planned_rates(
    plan: Plan, steps: int, schedule: Schedule | None = None, *, steps_per_epoch: int | None = None
) -> RateHistory:
    """Each group's rate at steps ``0 .. steps-1``, as a :class:`~multilr.Controller` would set them.

    Args:
        plan: The plan (``groups.plan``).
        steps: How many optimizer steps to compute.
        schedule: Factor per step for every group (default: the spec's ``schedule``, else 1).
        steps_per_epoch: Needed when a spec stage is given in epochs.

    Raises:
        SpecError: ``steps`` < 1, or a schedule gives a bad factor (the message names the step).

    Example:
        >>> from multilr import ParamInfo, Rule, Spec, Stage, plan
        >>> from multilr.schedules import Step
        >>> infos = [ParamInfo(n, (2,), "float32", n[0], ("Linear",), True, n) for n in ("a.w", "b.w")]
        >>> rules = [Rule("a.*", frozen=True, name="body"), Rule("b.*", lr_mult=10, name="head")]
        >>> spec = Spec(lr=0.1, rules=rules, stages=[Stage(("body",), at=2, lr_mult=0.5)])
        >>> rates = planned_rates(plan(infos, spec), 4, Step(3, 0.5)).rates
        >>> rates["head"], rates["body/stage0"]
        ((1.0, 1.0, 1.0, 0.5), (0.0, 0.0, 0.05, 0.025))
    """
    n = check_steps(steps, "steps")
    program = Program(plan, schedule, steps_per_epoch=steps_per_epoch)
    state = program.initial()
    rows = []
    for t in range(n):
        state = program.due(t, state)
        rows.append((t, program.rates(t, state[0], state[1])))
    return RateHistory.from_rows(
        [g.name for g in plan.groups],
        rows,
        {"source": "plan", "schedule": program.schedule.describe(), "base_lr": plan.base_lr},
    )
