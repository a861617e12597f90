"""Schedules as plain mappings (YAML/JSON): ``{"kind": "one_cycle", "total": 1000, ...}``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from multilr._check import MAX_INT, check_keys, did_you_mean, integer, shown
from multilr.errors import SpecError
from multilr.schedules._base import Chain, Schedule
from multilr.schedules._shapes import (
    SGDR,
    Constant,
    Cosine,
    Cyclical,
    Exponential,
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


def schedule_to_dict(schedule: Schedule, *, describe_code: bool = False) -> dict[str, Any]:
    """The mapping form of ``schedule``.

    Args:
        schedule: The schedule.
        describe_code: Write a part that is Python code (a :class:`~multilr.schedules.Function`,
            a schedule class of your own) as ``{"function": "<its description>"}`` instead of
            raising: a report (what :meth:`Plan.to_json <multilr.Plan.to_json>` shows), not
            something :func:`schedule_from_dict` reads back.

    Raises:
        SpecError: A part is Python code (a ``Function``, a class of your own) and
            ``describe_code`` is false: code has no mapping form.

    Example:
        >>> from multilr.schedules import Cosine, Function, Warmup
        >>> schedule_to_dict(Warmup(Cosine(100), steps=10))["inner"]
        {'kind': 'cosine', 'total': 100, 'final': 0.0}
        >>> flat = Function(lambda i: 1.0, name="flat")
        >>> schedule_to_dict(Warmup(flat, steps=10), describe_code=True)["inner"]
        {'function': 'Function(flat)'}
    """
    kind = _NAMES.get(type(schedule))
    if kind is None:  # a Function, or a Schedule subclass of the user's: code
        if describe_code:
            return {"function": schedule.describe()}
        raise SpecError(f"{schedule.describe()} is Python code and has no mapping (YAML/JSON) form")
    out: dict[str, Any] = {"kind": kind}
    for f in fields(schedule):  # type: ignore[arg-type]
        value = getattr(schedule, f.name)
        if isinstance(value, Schedule):
            value = schedule_to_dict(value, describe_code=describe_code)
        elif f.name == "parts":
            value = [schedule_to_dict(p, describe_code=describe_code) for p in value]
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
        raise SpecError(
            f"{where} must be a mapping with a 'kind' (one of {', '.join(KINDS)}), got {shown(data)}"
        )
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        # only a string can be a near miss (and str() of a 5,000-digit integer raises)
        near = did_you_mean(kind[:100], KINDS) if isinstance(kind, str) else ""
        raise SpecError(f"{where}.kind {shown(kind)} unknown{near}; known: {', '.join(KINDS)}")
    cls = KINDS[kind]
    check_keys(data, ["kind", *(f.name for f in fields(cls))], where)  # type: ignore[arg-type]
    kwargs = {
        f.name: _field(str(f.type), data[f.name], f"{where}.{f.name}")
        for f in fields(cls)  # type: ignore[arg-type]
        if f.name in data
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise SpecError(f"{where} ({kind}): {exc}") from None


def _field(kind: str, value: Any, where: str) -> Any:
    """One field of a schedule's mapping, checked for its type (``kind``: the annotation).

    The classes check ranges; this checks what only a mapping can get wrong: a list where
    a number goes, ``"0.5"`` for a factor (YAML 1.1 reads ``5e-1`` as text; taken as
    ``float()`` reads it), an integer too large to print, nested schedules.
    """
    if kind == "Schedule":
        return schedule_from_dict(value, where)
    if kind.startswith("tuple["):
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list, got {shown(value)}")
        if kind == "tuple[Schedule, ...]":
            return tuple(schedule_from_dict(p, f"{where}[{i}]") for i, p in enumerate(value))
        return tuple(_step(v, f"{where}[{i}]") for i, v in enumerate(value))
    if kind == "int | None" and value is None:
        return None
    if kind in ("int", "int | None"):
        return _step(value, where)
    if kind == "float":
        if isinstance(value, str):
            return number_text(value, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where} must be a number, got {type(value).__name__} {shown(value)}")
        return value  # the class checks its range
    if kind == "str" and not isinstance(value, str):
        raise SpecError(f"{where} must be a string, got {type(value).__name__} {shown(value)}")
    if kind == "bool" and not isinstance(value, bool):
        raise SpecError(f"{where} must be true or false, got {shown(value)}")
    return value


def _step(value: Any, where: str) -> int | float:
    """A whole number of steps: an int below 2**63, or a float with no fraction (``1e3``)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return value if abs(value) <= MAX_INT else integer(int(value), where)
    return integer(value, where)


def number_text(text: str, where: str) -> float:
    """A number written as text, as YAML 1.1 gives ``1e-3``; the class checks its range."""
    try:
        return float(text)
    except ValueError:
        raise SpecError(f"{where} must be a number, got {shown(text)}") from None
