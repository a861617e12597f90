"""The distinct tensors of a parameter table: tied names folded into the first.

The planner and layer decay index everything by *tensor position* (one entry per
distinct tensor, in model order); a table has one entry per *name*. :class:`Tensors`
maps between the two, and costs nothing when nothing is tied (the usual case).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from multilr._params import ParamTable
from multilr.errors import PlanError

__all__ = ["Tensors", "check_names"]


class Tensors:
    """The distinct tensors of a table: tied names folded into the first.

    Attributes:
        names: Canonical names, in model order (position ``t`` is one tensor).
        rows: The table index of each tensor's canonical entry, or ``None`` when
            nothing is tied (then tensor ``t`` is entry ``t``).
        position: Table index -> tensor position, or ``None`` when nothing is tied.
        aliases: Alias name -> canonical name.
        alias_names: Other names of each tensor, or ``None`` when nothing is tied.
    """

    __slots__ = ("alias_names", "aliases", "names", "position", "rows")

    def __init__(self, table: ParamTable) -> None:
        names = table.names
        self.names: Sequence[str] = names
        self.rows: list[int] | None = None
        self.position: list[int] | None = None
        self.aliases: dict[str, str] = {}
        self.alias_names: list[tuple[str, ...]] | None = None
        if len(set(table.keys)) == len(names) == len(set(names)):
            return  # the usual case: every name its own tensor; checked in C
        check_names(names)
        first: dict[Hashable, int] = {}
        rows: list[int] = []
        position: list[int] = []
        alias_names: list[list[str]] = []
        for i, key in enumerate(table.keys):
            t = first.get(key)
            if t is None:
                t = first[key] = len(rows)
                rows.append(i)
                alias_names.append([])
            else:
                alias_names[t].append(names[i])
                self.aliases[names[i]] = names[rows[t]]
            position.append(t)
        self.names = [names[i] for i in rows]
        self.rows = rows
        self.position = position
        self.alias_names = [tuple(a) for a in alias_names]

    def column(self, values: list[Any]) -> list[Any]:
        """A table column (one value per name) restricted to the canonical names."""
        return values if self.rows is None else [values[i] for i in self.rows]

    def of(self, entries: list[int]) -> list[int]:
        """Table indices -> the positions of their tensors, ascending, each once."""
        if self.position is None:
            return entries
        position = self.position
        return sorted({position[i] for i in entries})


def check_names(names: Sequence[str]) -> None:
    """Refuse a name that appears twice (a table backend's walk gives unique names; this checks it)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise PlanError(f"parameter name {name!r} appears twice in the model's parameter list")
        seen.add(name)
