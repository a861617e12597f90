"""The provenance table: which rule gave each parameter its rate, as text.

Plain text always works; with ``rich`` installed and a terminal on stdout the same
rows are drawn as a rich table. Both come back as a string so callers decide where
it goes.
"""

from __future__ import annotations

import io
import math
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multilr._plantypes import Group, Plan

__all__ = ["render_table"]

_PARAM_COLUMNS = ("parameter", "shape", "group", "lr", "wd", "frozen", "rate from", "wd from")
_GROUP_COLUMNS = ("#", "group", "tensors", "elements", "lr", "scale", "wd", "frozen")


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _param_rows(plan: Plan, max_rows: int | None) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for p in plan.params:
        name = p.name + (f" (= {', '.join(p.aliases)})" if p.aliases else "")
        frozen = "yes" if p.frozen else ("off" if not p.requires_grad else "")
        lr = 0.0 if p.frozen else p.lr
        shape = "x".join(map(str, p.shape)) or "()"
        wd = _fmt(p.weight_decay)
        # a frozen row's lr is 0; say who froze it and what it would train at
        why = f"frozen by {p.frozen_source}; unfrozen: {p.rate_source}" if p.frozen else p.rate_source
        rows.append((name, shape, p.group, _fmt(lr), wd, frozen, why, p.wd_source))
    if max_rows is not None and len(rows) > max_rows:
        head = max_rows // 2
        hidden = len(rows) - max_rows
        rows = [*rows[:head], (f"... {hidden} more ...", *("",) * 7), *rows[len(rows) - (max_rows - head) :]]
    return rows


def _group_rows(plan: Plan) -> list[tuple[str, ...]]:
    numel = {p.name: math.prod(p.shape) for p in plan.params}
    return [
        (
            str(i),
            g.name,
            str(len(g.params)),
            str(sum(numel[n] for n in g.params)),
            _fmt(plan.lr_of(g)),
            _fmt(g.scale),
            _fmt(g.weight_decay),
            _frozen_cell(plan, g),
        )
        for i, g in enumerate(plan.groups)
    ]


def _frozen_cell(plan: Plan, group: Group) -> str:
    """``yes``, ``until step N`` for a group a stage unfreezes, or empty."""
    if group.stage is not None:
        stage = next(s for s in plan.spec.stages if s.name == group.stage)
        return f"until {stage.when}"
    return "yes" if group.frozen else ""


def _plain(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


def _rich(params: list[tuple[str, ...]], groups: list[tuple[str, ...]], title: str) -> str:
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=shutil.get_terminal_size((160, 40)).columns)
    sections = [(title, _PARAM_COLUMNS, params), ("groups", _GROUP_COLUMNS, groups)]
    if not params:
        sections = [(title, _GROUP_COLUMNS, groups)]
    for name, columns, rows in sections:
        table = Table(title=name, title_justify="left")
        for col in columns:
            table.add_column(col, no_wrap=col in ("parameter", "group"))
        for row in rows:
            table.add_row(*row)
        console.print(table)
    return buf.getvalue().rstrip("\n")


def render_table(
    plan: Plan, *, rich: bool | None = None, max_rows: int | None = None, params: bool = True
) -> str:
    """Render the parameter table and the group summary.

    Args:
        plan: The plan.
        rich: Force rich (``True``) or plain text (``False``); ``None`` picks rich
            only when stdout is a terminal and rich is installed.
        max_rows: Cap on parameter rows.
        params: Include the parameter rows (else the group summary only).
    """
    rows = _param_rows(plan, max_rows) if params else []
    groups = _group_rows(plan)
    n_alias = len(plan.aliases)
    title = (
        f"multilr plan: base lr {_fmt(plan.base_lr)}, {len(plan.params)} tensors"
        + (f" (+{n_alias} tied alias{'es' if n_alias != 1 else ''})" if n_alias else "")
        + f", {len(plan.groups)} groups"
    )
    if rich is None:
        rich = sys.stdout.isatty() and _has_rich()
    # an optional rule that matched nothing would otherwise leave no trace
    note = ""
    if plan.unused_rules:
        note = f"\noptional rules that matched nothing: {', '.join(plan.unused_rules)}"
    if rich:
        return _rich(rows, groups, title) + note
    if not params:
        return _plain(title, _GROUP_COLUMNS, groups) + note
    return _plain(title, _PARAM_COLUMNS, rows) + "\n\n" + _plain("groups", _GROUP_COLUMNS, groups) + note


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
