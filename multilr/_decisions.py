"""What the planner decided, per tensor, as columns; records and reasons made on demand.

The planner fills one :class:`Decisions` per plan: a few lists indexed by tensor
position (model order, tied names folded into their first name) plus sparse maps of
the rules that won a setting. A build reads only the merged groups
(:meth:`Decisions.group_rows`); the per-parameter :class:`~multilr.ParamPlan` records
and their provenance strings ("head (lr_mult=10) x 0.75^3 (depth 2/5)") are made
from the same columns when a plan's ``params`` are first read (tables, JSON,
``Plan.param``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, TypeVar

from multilr._depth import depth_list
from multilr._hints import ModelHints
from multilr._plantypes import GroupRow, ParamPlan
from multilr._rules import Rule
from multilr._stages import Stage
from multilr.schedules import Schedule

__all__ = ["Decisions", "GroupColumns", "RateWin", "SettingWin"]

T = TypeVar("T")

#: The rule that set a tensor's rate and how: ``(rule, ("lr" | "lr_mult", value))``.
RateWin = tuple[Rule, tuple[str, float]]
#: The rule that set a tensor's weight decay or frozen flag, and the value.
SettingWin = tuple[Rule, float]


class Decisions:
    """Every setting of every distinct tensor, and the groups they merge into.

    Attributes:
        names: Canonical parameter names, in model order; position ``t`` is one tensor.
        aliases: Other names of each tensor (tied weights), or ``None`` when none is tied.
        shapes: Each tensor's shape (a tuple, or a subclass such as ``torch.Size``).
        requires_grad: The model's own flag of each tensor, before the build.
        lr: Rate of each tensor once trainable.
        scale: ``lr`` divided by the base rate.
        weight_decay: Each tensor's weight decay.
        frozen: Frozen by a rule.
        depth: Layer depth where layer decay applied to the tensor, else ``None``.
        rates: Positions with an entry in the spec's ``rates``, and that rate.
        rate_rule: Position -> the rule that set its rate (absent: none did).
        wd_rule: Position -> the rule that set its weight decay.
        no_decay: The no-decay class of each tensor (``""``: none), or ``None`` when the
            spec has no classes.
        frozen_rule: Position -> the rule that froze it.
        schedule_rule: Position -> the rule whose own schedule applies to it.
        stages: The spec's stages.
        stage: Position -> index of the stage that unfreezes it (frozen until then).
        group_firsts: The first tensor of each group.
        decay: The layer-decay factor, or ``None`` without layer decay or with towers.
        max_depth: The highest depth (of all towers), or ``None`` without layer decay.
        towers: ``(label, decay, highest depth)`` of each labelled layer decay: the
            towers of a spec with several, or one named decay; empty otherwise.
        tower: Position -> index in :attr:`towers` of the tower that decays it.
        group_of: Index of each tensor's group in :attr:`groups`.
        groups: The merged groups, in order.
        structure: Every tensor's depth in the model's block structure, once known
            (layer decay's or the stages' depths; else made by :meth:`block_depths`).
        hints: The model's hints the planner honoured, or ``None``.
        placed: Position -> the ``layer_decay.place`` pattern that set its depth.
        kept: Per tensor, whether ``train_bn`` keeps it training through freezing by
            depth (a norm tensor no rule froze), or ``None`` when none is.
    """

    __slots__ = (
        "aliases",
        "decay",
        "depth",
        "depth_from",
        "frozen",
        "frozen_rule",
        "group_firsts",
        "group_of",
        "groups",
        "hints",
        "kept",
        "lr",
        "max_depth",
        "names",
        "no_decay",
        "placed",
        "rate_rule",
        "rates",
        "requires_grad",
        "scale",
        "schedule_rule",
        "shapes",
        "stage",
        "stages",
        "structure",
        "tower",
        "towers",
        "wd_rule",
        "weight_decay",
    )

    def __init__(
        self,
        names: Sequence[str],
        aliases: Sequence[tuple[str, ...]] | None,
        shapes: Sequence[tuple[int, ...]],
        requires_grad: Sequence[bool],
    ) -> None:
        self.names = names
        self.aliases = aliases
        self.shapes = shapes
        self.requires_grad = requires_grad
        n = len(names)
        self.lr: list[float] = []
        self.scale: list[float] = [1.0] * n
        self.weight_decay: list[float] = []
        self.frozen: list[bool] = [False] * n
        self.depth: list[int | None] = [None] * n
        self.rates: dict[int, float] = {}
        self.rate_rule: dict[int, RateWin] = {}
        self.wd_rule: dict[int, SettingWin] = {}
        self.no_decay: list[str] | None = None
        self.frozen_rule: dict[int, SettingWin] = {}
        self.schedule_rule: dict[int, tuple[Rule, Schedule]] = {}
        self.stages: tuple[Stage, ...] = ()
        self.stage: dict[int, int] = {}
        self.group_firsts: list[int] = []
        self.decay: float | None = None
        self.max_depth: int | None = None
        self.towers: tuple[tuple[str, float, int], ...] = ()
        self.tower: dict[int, int] = {}
        self.depth_from = ""  # who gave the depths when not the spec's mode ("model.group_matcher()")
        self.group_of: list[int] = []
        self.groups = GroupColumns([], [], [], [], [], [])
        self.structure: list[int] | None = None
        self.hints: ModelHints | None = None
        self.placed: dict[int, str] = {}
        self.kept: list[bool] | None = None

    def block_depths(self) -> list[int]:
        """Every tensor's depth, as ``Controller.freeze_to`` and ``from_depth`` stages count them.

        The depths the planner used (layer decay's, of every tensor, also those outside
        ``within``; or a stage's), else the model's ``group_matcher`` when the spec
        honoured hints, else the block structure of the names. Made on first call.
        """
        if self.structure is None:
            hinted = self.hints.depths(self.names) if self.hints is not None else None
            self.structure = hinted if hinted is not None else depth_list(self.names, "blocks")
        return self.structure

    def group_names(self, firsts: Iterable[int]) -> list[str]:
        """The name of the group of each tensor in ``firsts``: the rules that decided it.

        Rate (``rates[...]`` or the rule), depth, weight decay (the rule or ``no_decay``),
        joined by ``/``; a frozen tensor leads with the rule that froze it and ends with
        ``frozen``; ``train_bn`` last for a tensor it keeps training; ``default`` when
        nothing did. One loop with the columns at hand:
        the merge names up to one group per tensor.
        """
        names, rates, rate_rule, depth = self.names, self.rates, self.rate_rule, self.depth
        wd_rule, no_decay, frozen, frozen_rule = self.wd_rule, self.no_decay, self.frozen, self.frozen_rule
        kept = self.kept
        towers, tower = self.towers, self.tower
        out = []
        for t in firsts:
            labels: list[str] = []
            if t in rates:
                labels.append(f"rates[{names[t]}]")
            elif t in rate_rule:
                labels.append(rate_rule[t][0].name)
            d = depth[t]
            if d is not None:
                if towers:  # depth 3 of one tower is not depth 3 of another
                    labels.append(towers[tower[t]][0])
                labels.append(f"depth{d}")
            wd_win = wd_rule.get(t)
            if wd_win is not None:
                if wd_win[0].name not in labels:
                    labels.append(wd_win[0].name)
            elif no_decay is not None and no_decay[t]:
                labels.append("no_decay")
            sched = self.schedule_rule.get(t)
            if sched is not None and sched[0].name not in labels:
                labels.append(sched[0].name)
            k = self.stage.get(t)
            if k is not None:  # frozen until its stage, not for good
                win = frozen_rule.get(t)
                if win is not None and win[0].name not in labels:
                    labels.insert(0, win[0].name)
                labels.append(self.stages[k].name)
            elif frozen[t]:
                source = frozen_rule[t][0].name
                labels = [source, *(label for label in labels if label != source), "frozen"]
            if kept is not None and kept[t]:
                labels.append("train_bn")
            out.append("/".join(labels) or "default")
        return out

    def group_members(self, items: Sequence[T]) -> list[list[T]]:
        """``items`` (one per tensor, in model order) gathered into one list per group.

        One pass over the tensors, each appended to its group's list: what ``emit`` needs
        when it holds the tensors in the planner's order, with no lookup by name.

        Example:
            >>> d = Decisions(["a", "b", "c"], None, [(), (), ()], [True] * 3)
            >>> d.groups, d.group_of = GroupColumns(["x", "y"], [], [], [], [], []), [0, 1, 0]
            >>> d.group_members(["A", "B", "C"])
            [['A', 'C'], ['B']]
        """
        lists: list[list[T]] = [[] for _ in self.groups.names]
        for g, item in zip(self.group_of, items, strict=True):
            lists[g].append(item)
        return lists

    def group_runtime(self) -> list[tuple[Schedule | None, str | None, bool]]:
        """Each group's own schedule, the stage that unfreezes it (``None``: none), and ``train_bn``."""
        sched, stage, stages, kept = self.schedule_rule, self.stage, self.stages, self.kept
        return [
            (
                sched[t][1] if t in sched else None,
                stages[stage[t]].name if t in stage else None,
                kept is not None and kept[t],
            )
            for t in self.group_firsts
        ]

    def frozen_source(self, t: int) -> str:
        """Why tensor ``t`` is frozen (``""``: it is not)."""
        k = self.stage.get(t)
        if k is not None:
            return f"{self.stages[k].name} (until {self.stages[k].when})"
        return self.frozen_rule[t][0].name if self.frozen[t] else ""

    def rate_source(self, t: int) -> str:
        """Why tensor ``t`` has its rate, with the layer-decay factor when one applies."""
        if t in self.rates:
            return f"rates[{self.names[t]}]"
        win = self.rate_rule.get(t)
        if win is None:
            source = "default"
        else:
            rule, (kind, value) = win
            source = f"{rule.name} ({kind}={value:g})"
        depth = self.depth[t]
        if depth is not None and self.max_depth is not None:
            if t in self.placed:
                by = f" by layer_decay.place[{self.placed[t]!r}]"
            else:
                by = f" by {self.depth_from}" if self.depth_from else ""
            if self.towers:
                label, decay, top = self.towers[self.tower[t]]
                source += f" x {decay:g}^{top - depth} (depth {depth}/{top} of {label}{by})"
            elif self.decay is not None:
                source += f" x {self.decay:g}^{self.max_depth - depth} (depth {depth}/{self.max_depth}{by})"
        sched = self.schedule_rule.get(t)
        if sched is not None:
            source += f", then {sched[0].name}'s {sched[1].describe()}"
        k = self.stage.get(t)
        if k is not None and self.stages[k].lr_mult != 1.0:
            source += f", x {self.stages[k].lr_mult:g} from {self.stages[k].name}"
        return source

    def wd_source(self, t: int) -> str:
        """Why tensor ``t`` has its weight decay."""
        win = self.wd_rule.get(t)
        if win is not None:
            return win[0].name
        if self.no_decay is not None and self.no_decay[t]:
            return f"no_decay:{self.no_decay[t]}"
        return "default"

    def params(self) -> tuple[ParamPlan, ...]:
        """One :class:`~multilr.ParamPlan` per tensor, in model order."""
        group_names = self.groups.names
        return tuple(
            ParamPlan(
                name=name,
                group=group_names[self.group_of[t]],
                lr=self.lr[t],
                scale=self.scale[t],
                weight_decay=self.weight_decay[t],
                frozen=self.frozen[t],
                depth=self.depth[t],
                rate_source=self.rate_source(t),
                wd_source=self.wd_source(t),
                frozen_source=self.frozen_source(t),
                aliases=self.aliases[t] if self.aliases is not None else (),
                shape=tuple(self.shapes[t]),
                requires_grad=self.requires_grad[t],
            )
            for t, name in enumerate(self.names)
        )

    def group_rows(self) -> Iterator[GroupRow]:
        """The merged groups, in order."""
        return self.groups.rows()


class GroupColumns(NamedTuple):
    """The merged groups as columns: entry ``g`` of each list is group ``g``.

    Columns rather than a tuple per group: the build reads each group once, and
    ``zip`` over columns hands out one reused tuple instead of keeping 2,000.
    """

    names: list[str]
    params: list[tuple[str, ...]]
    lr: list[float]
    scale: list[float]
    weight_decay: list[float]
    frozen: list[bool]

    def rows(self) -> Iterator[GroupRow]:
        """Each group as a :data:`~multilr._plantypes.GroupRow`."""
        return zip(self.names, self.params, self.lr, self.scale, self.weight_decay, self.frozen, strict=True)
