"""Rates per group per step: what a recorder saw, or what a plan and schedule will give.

One shape for both, so the same plot, terminal view and JSON file serve a schedule
previewed before training (:func:`multilr.planned_rates`) and the audit trail of a run
(:class:`multilr.Recorder`). The JSON form::

    {"format": "multilr.rates/1", "groups": ["default", "head"], "steps": [0, 1, 2],
     "rates": {"default": [0.1, 0.09, 0.08], "head": [1.0, 0.9, 0.8]}, "meta": {...}}

``rates[g][i]`` is the rate group ``g`` trained at on optimizer step ``steps[i]``
(0 while frozen).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from multilr._text import parse_json
from multilr.errors import SpecError

__all__ = ["FORMAT", "RateHistory"]

FORMAT = "multilr.rates/1"


@dataclass(frozen=True)
class RateHistory:
    """Each group's rate at each recorded step.

    Args:
        groups: Group names, in optimizer order.
        steps: The optimizer steps recorded, ascending.
        rates: Group name -> one rate per entry of ``steps``.
        meta: Free-form, JSON-able facts (backend, optimizer, schedule, ...).

    Raises:
        SpecError: Lengths disagree, steps not ascending, a group missing or unknown,
            or a rate that is negative or not finite.

    Example:
        >>> h = RateHistory(("a", "b"), (0, 1), {"a": (0.1, 0.05), "b": (1.0, 0.5)})
        >>> h.at(1)
        {'a': 0.05, 'b': 0.5}
        >>> RateHistory.from_dict(h.to_dict()) == h
        True
    """

    groups: tuple[str, ...]
    steps: tuple[int, ...]
    rates: Mapping[str, tuple[float, ...]]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        groups = tuple(self.groups)
        if len(set(groups)) != len(groups):
            raise SpecError(f"rate history: a group name appears twice in {list(groups)}")
        steps = tuple(int(s) for s in self.steps)
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise SpecError("rate history: steps must be strictly ascending")
        extra = sorted(set(self.rates) - set(groups))
        missing = [g for g in groups if g not in self.rates]
        if extra or missing:
            raise SpecError(f"rate history: rates for unknown groups {extra} / missing for {missing}")
        rates: dict[str, tuple[float, ...]] = {}
        for g in groups:
            row = tuple(float(r) for r in self.rates[g])
            if len(row) != len(steps):
                raise SpecError(f"rate history: group {g!r} has {len(row)} rates for {len(steps)} steps")
            bad = next((i for i, r in enumerate(row) if not math.isfinite(r) or r < 0), None)
            if bad is not None:
                raise SpecError(f"rate history: group {g!r} has rate {row[bad]!r} at step {steps[bad]}")
            rates[g] = row
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "rates", MappingProxyType(rates))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RateHistory):
            return NotImplemented
        return (self.groups, self.steps, dict(self.rates), dict(self.meta)) == (
            other.groups,
            other.steps,
            dict(other.rates),
            dict(other.meta),
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking mappings inside

    def at(self, step: int) -> dict[str, float]:
        """Each group's rate at a recorded step.

        Raises:
            KeyError: ``step`` was not recorded.
        """
        try:
            i = self.steps.index(step)
        except ValueError:
            raise KeyError(step) from None
        return {g: self.rates[g][i] for g in self.groups}

    def ratios(self, reference: str) -> dict[str, tuple[float, ...]]:
        """Each group's rate divided by ``reference``'s, per step (``nan`` where it is 0)."""
        ref = self.rates[reference]
        return {
            g: tuple(r / x if x else math.nan for r, x in zip(self.rates[g], ref, strict=True))
            for g in self.groups
        }

    # -- mapping and files ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see the module docstring)."""
        return {
            "format": FORMAT,
            "groups": list(self.groups),
            "steps": list(self.steps),
            "rates": {g: list(self.rates[g]) for g in self.groups},
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RateHistory:
        """Read the JSON form back.

        Raises:
            SpecError: Not a ``multilr.rates/1`` mapping, or inconsistent content.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise SpecError(f"not a multilr rate history (format {FORMAT!r} expected, got {got!r})")
        for key in ("groups", "steps", "rates"):
            if key not in data:
                raise SpecError(f"rate history: missing key {key!r}")
        rates = data["rates"]
        if not isinstance(rates, Mapping):
            raise SpecError("rate history: 'rates' must map group name -> list of rates")
        return cls(
            tuple(data["groups"]),
            tuple(data["steps"]),
            {g: tuple(v) for g, v in rates.items()},
            data.get("meta") or {},
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON form to ``path``; returns the path."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RateHistory:
        """Read a file written by :meth:`save`.

        Raises:
            SpecError: Unreadable file, bad JSON, or not a rate history.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read rate history {str(p)!r}: {exc.strerror}") from None
        return cls.from_dict(parse_json(text, f"rate history {str(p)!r}"))

    @classmethod
    def from_rows(
        cls,
        groups: Sequence[str],
        rows: Sequence[tuple[int, Sequence[float]]],
        meta: Mapping[str, Any] | None = None,
    ) -> RateHistory:
        """Build from ``(step, [rate of each group])`` rows, as a recorder collects them."""
        steps = tuple(s for s, _ in rows)
        rates = {g: tuple(float(r[i]) for _, r in rows) for i, g in enumerate(groups)}
        return cls(tuple(groups), steps, rates, meta or {})
