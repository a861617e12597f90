"""The planner: a spec plus a model's named parameters -> a :class:`Plan`.

Framework-free: it sees only :class:`ParamInfo` values (or their columns, a
:class:`ParamTable`), so it is tested without any framework and gives the same plan
for the same names on every backend.

Steps: deduplicate tied tensors (first name wins, others become aliases:
:mod:`multilr._tensors`); match every rule once per name; layer decay's depths and
factors (:mod:`multilr._layerdecay`); resolve each setting per parameter with the
precedence the :class:`~multilr.Spec` documents, refusing conflicts; merge parameters
with identical settings into groups ordered by first appearance and named after the
rules that decided them.

It works on columns (one list per setting, indexed by tensor position) and sparse maps
of rule hits, not on an object per tensor, and leaves the per-parameter records and
provenance strings to :mod:`multilr._decisions`, which makes them when someone reads
them: planning 2,000 tensors costs a few milliseconds, most of it depth inference and
naming up to one group per tensor.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import mul
from typing import Any

from multilr._check import did_you_mean
from multilr._decisions import Decisions, GroupColumns, RateWin, SettingWin
from multilr._hints import ModelHints
from multilr._layerdecay import decay_one, decay_towers
from multilr._nomatch import no_match_hint
from multilr._params import ParamInfo, ParamTable
from multilr._plantypes import Plan
from multilr._rules import Rule
from multilr._select import ModuleType, matching, per_class
from multilr._spec import Spec
from multilr._stages import stage_of
from multilr._tensors import Tensors
from multilr.errors import ConflictError, CoverageError, PlanError, SpecError
from multilr.schedules import Schedule

__all__ = ["resolve"]


def _as_table(infos: Iterable[ParamInfo]) -> ParamTable:
    """Check a backend's ``ParamInfo`` values in order (type, then name), then take their columns."""
    checked: list[ParamInfo] = []
    seen: set[str] = set()
    for info in infos:
        if not isinstance(info, ParamInfo):
            raise PlanError(f"expected ParamInfo values from the backend, got {type(info).__name__}")
        if info.name in seen:
            raise PlanError(f"parameter name {info.name!r} appears twice in the model's parameter list")
        types = info.module_types
        # a bare string is the usual slip ("LayerNorm" for ("LayerNorm",)): family matching
        # would then look at its letters and miss, silently
        if not isinstance(types, tuple) or not all(isinstance(t, str) for t in types):
            raise PlanError(
                f"parameter {info.name!r}: module_types must be a tuple of class names, most derived "
                f"first, got {types!r}"
            )
        try:
            hash(info.key)
        except TypeError:
            raise PlanError(
                f"parameter {info.name!r}: key must be hashable (the tensor's identity, shared by tied "
                f"names), got {type(info.key).__name__}"
            ) from None
        seen.add(info.name)
        checked.append(info)
    return ParamTable.from_infos(checked)


class _Hits:
    """Which rule sets which setting of which tensor: the winner so far, and any rivals."""

    __slots__ = (
        "frozen", "frozen_rivals", "rate", "rate_rivals", "sched", "sched_rivals", "selected", "touched",
        "wd", "wd_rivals",
    )

    def __init__(self) -> None:
        self.rate: dict[int, RateWin] = {}
        self.wd: dict[int, SettingWin] = {}
        self.frozen: dict[int, SettingWin] = {}
        self.sched: dict[int, tuple[Rule, Schedule]] = {}
        # position -> every (rule, value) for it, in rule order, once a second rule sets it
        self.rate_rivals: dict[int, list[RateWin]] = {}
        self.wd_rivals: dict[int, list[SettingWin]] = {}
        self.frozen_rivals: dict[int, list[SettingWin]] = {}
        self.sched_rivals: dict[int, list[tuple[Rule, Schedule]]] = {}
        self.touched: set[int] = set()
        # rule name -> the positions it selected, kept only for rules a stage names
        self.selected: dict[str, list[int]] = {}


def _record(wins: dict[int, Any], rivals: dict[int, list[Any]], hits: list[int], win: Any) -> None:
    """Give ``win`` to every position in ``hits``; a position already set keeps both as rivals."""
    for t in wins.keys() & hits:
        rivals.setdefault(t, [wins[t]]).append(win)
    wins.update(dict.fromkeys(hits, win))


def _match_rules(spec: Spec, table: ParamTable, tensors: Tensors) -> tuple[_Hits, tuple[str, ...]]:
    """Record every rule's settings on the tensors it selects.

    Returns the hits and the optional rules that selected nothing.
    """
    rule_rates = spec.rule_rates()
    staged = {name for stage in spec.stages for name in stage.unfreeze}
    hits = _Hits()
    unused: list[str] = []
    for rule in spec.rules:
        selected = tensors.of(matching(rule.select, table))
        if not selected:
            if rule.optional:
                unused.append(rule.name)
                continue
            sample = ", ".join(repr(n) for n in tensors.names[:5])
            raise CoverageError(
                f"rule {rule.name!r} matches no parameter (names look like {sample}, ...); "
                f"fix its selector or mark it optional{no_match_hint(rule.select, table)}"
            )
        hits.touched.update(selected)
        rate: tuple[str, float] | None = None
        if rule.lr is not None:
            rate = ("lr", rule.lr)
        elif rule.lr_mult is not None:
            rate = ("lr_mult", rule.lr_mult)
        elif rule.name in rule_rates:
            rate = ("lr", rule_rates[rule.name])
        if rate is not None:
            _record(hits.rate, hits.rate_rivals, selected, (rule, rate))
        if rule.weight_decay is not None:
            _record(hits.wd, hits.wd_rivals, selected, (rule, rule.weight_decay))
        if rule.frozen is not None:
            _record(hits.frozen, hits.frozen_rivals, selected, (rule, rule.frozen))
        if rule.schedule is not None:
            _record(hits.sched, hits.sched_rivals, selected, (rule, rule.schedule))
        if rule.name in staged:
            hits.selected[rule.name] = selected
    return hits, tuple(unused)


def _pick(cands: Sequence[tuple[Rule, Any]], setting: str, pname: str) -> tuple[Rule, Any]:
    """Highest priority wins; equal priorities must agree."""
    top = max(rule.priority for rule, _ in cands)
    best = [(rule, value) for rule, value in cands if rule.priority == top]
    first_rule, first_value = best[0]
    for rule, value in best[1:]:
        if value != first_value:
            raise ConflictError(
                f"parameter {pname!r}: rules {first_rule.name!r} ({_show(first_value, setting)}) and "
                f"{rule.name!r} ({_show(value, setting)}) both set its {setting} at priority {top}; "
                "give one a higher priority or narrow a selector"
            )
    return best[0]


def _show(value: Any, setting: str) -> str:
    if isinstance(value, tuple):
        return f"{value[0]}={value[1]:g}"
    if isinstance(value, Schedule):
        return value.describe()
    return f"{setting}={value}"


def _settle(hits: _Hits, names: Sequence[str]) -> None:
    """Pick the winner wherever two rules set one setting; conflicts raise in model order."""
    contested = (
        hits.rate_rivals.keys() | hits.wd_rivals.keys() | hits.frozen_rivals.keys() | hits.sched_rivals.keys()
    )
    for t in sorted(contested):
        if t in hits.rate_rivals:
            hits.rate[t] = _pick(hits.rate_rivals[t], "rate", names[t])
        if t in hits.wd_rivals:
            hits.wd[t] = _pick(hits.wd_rivals[t], "weight_decay", names[t])
        if t in hits.frozen_rivals:
            hits.frozen[t] = _pick(hits.frozen_rivals[t], "frozen", names[t])
        if t in hits.sched_rivals:
            hits.sched[t] = _pick(hits.sched_rivals[t], "schedule", names[t])


def _apply_rates(spec: Spec, tensors: Tensors) -> dict[int, float]:
    """Per-tensor absolute rates keyed by position; unknown names refused."""
    if not spec.rates:
        return {}
    position = {name: t for t, name in enumerate(tensors.names)}
    aliases = tensors.aliases
    out: dict[int, float] = {}
    for pname, rate in spec.rates.items():
        canonical = aliases.get(pname, pname)
        t = position.get(canonical)
        if t is None:
            raise CoverageError(
                f"rates: no parameter named {pname!r}{did_you_mean(pname, list(position) + list(aliases))}"
            )
        if t in out and out[t] != rate:
            raise ConflictError(f"rates: {pname!r} and its tied name {canonical!r} give different rates")
        out[t] = rate
    return out


def _in_class(cls: str, table: ParamTable, tensors: Tensors) -> Iterable[Any]:
    """Per tensor (by position): whether it is in the tensor class ``cls`` (truthy or not).

    The classes of ``no_decay``; ``train_bn`` asks for ``norm``. A tied tensor is in a
    class when any of its names is, as a rule selecting any of its names applies to it:
    ``lm_head.weight`` tied to ``embed.weight`` is an embedding whichever module
    registered it first.
    """
    names = table.names
    flags: Iterable[Any]
    if cls == "bias" and table.attributes is not None:  # a backend named the attributes
        flags = [leaf == "bias" for leaf in table.leaves()]
    elif cls == "bias":  # the attribute is named bias
        flags = map(str.endswith, names, repeat(".bias"))
        if "bias" in names:
            flags = [f or n == "bias" for f, n in zip(flags, names, strict=True)]
    elif cls == "1d":
        flags = (len(shape) <= 1 for shape in table.shapes)
    else:  # "norm", "embedding": a family of module classes, as ModuleType("norm") selects
        flags = per_class(table.module_types, ModuleType(cls)._matches_types)
    if tensors.position is not None:  # tied names: a tensor is in the class if any name is
        folded = [False] * len(tensors.names)
        for t in compress(tensors.position, flags):
            folded[t] = True
        flags = folded
    return flags


def _no_decay_classes(classes: Sequence[str], table: ParamTable, tensors: Tensors) -> list[str]:
    """The first no-decay class each tensor belongs to, or ``""``."""
    out: list[str] = []
    for cls in classes:
        flags = _in_class(cls, table, tensors)
        if not out:  # the first class: nothing to keep
            out = [cls if flag else "" for flag in flags]
            continue
        for t in compress(range(len(out)), flags):
            if not out[t]:
                out[t] = cls
    return out


def _rates_and_scales(
    spec: Spec, decided: Decisions, depths: list[int], decayed: range | list[int], factor: list[float]
) -> None:
    """Each tensor's scale and rate: ``rates``, then rules, then layer decay on top."""
    base = spec.lr
    scale = decided.scale
    absolute: dict[int, float] = {}  # exact rates, kept as written: no decay, no rounding
    for t, (_, (kind, value)) in decided.rate_rule.items():
        if kind == "lr":
            absolute[t] = value
        else:
            scale[t] = value
    absolute.update(decided.rates)  # a `rates` entry wins over any rule
    if depths:
        if isinstance(decayed, range) and not absolute:  # the usual case: every tensor, in C
            scale = decided.scale = list(map(mul, scale, factor))
            decided.depth = list(depths)
        else:
            depth = decided.depth
            for t in decayed:
                if t not in absolute:
                    scale[t] = scale[t] * factor[t]
                    depth[t] = depths[t]
    for t, value in absolute.items():
        scale[t] = value / base
    lr = decided.lr = list(map(mul, repeat(base), scale))
    for t, value in absolute.items():
        lr[t] = value


def _merge(decided: Decisions) -> None:
    """Fewest groups: one per distinct (rate, weight decay, frozen[, schedule, stage, kept]), in order.

    A rule's schedule, a stage and ``train_bn`` keep their tensors apart from equal-rate
    others: the Controller changes those groups' rates, or freezes them, on their own.
    """
    index: dict[tuple[Any, ...], int] = {}
    columns: list[Sequence[Any]] = [decided.lr, decided.weight_decay, decided.frozen]
    n = len(decided.names)
    if decided.schedule_rule:
        sched = decided.schedule_rule
        columns.append([sched[t][1] if t in sched else None for t in range(n)])
    if decided.stage:
        columns.append([decided.stage.get(t, -1) for t in range(n)])
    if decided.kept is not None:
        columns.append(decided.kept)
    group_of = decided.group_of = [index.setdefault(key, len(index)) for key in zip(*columns, strict=True)]
    names = decided.names
    count = len(index)
    firsts: Sequence[int] = range(n)  # each group's first tensor
    if count == n:  # every tensor its own group
        members: list[tuple[str, ...]] = [(name,) for name in names]
    elif count == 1:
        firsts, members = [0], [tuple(names)]
    else:
        # the lowest position of each group, in group order (groups number in order of
        # appearance, so their first positions ascend)
        firsts = sorted(dict(zip(reversed(group_of), range(n - 1, -1, -1), strict=True)).values())
        members = [(names[t],) for t in firsts]
        # only groups of two or more need their members gathered
        shared: dict[int, list[str]] = {g: [] for g, size in Counter(group_of).items() if size > 1}
        if shared:
            for t in compress(range(n), map(shared.__contains__, group_of)):
                shared[group_of[t]].append(names[t])
            for g, gathered in shared.items():
                members[g] = tuple(gathered)
    # a group's settings are its first tensor's (its key in ``index``): with one group per
    # tensor, the tensor columns themselves
    lr, scale, wd, frozen = decided.lr, decided.scale, decided.weight_decay, decided.frozen
    if count < n:
        lr, scale, wd = (list(map(column.__getitem__, firsts)) for column in (lr, scale, wd))
        frozen = list(map(frozen.__getitem__, firsts))
    decided.groups = GroupColumns(_unique(decided.group_names(firsts)), members, lr, scale, wd, frozen)
    decided.group_firsts = list(firsts)


def _unique(names: list[str]) -> list[str]:
    """Group names made unique (cannot be needed with label-derived names; kept anyway)."""
    if len(set(names)) == len(names):
        return names
    used: set[str] = set()
    out = []
    for g, name in enumerate(names):
        if name in used:
            name = f"{name}#{g}"
        used.add(name)
        out.append(name)
    return out


def resolve(infos: Iterable[ParamInfo] | ParamTable, spec: Spec, *, hints: ModelHints | None = None) -> Plan:
    """Resolve a spec against named parameters.

    Args:
        infos: What a backend's ``extract`` yields: one :class:`ParamInfo` per name,
            tied tensors sharing a ``key``; or the same as a :class:`ParamTable`.
        spec: The spec.
        hints: The model's own hints (:func:`multilr._hints.read_hints`), honoured
            unless ``spec.model_hints`` is false.

    Returns:
        The plan.

    Raises:
        CoverageError: No parameters; a rule or ``rates`` entry matches nothing; a
            parameter matches nothing under ``unmatched="error"``.
        ConflictError: Two rules set one setting of a parameter to different values.
        SpecError: A stage's ``lr_mult`` makes a parameter's rate overflow; stages in
            steps and in epochs reach one parameter.

    Example:
        >>> from multilr import Spec, Rule
        >>> infos = [ParamInfo(n, (2,), "float32", n.split(".")[0], ("Linear",), True, n)
        ...          for n in ("body.weight", "head.weight")]
        >>> plan = resolve(infos, Spec(lr=0.1, rules=[Rule("head.*", lr_mult=10, name="head")]))
        >>> [(g.name, g.lr) for g in plan.groups]
        [('default', 0.1), ('head', 1.0)]
    """
    table = infos if isinstance(infos, ParamTable) else _as_table(infos)
    tensors = Tensors(table)
    names = tensors.names
    if not names:
        raise CoverageError("the model has no parameters to plan")
    hits, unused = _match_rules(spec, table, tensors)
    hints = hints if spec.model_hints else None
    hinted = None  # the model's depths, read only where a depth is used
    decays = spec.layer_decays
    one = decays[0] if len(decays) == 1 else None  # towers infer their own depths: no hint
    if hints is not None and ((one is not None and one.depth == "blocks") or spec.stages):
        hinted = hints.depths(names)
    decided = Decisions(
        names, tensors.alias_names, tensors.column(table.shapes), tensors.column(table.requires_grad)
    )
    decided.hints = hints
    decided.rates = _apply_rates(spec, tensors)
    hits.touched.update(decided.rates)
    depths: list[int] = []
    decayed: range | list[int] = []
    factor: list[float] = []
    if one is not None:
        depths, decayed, factor = decay_one(one, table, tensors, decided, hinted)
        decided.structure = depths
        if one.within is not None:
            hits.touched.update(decayed)
    elif decays:
        depths, decayed, factor, decided.structure = decay_towers(decays, table, tensors, decided)
        hits.touched.update(decayed)  # the tensors of every tower
    elif hinted is not None:
        decided.structure = hinted

    # layer decay over the whole model touches every tensor
    if spec.unmatched == "error" and (one is None or one.within is not None):
        untouched = [n for t, n in enumerate(names) if t not in hits.touched]
        if untouched:
            shown = ", ".join(map(repr, untouched[:10])) + (", ..." if len(untouched) > 10 else "")
            raise CoverageError(
                f"{len(untouched)} parameter(s) match no rule and unmatched='error': {shown}; "
                f"rules: {', '.join(r.name for r in spec.rules) or '(none)'}"
            )

    _settle(hits, names)
    decided.rate_rule = hits.rate
    decided.wd_rule = hits.wd
    decided.schedule_rule = hits.sched
    decided.frozen_rule = {t: win for t, win in hits.frozen.items() if win[1]}
    for t in decided.frozen_rule:
        decided.frozen[t] = True
    if spec.train_bn:
        # norm tensors no rule froze: kept training by depth freezing (stages, freeze_to)
        frozen = decided.frozen
        kept = [bool(f) and not frozen[t] for t, f in enumerate(_in_class("norm", table, tensors))]
        decided.kept = kept if any(kept) else None
    if spec.stages:
        # a staged tensor is frozen until its stage, whatever a rule says
        decided.stages = tuple(spec.stages)
        decided.stage = stage_of(spec.stages, hits.selected, decided.block_depths)
        if decided.kept is not None:  # train_bn: no stage holds a norm tensor back
            kept = decided.kept
            decided.stage = {t: k for t, k in decided.stage.items() if not kept[t]}
        for t in decided.stage:
            decided.frozen[t] = True
    _rates_and_scales(spec, decided, depths, decayed, factor)
    for t, k in decided.stage.items():  # a stage's rate is known now: refuse it here, not mid-training
        stage = decided.stages[k]
        if not math.isfinite(decided.lr[t] * stage.lr_mult):
            raise SpecError(
                f"stage {stage.name!r}: lr_mult {stage.lr_mult!r} x the planned rate {decided.lr[t]!r} of "
                f"parameter {names[t]!r} overflows; the rate must be a finite number"
            )

    default = spec.weight_decay
    if spec.no_decay:
        decided.no_decay = _no_decay_classes(spec.no_decay, table, tensors)
    if hints is not None and default:  # the model's no-decay names: one more class, after the spec's
        decided.no_decay = hints.no_decay(names, decided.no_decay)
    if decided.no_decay is not None:
        weight_decay = [0.0 if cls else default for cls in decided.no_decay]
    else:
        weight_decay = [default] * len(names)
    for t, (_, value) in hits.wd.items():
        weight_decay[t] = value
    decided.weight_decay = weight_decay

    _merge(decided)
    return Plan._deferred(spec, decided, tensors.aliases, decided.max_depth, unused)
