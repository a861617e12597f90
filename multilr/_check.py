"""Validation helpers shared by the spec and the planner: numbers, keys, near misses."""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

from multilr.errors import SpecError

__all__ = ["MAX_INT", "check_keys", "did_you_mean", "integer", "number", "shown"]

#: Largest integer a spec may hold (steps, depths, priorities): anything above is a typo,
#: and Python cannot even print an int past 4,300 digits (``to_json`` would fail).
MAX_INT = 2**63 - 1


class _Shown(reprlib.Repr):
    """``repr`` cut to a readable size, so that no value can break the error that shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 120, 120, 60
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 8

    def repr_int(self, x: int, level: int) -> str:
        # builtins.repr refuses ints past 4,300 digits (ValueError).
        if x.bit_length() > 200:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHOWN = _Shown()


def shown(value: Any) -> str:
    """``repr(value)`` for an error message, bounded in size and depth.

    A value in a spec can be a list nested a thousand deep, a YAML alias structure that
    repeats itself a billion times, or a 5,000-digit integer: plain ``repr`` fails on
    each (``RecursionError``, hours of work, ``ValueError``). Small values read as ``repr``.

    Example:
        >>> shown([1, [2, [3, [4, [5]]]]])
        '[1, [2, [3, [...]]]]'
        >>> shown(10**5000)
        '<an integer of 16610 bits>'
    """
    return _SHOWN.repr(value)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest choice, or ``""``.

    Example:
        >>> did_you_mean("lr_mul", ["lr_mult", "lr"])
        " (did you mean 'lr_mult'?)"
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse a mapping with unknown keys, naming every one and the closest known key of each.

    All of them in one error: a spec file with two typos should not take two runs to fix.

    Raises:
        SpecError: ``data`` is not a mapping, or has a key outside ``allowed``.

    Example:
        >>> check_keys({"lr": 1, "rule": [], "wd": 0}, ["lr", "rules"], "a")
        Traceback (most recent call last):
        ...
        multilr.errors.SpecError: a: unknown keys 'rule' (did you mean 'rules'?), 'wd'; known keys: lr, rules
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__} {shown(data)}")
    allowed = list(allowed)
    unknown = [key for key in data if key not in allowed]
    if unknown:
        # only a string key can be a near miss (and str() of a 5,000-digit integer raises)
        near = [did_you_mean(key[:200], allowed) if isinstance(key, str) else "" for key in unknown[:10]]
        listed = ", ".join(f"{shown(key)}{hint}" for key, hint in zip(unknown[:10], near, strict=True))
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        keys = "keys" if len(unknown) > 1 else "key"
        raise SpecError(f"{where}: unknown {keys} {listed}{more}; known keys: {', '.join(allowed)}")


def number(
    value: Any,
    where: str,
    *,
    positive: bool = False,
    upper: float | None = None,
) -> float:
    """Coerce a finite, non-negative number (or numeric string, as YAML gives ``1e-3``).

    Args:
        value: The candidate.
        where: The key, for the error message.
        positive: Refuse zero too.
        upper: Refuse values above this bound.

    Raises:
        SpecError: Not a number, NaN, infinite, negative (or zero), or above ``upper``.

    Example:
        >>> number("1e-3", "lr")
        0.001
    """
    original = shown(value)
    if isinstance(value, str):
        # YAML 1.1 reads "1e-3" (no dot) as a string; accept what float() accepts.
        try:
            value = float(value)
        except ValueError:
            raise SpecError(f"{where} must be a number, got {original}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where} must be a number, got {type(value).__name__} {original}")
    try:
        result = float(value)
    except OverflowError:  # an int past float's range (JSON and Python allow any size)
        result = math.inf
    if not math.isfinite(result):
        raise SpecError(f"{where} must be finite, got {original}")
    if result < 0 or (positive and result == 0):
        need = "> 0" if positive else ">= 0"
        raise SpecError(f"{where} must be {need}, got {original}")
    if upper is not None and result > upper:
        raise SpecError(f"{where} must be <= {upper}, got {original}")
    return result


def integer(value: Any, where: str, *, minimum: int | None = None) -> int:
    """An int (not a bool) within ``minimum .. MAX_INT`` (``-MAX_INT`` without a minimum).

    Raises:
        SpecError: Not an int, or out of range; the message names ``where``.

    Example:
        >>> integer(3, "stages[0]: at", minimum=0)
        3
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where} must be an integer, got {type(value).__name__} {shown(value)}")
    low = -MAX_INT if minimum is None else minimum
    if value < low:
        raise SpecError(f"{where} must be an integer >= {low}, got {shown(value)}")
    if value > MAX_INT:
        raise SpecError(f"{where} must be an integer <= 2**63 - 1, got {shown(value)}")
    return value
