"""A backend's groups held against the plan they implement, before anyone trains on them.

``build`` checks what every backend's ``emit`` returns, except the backends shipped with
multilr (``multilr_torch``, ``multilr_oneflow``: the conformance suite runs them here) on
their one-walk path. A group dropped, merged, reordered, short of tensors or given
another group's rate would otherwise surface later as an error that blames the user
(``Controller`` refusing "your" optimizer) or as nothing at all (torch trains any list of
groups). The check reads what every optimizer takes, one dict per group with its tensors
under ``params``, and the settings multilr computes (``lr``, ``lr_scale``,
``weight_decay``); which tensor sits in which group it can only count: that the right
tensors train at the right rates is what the conformance suite proves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from multilr._plantypes import Plan
from multilr.errors import BackendError

if TYPE_CHECKING:
    from multilr.backend import Convention

__all__ = ["check_emitted"]

#: The settings multilr computes per group; other keys (the spec's ``hyper``, a
#: backend's own) a backend may name as its framework does.
_COMPUTED = ("lr", "lr_scale", "weight_decay")


def check_emitted(backend: str, plan: Plan, convention: Convention, groups: Any) -> list[dict[str, Any]]:
    """``groups`` as ``emit`` returned them, refused unless they implement ``plan`` group for group.

    One dict per plan group, in plan order, each with ``params`` (a list) holding as many
    tensors as the plan group has parameters, no tensor twice, the plan group's ``name``
    where a group says one, and the plan's ``lr``, ``weight_decay`` and (convention
    ``lr_scale`` only) ``lr_scale``. ``build`` calls it after ``emit`` returns; a backend
    that calls it itself before it sets any frozen flag keeps a refused build from
    changing the model.

    Args:
        backend: The backend's name, for the message.
        plan: The plan the backend emitted.
        convention: The backend's convention (``"lr"`` or ``"lr_scale"``).
        groups: What its ``emit`` returned.

    Returns:
        ``groups`` as a list.

    Raises:
        BackendError: The groups do not implement the plan (the message names the
            backend and the first group that is wrong).

    Example:
        >>> from multilr import ParamInfo, plan
        >>> p = plan([ParamInfo(n, (2,), "float32", "", (), True, n) for n in ("a", "b")],
        ...          {"lr": 0.1, "rules": [{"prefix": "b", "lr_mult": 2, "name": "b"}]})
        >>> ok = [{"params": ["A"], "lr": 0.1, "weight_decay": 0.0},
        ...       {"params": ["B"], "name": "b", "lr": 0.2, "weight_decay": 0.0}]
        >>> len(check_emitted("mine", p, "lr", ok))
        2
        >>> check_emitted("mine", p, "lr", ok[::-1])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multilr.errors.BackendError: backend 'mine', group 0 (plan group 'default'): named 'b'; ...
    """
    from multilr.backend import group_options  # multilr.backend re-exports this function

    where = f"backend {backend!r}"
    if isinstance(groups, (str, bytes, Mapping)) or not isinstance(groups, Sequence):
        raise BackendError(f"{where}: emit must return a list of group dicts, got {type(groups).__name__}")
    planned = plan.groups
    if len(groups) != len(planned):
        raise BackendError(_count_message(where, planned, groups))
    seen: dict[int, int] = {}  # tensor identity -> the group holding it
    expected = group_options(plan, convention)
    for i, (group, want, options) in enumerate(zip(groups, planned, expected, strict=True)):
        label = f"{where}, group {i} (plan group {want.name!r})"
        if not isinstance(group, Mapping) or "params" not in group:
            raise BackendError(
                f"{label}: got {type(group).__name__}, not a dict with the tensors under 'params'"
            )
        if "name" in group and group["name"] != want.name:
            raise BackendError(f"{label}: named {group['name']!r}; emit must keep the plan's order and names")
        _check_settings(label, group, options, convention)
        params = group["params"]
        if isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Sequence):
            raise BackendError(f"{label}: 'params' must be a list of tensors, got {type(params).__name__}")
        if len(params) != len(want.params):
            raise BackendError(
                f"{label}: {len(params)} tensors for the plan's {len(want.params)} "
                f"({', '.join(want.params[:3])}{', ...' if len(want.params) > 3 else ''})"
            )
        for p in params:
            if id(p) in seen:
                twice = "one tensor twice" if seen[id(p)] == i else f"a tensor of group {seen[id(p)]} too"
                raise BackendError(f"{label}: holds {twice}; each tensor belongs to one group, once")
            seen[id(p)] = i
    return list(groups)


def _count_message(where: str, planned: Sequence[Any], groups: Sequence[Any]) -> str:
    """Too many or too few groups: which plan groups are missing, when the groups say their names."""
    n = len(groups)
    names = [g.name for g in planned]
    shown = ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
    message = f"{where} emitted {n} group{'s' * (n != 1)} for a plan of {len(planned)} ({shown})"
    said = {g["name"] for g in groups if isinstance(g, Mapping) and "name" in g}
    missing = [name for name in names if name not in said]
    if said and missing and n < len(planned):
        message += f"; missing: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
        if any(g.frozen for g in planned if g.name in missing):
            message += " (frozen groups are emitted too, at rate 0)"
    return message + ": emit must return one group per plan group, in plan order"


def _check_settings(
    label: str, group: Mapping[str, Any], options: Mapping[str, Any], convention: str
) -> None:
    """The group's ``lr``, ``lr_scale`` and ``weight_decay`` are the plan's, for the convention."""
    if convention == "lr" and "lr_scale" in group:
        raise BackendError(
            f"{label}: carries lr_scale under convention 'lr', where lr is already scaled; "
            "a framework that applies lr_scale would scale the rate twice"
        )
    for key in _COMPUTED:
        if key not in options:
            continue
        if key not in group:
            raise BackendError(
                f"{label}: no {key!r}; every group sets it explicitly (the plan's: {options[key]!r})"
            )
        if not _same(group[key], options[key]):
            raise BackendError(f"{label}: {key} {group[key]!r}, where the plan's is {options[key]!r}")


def _same(got: Any, want: float) -> bool:
    """Equal as numbers, to rounding (a backend may multiply base and scale itself)."""
    try:
        value = float(got)
    except (TypeError, ValueError):
        return False
    return math.isclose(value, want, rel_tol=1e-9, abs_tol=0.0)
