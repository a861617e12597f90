"""The plan: what the planner decided, per parameter and per group.

Plain frozen data with no framework in it. Backends read a :class:`Plan` to emit
optimizer groups; people read it through :meth:`Plan.table` and :meth:`Plan.to_json`.

A plan made by the planner holds its decisions in compact columns and makes the
:class:`ParamPlan` and :class:`Group` records on first access of ``params`` or
``groups``: a build needs neither (2,000 of them cost more than the rest of the
planning), and a backend reads the groups as :data:`GroupRow` tuples
(``Plan._group_rows``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from multilr._depth import infer_depths
from multilr._spec import Spec
from multilr.schedules import Schedule, schedule_to_dict

__all__ = ["Decided", "Group", "GroupRow", "ParamPlan", "Plan"]

#: A group as a plain tuple: the fields of :class:`Group`, in order.
GroupRow = tuple[str, tuple[str, ...], float, float, float, bool]


@dataclass(frozen=True, slots=True)
class ParamPlan:
    """The decision for one parameter (tied parameters appear once, under their first name).

    Attributes:
        name: Canonical (first) name.
        group: Name of the group it lands in.
        lr: Learning rate it trains at once trainable.
        scale: ``lr`` divided by the spec's base rate.
        weight_decay: Its weight decay.
        frozen: Frozen by a rule (no update at all).
        depth: Layer depth when layer decay applies to it, else ``None``.
        rate_source: Why it has this rate (rule name, ``rates[...]``, ``default``),
            with the layer-decay factor when one applies.
        wd_source: Why it has this weight decay.
        frozen_source: The rule that froze it, or ``""``.
        aliases: Other names of the same tensor (tied weights).
        shape: Tensor shape.
        requires_grad: The model's own flag before the build.
    """

    name: str
    group: str
    lr: float
    scale: float
    weight_decay: float
    frozen: bool
    depth: int | None
    rate_source: str
    wd_source: str
    frozen_source: str
    aliases: tuple[str, ...]
    shape: tuple[int, ...]
    requires_grad: bool


@dataclass(frozen=True, slots=True)
class Group:
    """One optimizer group: parameters with identical settings.

    Attributes:
        name: Stable name derived from the rules that decided it.
        params: Canonical parameter names, in model order.
        lr: Learning rate once trainable (kept while frozen, for unfreezing).
        scale: ``lr`` divided by the spec's base rate.
        weight_decay: Weight decay.
        frozen: Whether the group is frozen (at the first step, for a staged group).
        schedule: The group's own schedule (a rule's ``schedule``), on top of the spec's.
        stage: Name of the spec stage that unfreezes the group, or ``None``.
        train_bn: Its tensors are norm tensors that the spec's ``train_bn`` keeps training:
            ``Controller.freeze_to`` leaves the group alone.
    """

    name: str
    params: tuple[str, ...]
    lr: float
    scale: float
    weight_decay: float
    frozen: bool
    schedule: Schedule | None = None
    stage: str | None = None
    train_bn: bool = False

    @property
    def effective_scale(self) -> float:
        """The multiplier applied now: 0 while frozen."""
        return 0.0 if self.frozen else self.scale


class Decided(Protocol):
    """What a plan made by the planner keeps instead of its records, until they are asked for."""

    def params(self) -> tuple[ParamPlan, ...]:
        """One record per distinct tensor, in model order."""
        ...

    def group_rows(self) -> Iterable[GroupRow]:
        """The merged groups, in order."""
        ...

    def group_runtime(self) -> list[tuple[Schedule | None, str | None, bool]]:
        """Each group's own schedule, unfreezing stage and ``train_bn``."""
        ...

    @property
    def names(self) -> Sequence[str]:
        """Canonical parameter names, in model order."""
        ...

    def block_depths(self) -> list[int]:
        """Every tensor's depth in the model's structure, in model order."""
        ...


@dataclass(frozen=True)
class Plan:
    """A spec resolved against one model's parameters.

    Every parameter is in exactly one group; groups are ordered by their first
    parameter in model order, so the same model and spec always give the same
    groups, in the same order, with the same names.

    Attributes:
        spec: The spec that was planned.
        params: One :class:`ParamPlan` per distinct tensor, in model order.
        groups: The merged groups.
        aliases: Alias name -> canonical name, for tied parameters.
        max_depth: Highest layer depth, or ``None`` without layer decay.
        unused_rules: Optional rules that matched no parameter (shown by :meth:`table`).
    """

    spec: Spec
    params: tuple[ParamPlan, ...]
    groups: tuple[Group, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    max_depth: int | None = None
    unused_rules: tuple[str, ...] = ()

    @classmethod
    def _deferred(
        cls,
        spec: Spec,
        decided: Decided,
        aliases: Mapping[str, str],
        max_depth: int | None,
        unused_rules: tuple[str, ...],
    ) -> Plan:
        """A plan whose ``params`` and ``groups`` are made from ``decided`` when first read.

        Equal, field for field, to ``Plan(spec, decided.params(), groups, aliases, ...)``;
        what the planner returns.
        """
        plan = object.__new__(cls)
        for name, value in (
            ("spec", spec),
            ("aliases", aliases),
            ("max_depth", max_depth),
            ("unused_rules", unused_rules),
            ("_decided", decided),
        ):
            object.__setattr__(plan, name, value)
        return plan

    if not TYPE_CHECKING:  # hidden from type checkers, which would accept any attribute

        def __getattr__(self, name: str) -> Any:
            # Python calls this only for an attribute it did not find: here ``params`` or
            # ``groups`` of a deferred plan, made once and stored like any field.
            decided = self.__dict__.get("_decided")
            if decided is not None and name in ("params", "groups"):
                if name == "params":
                    value = decided.params()
                else:
                    value = tuple(
                        Group(*row, *extra)
                        for row, extra in zip(decided.group_rows(), decided.group_runtime(), strict=True)
                    )
                object.__setattr__(self, name, value)
                return value
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _group_rows(self) -> Iterable[GroupRow]:
        """The groups as :data:`GroupRow` tuples, without making :class:`Group` records.

        Example:
            >>> from multilr import ParamInfo, Spec, plan
            >>> list(plan([ParamInfo("w", (1,), "float32", "", (), True, "w")], Spec(lr=0.1))._group_rows())
            [('default', ('w',), 0.1, 1.0, 0.0, False)]
        """
        decided: Decided | None = self.__dict__.get("_decided")
        if decided is not None and "groups" not in self.__dict__:
            return decided.group_rows()
        return [(g.name, g.params, g.lr, g.scale, g.weight_decay, g.frozen) for g in self.groups]

    def block_depths(self) -> dict[str, int]:
        """Every parameter's depth in the model's structure: what ``Controller.freeze_to`` counts.

        The depths the planner used (layer decay's, for every tensor, also those outside
        its ``within``), else the model's ``group_matcher()`` when the spec honoured the
        model's hints, else the block structure of the names (stem 0, blocks 1..N,
        head N+1). A plan not made by the planner (built from records) uses layer
        decay's depths when every parameter has one, else the names.

        Example:
            >>> from multilr import ParamInfo, Spec, plan
            >>> names = ["stem.w", "blocks.0.fc.w", "blocks.1.fc.w", "head.w"]
            >>> infos = [ParamInfo(n, (2,), "float32", n[:-2], ("Linear",), True, n) for n in names]
            >>> p = plan(infos, Spec(lr=0.1))
            >>> p.block_depths()
            {'stem.w': 0, 'blocks.0.fc.w': 1, 'blocks.1.fc.w': 2, 'head.w': 3}
        """
        decided: Decided | None = self.__dict__.get("_decided")
        if decided is not None:  # from the planner's columns: no per-parameter records made
            return dict(zip(decided.names, decided.block_depths(), strict=True))
        if self.max_depth is not None and all(p.depth is not None for p in self.params):
            return {p.name: p.depth for p in self.params if p.depth is not None}
        return infer_depths([p.name for p in self.params], "blocks")

    @property
    def base_lr(self) -> float:
        """The spec's base learning rate."""
        return self.spec.lr

    def lr_of(self, group: Group) -> float:
        """Effective learning rate of a group now (0 while frozen)."""
        return 0.0 if group.frozen else group.lr

    def param(self, name: str) -> ParamPlan:
        """Plan of a parameter, by canonical name or alias.

        Raises:
            KeyError: Unknown name.
        """
        canonical = self.aliases.get(name, name)
        for p in self.params:
            if p.name == canonical:
                return p
        raise KeyError(name)

    def group(self, name: str) -> Group:
        """A group by name.

        Raises:
            KeyError: Unknown group name.
        """
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def rates(self) -> dict[str, float]:
        """Effective rate per canonical parameter name."""
        return {p.name: 0.0 if p.frozen else p.lr for p in self.params}

    def table(self, *, rich: bool | None = None, max_rows: int | None = None) -> str:
        """The provenance table, then one line per group.

        Each parameter row shows its group, rate, weight decay, frozen state and
        the rule that decided it.

        Args:
            rich: Render with ``rich`` (box drawing, colour). ``None``: only when
                stdout is a terminal and ``rich`` is installed.
            max_rows: Show at most this many parameter rows (head and tail kept).
        """
        from multilr._table import render_table

        return render_table(self, rich=rich, max_rows=max_rows)

    def summary(self, *, rich: bool | None = None) -> str:
        """Only the group lines of :meth:`table`: name, size, rate, scale, decay, frozen."""
        from multilr._table import render_table

        return render_table(self, rich=rich, params=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of the whole plan (spec, groups, parameters, aliases)."""
        return {
            "spec": self.spec.to_dict(describe_code=True),  # a report: Python code by its label
            "base_lr": self.spec.lr,
            "max_depth": self.max_depth,
            "groups": [
                {
                    "name": g.name,
                    "lr": self.lr_of(g),
                    "scale": g.scale,
                    "weight_decay": g.weight_decay,
                    "frozen": g.frozen,
                    "params": list(g.params),
                    **({"schedule": _described(g.schedule)} if g.schedule is not None else {}),
                    **({"stage": g.stage} if g.stage is not None else {}),
                    **({"train_bn": True} if g.train_bn else {}),
                }
                for g in self.groups
            ],
            "params": [
                {
                    "name": p.name,
                    "group": p.group,
                    "lr": 0.0 if p.frozen else p.lr,
                    "scale": p.scale,
                    "weight_decay": p.weight_decay,
                    "frozen": p.frozen,
                    "depth": p.depth,
                    "rate_source": p.rate_source,
                    "wd_source": p.wd_source,
                    "frozen_source": p.frozen_source,
                    "aliases": list(p.aliases),
                    "shape": list(p.shape),
                }
                for p in self.params
            ],
            "aliases": dict(self.aliases),
            "unused_rules": list(self.unused_rules),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`; stable for diffing between runs and backends."""
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return self.table(rich=False)


def _described(schedule: Schedule) -> dict[str, Any]:
    """A group's schedule in a plan's report: its mapping form, a Python function by its name."""
    return schedule_to_dict(schedule, describe_code=True)
