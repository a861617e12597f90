"""Validation helpers shared by the spec and the planner: numbers, keys, near misses."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from multilr.errors import SpecError

__all__ = ["check_keys", "did_you_mean", "number"]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest choice, or ``""``.

    Example:
        >>> did_you_mean("lr_mul", ["lr_mult", "lr"])
        " (did you mean 'lr_mult'?)"
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse a mapping with unknown keys, naming each and the closest known key.

    Raises:
        SpecError: ``data`` is not a mapping, or has a key outside ``allowed``.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise SpecError(
                f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed)}; "
                f"known keys: {', '.join(allowed)}"
            )


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
    original = value
    if isinstance(value, str):
        # YAML 1.1 reads "1e-3" (no dot) as a string; accept what float() accepts.
        try:
            value = float(value)
        except ValueError:
            raise SpecError(f"{where} must be a number, got {original!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where} must be a number, got {type(value).__name__} {original!r}")
    result = float(value)
    if not math.isfinite(result):
        raise SpecError(f"{where} must be finite, got {original!r}")
    if result < 0 or (positive and result == 0):
        need = "> 0" if positive else ">= 0"
        raise SpecError(f"{where} must be {need}, got {original!r}")
    if upper is not None and result > upper:
        raise SpecError(f"{where} must be <= {upper}, got {original!r}")
    return result
