"""The planner: a spec plus a model's named parameters -> a :class:`Plan`.

Framework-free: it sees only :class:`ParamInfo` values, so it is tested without any
framework and gives the same plan for the same names on every backend.

Steps: deduplicate tied tensors (first name wins, others become aliases); match every
rule once per name; resolve each setting per parameter with the precedence the
:class:`~multilr.Spec` documents, refusing conflicts; merge parameters with identical
settings into groups ordered by first appearance and named after the rules that
decided them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from multilr._check import did_you_mean
from multilr._depth import infer_depths
from multilr._params import ParamInfo
from multilr._plantypes import Group, ParamPlan, Plan
from multilr._rules import Rule
from multilr._select import MODULE_TYPE_ALIASES
from multilr._spec import Spec
from multilr.errors import ConflictError, CoverageError, PlanError

__all__ = ["resolve"]

class _Tensor:
    """One distinct tensor while planning: its infos under every name, and what matched."""

    __slots__ = ("frozen", "infos", "name", "rate", "touched", "wd")

    def __init__(self, info: ParamInfo) -> None:
        self.infos = [info]
        self.name = info.name
        # what the rules set: (rule, value) per setting; most tensors get few entries
        self.rate: list[tuple[Rule, tuple[str, float]]] = []
        self.wd: list[tuple[Rule, float]] = []
        self.frozen: list[tuple[Rule, bool]] = []
        self.touched = False


def _dedup(infos: Iterable[ParamInfo]) -> tuple[list[_Tensor], dict[str, str]]:
    tensors: list[_Tensor] = []
    by_key: dict[Hashable, _Tensor] = {}
    seen_names: set[str] = set()
    aliases: dict[str, str] = {}
    for info in infos:
        if not isinstance(info, ParamInfo):
            raise PlanError(f"expected ParamInfo values from the backend, got {type(info).__name__}")
        if info.name in seen_names:
            raise PlanError(f"parameter name {info.name!r} appears twice in the model's parameter list")
        seen_names.add(info.name)
        tensor = by_key.get(info.key)
        if tensor is None:
            tensor = by_key[info.key] = _Tensor(info)
            tensors.append(tensor)
        else:
            tensor.infos.append(info)
            aliases[info.name] = tensor.name
    return tensors, aliases


def _match_rules(spec: Spec, tensors: Sequence[_Tensor]) -> tuple[str, ...]:
    """Record every rule's settings on the tensors it selects.

    Returns the optional rules that selected nothing.
    """
    rule_rates = spec.rule_rates()
    unused: list[str] = []
    for rule in spec.rules:
        matches = rule.select.matches
        hit = 0
        rate: tuple[str, float] | None = None
        if rule.lr is not None:
            rate = ("lr", rule.lr)
        elif rule.lr_mult is not None:
            rate = ("lr_mult", rule.lr_mult)
        elif rule.name in rule_rates:
            rate = ("lr", rule_rates[rule.name])
        for t in tensors:
            if not any(matches(info) for info in t.infos):
                continue
            hit += 1
            t.touched = True
            if rate is not None:
                t.rate.append((rule, rate))
            if rule.weight_decay is not None:
                t.wd.append((rule, rule.weight_decay))
            if rule.frozen is not None:
                t.frozen.append((rule, rule.frozen))
        if hit == 0 and rule.optional:
            unused.append(rule.name)
        elif hit == 0:
            sample = ", ".join(repr(t.name) for t in tensors[:5])
            raise CoverageError(
                f"rule {rule.name!r} matches no parameter (names look like {sample}, ...); "
                "fix its selector or mark it optional"
            )
    return tuple(unused)


def _pick(cands: Sequence[tuple[Rule, Any]], setting: str, pname: str) -> tuple[Rule, Any] | None:
    """Highest priority wins; equal priorities must agree."""
    if not cands:
        return None
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
    return f"{setting}={value}"


def _is_no_decay(info: ParamInfo, classes: Sequence[str]) -> str:
    """The first no-decay class the parameter belongs to, or ``""``."""
    for cls in classes:
        if cls == "bias" and info.leaf == "bias":
            return cls
        if cls == "1d" and info.ndim <= 1:
            return cls
        if cls in ("norm", "embedding"):
            pattern = MODULE_TYPE_ALIASES[cls]
            if any(pattern.search(t) for t in info.module_types):
                return cls
    return ""


def _apply_rates(spec: Spec, tensors: Sequence[_Tensor], aliases: dict[str, str]) -> dict[str, float]:
    """Per-tensor absolute rates keyed by canonical name; unknown names refused."""
    by_name = {t.name: t for t in tensors}
    out: dict[str, float] = {}
    for pname, rate in spec.rates.items():
        canonical = aliases.get(pname, pname)
        tensor = by_name.get(canonical)
        if tensor is None:
            raise CoverageError(
                f"rates: no parameter named {pname!r}{did_you_mean(pname, list(by_name) + list(aliases))}"
            )
        if canonical in out and out[canonical] != rate:
            raise ConflictError(f"rates: {pname!r} and its tied name {canonical!r} give different rates")
        tensor.touched = True
        out[canonical] = rate
    return out


def resolve(infos: Iterable[ParamInfo], spec: Spec) -> Plan:
    """Resolve a spec against named parameters.

    Args:
        infos: What a backend's ``extract`` yields: one :class:`ParamInfo` per name,
            tied tensors sharing a ``key``.
        spec: The spec.

    Returns:
        The plan.

    Raises:
        CoverageError: No parameters; a rule or ``rates`` entry matches nothing; a
            parameter matches nothing under ``unmatched="error"``.
        ConflictError: Two rules set one setting of a parameter to different values.

    Example:
        >>> from multilr import Spec, Rule
        >>> infos = [ParamInfo(n, (2,), "float32", n.split(".")[0], ("Linear",), True, n)
        ...          for n in ("body.weight", "head.weight")]
        >>> plan = resolve(infos, Spec(lr=0.1, rules=[Rule("head.*", lr_mult=10, name="head")]))
        >>> [(g.name, g.lr) for g in plan.groups]
        [('default', 0.1), ('head', 1.0)]
    """
    tensors, aliases = _dedup(infos)
    if not tensors:
        raise CoverageError("the model has no parameters to plan")
    unused = _match_rules(spec, tensors)
    per_tensor = _apply_rates(spec, tensors, aliases)
    decay = spec.layer_decay
    depths: dict[str, int] = {}
    max_depth: int | None = None
    decayed: set[str] = set()
    if decay is not None:
        depths = infer_depths([t.name for t in tensors], decay.depth)
        max_depth = max(depths.values())
        for t in tensors:
            if decay.within is None or any(decay.within.matches(i) for i in t.infos):
                decayed.add(t.name)
                t.touched = True

    untouched = [t.name for t in tensors if not t.touched]
    if untouched and spec.unmatched == "error":
        shown = ", ".join(map(repr, untouched[:10])) + (", ..." if len(untouched) > 10 else "")
        raise CoverageError(
            f"{len(untouched)} parameter(s) match no rule and unmatched='error': {shown}; "
            f"rules: {', '.join(r.name for r in spec.rules) or '(none)'}"
        )

    base = spec.lr
    plans: list[ParamPlan] = []
    for t in tensors:
        info, name = t.infos[0], t.name
        labels: list[str] = []
        rate_rule = _pick(t.rate, "rate", name)
        if name in per_tensor:
            lr, source, absolute = per_tensor[name], f"rates[{name}]", True
            scale = lr / base
            labels.append(source)
        elif rate_rule is not None:
            rule, (kind, value) = rate_rule
            absolute = kind == "lr"
            # keep the scale exact (lr_scale targets read it) and derive lr from it,
            # except for absolute rates, which stay exactly as written
            scale = value / base if absolute else value
            lr = value if absolute else base * value
            source = f"{rule.name} ({kind}={value:g})"
            labels.append(rule.name)
        else:
            lr, source, absolute, scale = base, "default", False, 1.0
        depth = depths.get(name) if name in decayed else None
        if depth is not None and not absolute and decay is not None and max_depth is not None:
            power = max_depth - depth
            scale = scale * decay.decay**power
            lr = base * scale
            source += f" x {decay.decay:g}^{power} (depth {depth}/{max_depth})"
            labels.append(f"depth{depth}")
        elif absolute:
            depth = None

        wd_rule = _pick(t.wd, "weight_decay", name)
        if wd_rule is not None:
            wd, wd_source = wd_rule[1], wd_rule[0].name
            if wd_rule[0].name not in labels:
                labels.append(wd_rule[0].name)
        elif cls := _is_no_decay(info, spec.no_decay):
            wd, wd_source = 0.0, f"no_decay:{cls}"
            labels.append("no_decay")
        else:
            wd, wd_source = spec.weight_decay, "default"

        frozen_rule = _pick(t.frozen, "frozen", name)
        frozen = bool(frozen_rule and frozen_rule[1])
        frozen_source = frozen_rule[0].name if frozen_rule is not None and frozen else ""
        if frozen:
            labels = [frozen_source, *(lab for lab in labels if lab != frozen_source), "frozen"]

        plans.append(
            ParamPlan(
                name=name,
                group="/".join(labels) or "default",
                lr=lr,
                scale=scale,
                weight_decay=wd,
                frozen=frozen,
                depth=depth,
                rate_source=source,
                wd_source=wd_source,
                frozen_source=frozen_source,
                aliases=tuple(i.name for i in t.infos[1:]),
                shape=info.shape,
                requires_grad=info.requires_grad,
            )
        )
    return _merge(spec, plans, aliases, max_depth, unused)


def _merge(
    spec: Spec,
    plans: list[ParamPlan],
    aliases: dict[str, str],
    max_depth: int | None,
    unused: tuple[str, ...],
) -> Plan:
    """Fewest groups: one per distinct (rate, weight decay, frozen), in first-seen order."""
    order: dict[tuple[float, float, bool], list[int]] = {}
    for i, p in enumerate(plans):
        order.setdefault((p.lr, p.weight_decay, p.frozen), []).append(i)
    groups: list[Group] = []
    used: set[str] = set()
    final = list(plans)
    for (lr, wd, frozen), members in order.items():
        name = plans[members[0]].group
        if name in used:  # cannot happen with label-derived names; keep names unique anyway
            name = f"{name}#{len(groups)}"
        used.add(name)
        for i in members:
            if final[i].group != name:
                final[i] = _with_group(final[i], name)
        scale = plans[members[0]].scale
        groups.append(Group(name, tuple(plans[i].name for i in members), lr, scale, wd, frozen))
    return Plan(
        spec=spec,
        params=tuple(final),
        groups=tuple(groups),
        aliases=aliases,
        max_depth=max_depth,
        unused_rules=unused,
    )


def _with_group(p: ParamPlan, group: str) -> ParamPlan:
    return replace(p, group=group)
