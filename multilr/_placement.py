"""``layer_decay.place``: tensors put at a depth by name, on top of depth inference.

Inference follows registration order, and some models register a module far from
where it runs: OPT's ``final_layer_norm`` before the layers (inference: the stem),
BART's ``layernorm_embedding`` after them (the head). ``place`` moves the tensors of a
glob pattern to ``"stem"`` (0), ``"head"`` or a depth, and every other tensor keeps
its inferred depth, so one line fixes such a model instead of a whole depth map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Union

from multilr._nomatch import no_match_hint
from multilr._params import ParamTable
from multilr._select import Glob, matching
from multilr.errors import ConflictError, CoverageError

__all__ = ["place_depths"]


def place_depths(
    place: Mapping[str, Union[str, int]],
    table: ParamTable,
    positions: Callable[[list[int]], list[int]],
    names: Sequence[str],
    depths: list[int],
    head: int,
) -> dict[int, str]:
    """Write each placed tensor's depth into ``depths``; return tensor -> its pattern.

    Args:
        place: ``{glob: "stem" | "head" | depth}`` (validated by ``LayerDecay``).
        table: The model's table; a pattern matches a tensor by any of its names.
        positions: Table entries -> tensor positions (tied names folded).
        names: Each tensor's canonical name (for errors).
        depths: Inferred depth per tensor, changed in place only when every pattern
            matched and none conflicts.
        head: The depth ``"head"`` stands for.

    Raises:
        CoverageError: A pattern matches no parameter.
        ConflictError: Two patterns put one tensor at different depths.

    Example:
        >>> from multilr._params import ParamInfo
        >>> infos = [ParamInfo(n, (2,), "f", n.rpartition(".")[0], ("X",), True, n)
        ...          for n in ("norm.w", "layer.0.w", "layer.1.w")]
        >>> depths = [0, 1, 2]
        >>> place_depths({"norm.*": "head"}, ParamTable.from_infos(infos), list,
        ...              [i.name for i in infos], depths, 3)
        {0: 'norm.*'}
        >>> depths
        [3, 1, 2]
    """
    placed: dict[int, tuple[str, int]] = {}
    for pattern, where in place.items():
        depth = 0 if where == "stem" else head if where == "head" else int(where)
        hits = positions(matching(Glob(pattern), table))
        if not hits:
            raise CoverageError(
                f"layer_decay.place[{pattern!r}] matches no parameter; a pattern is a glob on the "
                "full dotted name, as plan.table() lists them" + no_match_hint(Glob(pattern), table)
            )
        for t in hits:
            before = placed.setdefault(t, (pattern, depth))
            if before[1] != depth:
                raise ConflictError(
                    f"parameter {names[t]!r}: layer_decay.place[{before[0]!r}] puts it at depth {before[1]} "
                    f"and layer_decay.place[{pattern!r}] at depth {depth}; narrow a pattern"
                )
    for t, (_, depth) in placed.items():
        depths[t] = depth
    return {t: pattern for t, (pattern, _) in placed.items()}
