"""Schedules as plain mappings (YAML/JSON): ``{"kind": "one_cycle", "total": 1000, ...}``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from multilr._check import check_keys
from multilr.errors import SpecError
from multilr.schedules._base import Chain, Schedule
from multilr.schedules._shapes import (
    SGDR,
    Constant,
    Cosine,
    Cyclical,
    Exponential,
    Function,
    Inverse,
    MultiStep,
    OneCycle,
    Polynomial,
    Step,
    Warmup,
)

__all__ = ["KINDS", "schedule_from_dict", "schedule_to_dict"]

#: Mapping kind -> class.
KINDS: Mapping[str, type[Schedule]] = {
    "constant": Constant,
    "step": Step,
    "multistep": MultiStep,
    "exponential": Exponential,
    "inverse": Inverse,
    "cosine": Cosine,
    "sgdr": SGDR,
    "one_cycle": OneCycle,
    "cyclical": Cyclical,
    "polynomial": Polynomial,
    "warmup": Warmup,
    "chain": Chain,
}
_NAMES = {cls: kind for kind, cls in KINDS.items()}


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    """The mapping form of ``schedule``.

    Raises:
        SpecError: A :class:`~multilr.schedules.Function` (code has no mapping form).

    Example:
        >>> from multilr.schedules import Cosine, Warmup
        >>> schedule_to_dict(Warmup(Cosine(100), steps=10))["inner"]
        {'kind': 'cosine', 'total': 100, 'final': 0.0}
    """
    if isinstance(schedule, Function):
        raise SpecError(f"{schedule.describe()} is Python code and has no mapping (YAML/JSON) form")
    out: dict[str, Any] = {"kind": _NAMES[type(schedule)]}
    for f in fields(schedule):  # type: ignore[arg-type]
        value = getattr(schedule, f.name)
        if isinstance(value, Schedule):
            value = schedule_to_dict(value)
        elif f.name == "parts":
            value = [schedule_to_dict(p) for p in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def schedule_from_dict(data: Mapping[str, Any] | Schedule, where: str = "schedule") -> Schedule:
    """A schedule from its mapping form (a :class:`Schedule` is returned as is).

    Raises:
        SpecError: Unknown ``kind`` or key, or a bad value (the message names it).

    Example:
        >>> schedule_from_dict({"kind": "step", "step_size": 10, "gamma": 0.5}).factor(10)
        0.5
    """
    if isinstance(data, Schedule):
        return data
    if not isinstance(data, Mapping) or "kind" not in data:
        raise SpecError(f"{where} must be a mapping with a 'kind' (one of {', '.join(KINDS)}), got {data!r}")
    kind = data["kind"]
    if kind not in KINDS:
        from multilr._check import did_you_mean

        raise SpecError(
            f"{where}.kind {kind!r} unknown{did_you_mean(str(kind), KINDS)}; known: {', '.join(KINDS)}"
        )
    cls = KINDS[kind]
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    check_keys(data, ["kind", *names], where)
    kwargs: dict[str, Any] = {k: v for k, v in data.items() if k != "kind"}
    if "inner" in kwargs:
        kwargs["inner"] = schedule_from_dict(kwargs["inner"], f"{where}.inner")
    if "parts" in kwargs:
        kwargs["parts"] = tuple(
            schedule_from_dict(p, f"{where}.parts[{i}]") for i, p in enumerate(kwargs["parts"])
        )
    if "milestones" in kwargs:
        kwargs["milestones"] = tuple(kwargs["milestones"])
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise SpecError(f"{where} ({kind}): {exc}") from None
