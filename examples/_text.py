"""The plain text table the stand-alone examples print their results in.

Example:
    >>> print(table(["layer", "lr"], [["head", "0.01"], ["stem", "0.001"]]))
    layer  lr
    -----  -----
    head   0.01
    stem   0.001
"""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table: the header, a rule, the rows."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
