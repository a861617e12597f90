"""A backend's groups held against the plan they implement, before anyone trains on them.

``build`` trusts the built-in backends' one-walk path (``emit_table``: the same code the
conformance suite runs on every backend), and checks every other ``emit``: a third-party
backend, or a subclass that overrides ``emit``. A group dropped, merged, reordered or
short of tensors would otherwise surface later as an error that blames the user
(``Controller`` refusing "your" optimizer) or as nothing at all (a group training at
another group's rate). The check reads what every optimizer takes, one dict per group
with its tensors under ``params``, and only counts and identities: it costs one pass
over the tensors and imports no framework.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from multilr._plantypes import Plan
from multilr.errors import BackendError

__all__ = ["check_emitted"]


def check_emitted(backend: str, plan: Plan, groups: Any) -> list[dict[str, Any]]:
    """``groups`` as ``emit`` returned them, refused unless they implement ``plan`` group for group.

    One dict per plan group, in plan order, each with ``params`` holding as many tensors
    as the plan group has parameters, no tensor in two groups, and, where a group says
    its ``name``, the plan group's name.

    Args:
        backend: The backend's name, for the message.
        plan: The plan the backend emitted.
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
        >>> len(check_emitted("mine", p, [{"params": ["A"], "name": "default"}, {"params": ["B"]}]))
        2
        >>> check_emitted("mine", p, [{"params": ["A", "B"], "lr": 0.1}])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multilr.errors.BackendError: backend 'mine' emitted 1 group for a plan of 2 (default, b): ...
    """
    where = f"backend {backend!r}"
    if isinstance(groups, (str, bytes, Mapping)) or not isinstance(groups, Sequence):
        raise BackendError(f"{where}: emit must return a list of group dicts, got {type(groups).__name__}")
    planned = plan.groups
    if len(groups) != len(planned):
        names = ", ".join(g.name for g in planned)
        raise BackendError(
            f"{where} emitted {len(groups)} group{'s' * (len(groups) != 1)} for a plan of {len(planned)} "
            f"({names}): emit must return one group per plan group, in plan order"
        )
    seen: dict[int, int] = {}  # tensor identity -> the first group holding it
    for i, (group, want) in enumerate(zip(groups, planned, strict=True)):
        label = f"{where}, group {i} (plan group {want.name!r})"
        if not isinstance(group, Mapping) or "params" not in group:
            raise BackendError(
                f"{label}: got {type(group).__name__}, not a dict with the tensors under 'params'"
            )
        if "name" in group and group["name"] != want.name:
            raise BackendError(f"{label}: named {group['name']!r}; emit must keep the plan's order and names")
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
