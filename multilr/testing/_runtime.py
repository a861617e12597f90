"""Runtime control in the conformance cases: Controller calls at given steps, and their reference.

A *controlled* case trains under :class:`multilr.Controller`: the case's schedule drives
every group through the Controller (no framework scheduler), and its :class:`Event` s,
Controller calls made just before given optimizer steps, rescale, freeze and unfreeze
groups mid-run. The harness makes those calls on the backend's real Controller;
:func:`controlled_rates` models them here, independently of the Controller's code:

* the rate of group ``g`` on step ``t`` is ``g.lr x multiplier(g) x factor(t)``
  (x the group's own schedule, when the spec gives one), and 0 while ``g`` is frozen;
* ``set_scale`` sets the multiplier; ``unfreeze(..., multiplier=m)`` sets it to ``m``
  (without ``m`` it keeps the old one); ``freeze_to(n)`` freezes the groups below depth
  ``n`` and unfreezes the others (``n < 0`` counts from the top);
* a frozen tensor gets no gradient, so the optimizer skips it: no update, no weight
  decay, no change to its momentum or moments; its state resumes where it stopped (or
  starts, for a tensor frozen before its first update) when it is unfrozen.

What the spec itself declares for run time is read from the plan too (``Spec.stages``:
a staged group still frozen unfreezes at its stage's step with the stage's ``lr_mult``;
a rule's ``schedule``: a per-group factor on top of the case's), so a case whose spec
carries them is a controlled case without any event (:func:`spec_is_controlled`). The
case's schedule drives the Controller even when the spec has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from multilr import schedules as ml
from multilr._depth import infer_depths
from multilr._plantypes import Plan
from multilr._spec import Spec

__all__ = ["ACTIONS", "Event", "Timeline", "controlled_rates", "spec_is_controlled"]

#: Controller calls an :class:`Event` can make.
ACTIONS = ("set_scale", "freeze", "unfreeze", "freeze_to")


@dataclass(frozen=True)
class Event:
    """A :class:`multilr.Controller` call made just before optimizer step ``at``.

    Attributes:
        at: The step (0-based) whose rates the call changes first.
        action: One of :data:`ACTIONS`.
        groups: Group names or ``fnmatch`` patterns over them (``"head*"``); an exact
            name is taken as is (group names may hold ``[``). Empty for ``freeze_to``.
        value: ``set_scale``: the multiplier; ``unfreeze``: the multiplier, or ``None``
            to keep the group's; ``freeze_to``: the depth ``n``.

    Example:
        >>> e = Event(2, "unfreeze", ("head*",), 0.5)
        >>> e.describe(), e.targets(["body", "head", "head/no_decay"])
        ('step 2: unfreeze(head*, multiplier=0.5)', ['head', 'head/no_decay'])
    """

    at: int
    action: str
    groups: tuple[str, ...] = ()
    value: float | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"event action {self.action!r} unknown; known: {ACTIONS}")
        if isinstance(self.at, bool) or not isinstance(self.at, int) or self.at < 0:
            raise ValueError(f"event step must be an integer >= 0, got {self.at!r}")
        groups = (self.groups,) if isinstance(self.groups, str) else tuple(self.groups)
        object.__setattr__(self, "groups", groups)
        if (self.action == "freeze_to") == bool(groups):
            raise ValueError(f"{self.describe()}: freeze_to takes a depth and no groups, the others groups")
        if self.action in ("set_scale", "freeze_to") and self.value is None:
            raise ValueError(f"{self.describe()}: needs a value")
        if self.action == "freeze_to" and int(self.value or 0) != self.value:
            raise ValueError(f"{self.describe()}: the depth must be an integer")

    def describe(self) -> str:
        """``step 2: set_scale(head, 3)``."""
        args = [", ".join(self.groups)] if self.groups else []
        if self.action == "freeze_to":
            args.append(f"{int(self.value or 0)}")
        elif self.value is not None:
            args.append(f"{self.value:g}" if self.action == "set_scale" else f"multiplier={self.value:g}")
        return f"step {self.at}: {self.action}({', '.join(args)})"

    def targets(self, names: Sequence[str]) -> list[str]:
        """The group names this event acts on, in ``names`` order.

        Raises:
            ValueError: A name or pattern matches no group (the case is wrong, not the backend).
        """
        hit = []
        for pattern in self.groups:
            found = [pattern] if pattern in names else [n for n in names if fnmatchcase(n, pattern)]
            if not found:
                raise ValueError(f"{self.describe()}: {pattern!r} matches no group of {list(names)}")
            hit += found
        return [n for n in names if n in hit]

    def apply(self, controller: Any, names: Sequence[str]) -> None:
        """Make the call on a real :class:`multilr.Controller` (``names``: its groups)."""
        if self.action == "freeze_to":
            controller.freeze_to(int(self.value or 0))
            return
        targets = self.targets(names)
        if self.action == "set_scale":
            for name in targets:
                controller.set_scale(name, self.value)
        elif self.action == "freeze":
            controller.freeze(*targets)
        else:
            controller.unfreeze(*targets, multiplier=self.value)


@dataclass(frozen=True)
class Timeline:
    """Per step, per plan group: the rate it trains at, and whether it is frozen."""

    rates: list[list[float]]
    frozen: list[list[bool]]


def spec_is_controlled(spec: Spec) -> bool:
    """Whether the spec declares run-time parts for the Controller: a schedule, rule schedules, stages."""
    rule_schedules = any(r.schedule is not None for r in spec.rules)
    return spec.schedule is not None or bool(spec.stages) or rule_schedules


def _stages(plan: Plan) -> list[tuple[int, float, list[int]]]:
    """Each spec stage that has groups: (first step it trains, ``lr_mult``, group indices)."""
    out = []
    for stage in plan.spec.stages:
        idx = [i for i, g in enumerate(plan.groups) if g.stage == stage.name]
        if idx:
            if stage.at is None:
                raise ValueError(f"stage {stage.name!r} starts at an epoch; cases need step stages")
            out.append((stage.at, stage.lr_mult, idx))
    return out


def controlled_rates(plan: Plan, schedule: ml.Schedule, events: Iterable[Event], steps: int) -> Timeline:
    """Each group's rate and frozen state at every step under the Controller, modelled independently.

    Args:
        plan: The case's plan.
        schedule: The factor per step for every group (the case's schedule).
        events: Controller calls. The spec's stages are applied first at their step
            (a stage unfreezes its groups that are still frozen, at its ``lr_mult``), and
            a group's own schedule (a rule's ``schedule``) multiplies its rate.
        steps: Optimizer steps.

    Raises:
        ValueError: An event that the Controller would refuse (unfreezing a group that is
            not frozen, ``freeze_to`` cutting through a group) or that matches no group.

    Example:
        >>> from multilr import ParamInfo, Spec, Rule, plan
        >>> from multilr.schedules import Step
        >>> infos = [ParamInfo(n, (2,), "float32", n[0], ("Linear",), True, n) for n in ("a.w", "b.w")]
        >>> p = plan(infos, Spec(lr=0.1, rules=[Rule("b.*", lr_mult=10, name="head")]))
        >>> t = controlled_rates(p, Step(1, 0.5), [Event(1, "freeze", ("default",)),
        ...                                       Event(2, "unfreeze", ("default",), 4.0)], 3)
        >>> t.rates, t.frozen[1]
        ([[0.1, 1.0], [0.0, 0.5], [0.1, 0.25]], [True, False])
    """
    names = [g.name for g in plan.groups]
    todo = sorted(events, key=lambda e: e.at)
    stages = _stages(plan)
    mult = [1.0] * len(names)
    frozen = [g.frozen for g in plan.groups]
    rates, frozen_at = [], []
    for t in range(steps):
        for start, lr_mult, idx in stages:
            if start == t:  # the stage unfreezes its groups still frozen, at its lr_mult
                for i in idx:
                    if frozen[i]:
                        frozen[i], mult[i] = False, lr_mult
        for event in (e for e in todo if e.at == t):
            _model(event, plan, names, mult, frozen)
        f = schedule.factor(t)
        rates.append(
            [
                0.0 if fr else g.lr * m * f * (g.schedule.factor(t) if g.schedule is not None else 1.0)
                for g, m, fr in zip(plan.groups, mult, frozen, strict=True)
            ]
        )
        frozen_at.append(list(frozen))
    return Timeline(rates, frozen_at)


def _model(event: Event, plan: Plan, names: list[str], mult: list[float], frozen: list[bool]) -> None:
    if event.action == "freeze_to":
        depth: dict[str, int]
        if plan.max_depth is not None:
            depth = {p.name: p.depth for p in plan.params if p.depth is not None}
        else:
            depth = infer_depths([p.name for p in plan.params], "blocks")
        n = int(event.value or 0)
        cut = n + max(depth.values()) + 1 if n < 0 else n
        for i, g in enumerate(plan.groups):
            if g.train_bn:  # the spec's train_bn: norm tensors train through freeze_to
                frozen[i] = False
                continue
            ds = [depth[p] for p in g.params]
            if min(ds) < cut <= max(ds):
                raise ValueError(f"{event.describe()}: group {g.name!r} lies on both sides of depth {cut}")
            frozen[i] = max(ds) < cut
        return
    for name in event.targets(names):
        i = names.index(name)
        if event.action == "set_scale":
            mult[i] = float(event.value or 0.0)
        elif event.action == "freeze":
            frozen[i] = True
        else:
            if not frozen[i]:
                raise ValueError(f"{event.describe()}: group {name!r} is not frozen")
            frozen[i] = False
            if event.value is not None:
                mult[i] = float(event.value)
