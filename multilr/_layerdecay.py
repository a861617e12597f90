"""Layer decay: each tensor's depth and its factor ``decay ** (max_depth - depth)``.

One ``LayerDecay`` (:func:`decay_one`) or several towers side by side
(:func:`decay_towers`, each decayed over its own depths). Depths come from
:mod:`multilr._depth` (or the model's ``group_matcher`` hints), moved by ``place``
(:mod:`multilr._placement`); the factors are applied to the rates by the planner
(:mod:`multilr._plan`), which also counts ``within``'s tensors as touched by a rule.
Both record what they decided (max depth, towers, placements) on the plan's
:class:`~multilr._decisions.Decisions`.
"""

from __future__ import annotations

from collections.abc import Sequence

from multilr._decisions import Decisions
from multilr._depth import depths_and_head
from multilr._hints import GROUP_MATCHER
from multilr._nomatch import no_match_hint
from multilr._params import ParamTable
from multilr._placement import place_depths
from multilr._rules import LayerDecay
from multilr._select import Selector, matching
from multilr._tensors import Tensors
from multilr.errors import ConflictError, CoverageError

__all__ = ["decay_one", "decay_towers", "within_positions"]


def decay_one(
    decay: LayerDecay,
    table: ParamTable,
    tensors: Tensors,
    decided: Decisions,
    hinted: list[int] | None = None,
) -> tuple[list[int], range | list[int], list[float]]:
    """Depth of every tensor, the positions layer decay applies to, and each tensor's factor.

    ``hinted``: the model's own depths (its ``group_matcher``), used in place of the
    default inference; an explicit depth mode in the spec wins over them.
    """
    decayed = within_positions(decay.within, "layer_decay", table, tensors)
    names = tensors.names
    if hinted is not None and decay.depth == "blocks":
        depths, head = hinted, max(hinted)
        decided.depth_from = GROUP_MATCHER
    else:
        depths, head = _tower_depths(decay, names, decayed)
    if decay.place is not None:
        depths = list(depths)  # the hinted list is the model's: kept as it came
        decided.placed = place_depths(decay.place, table, tensors.of, names, depths, head)
    top = max(depths)
    decided.decay = decay.decay
    decided.max_depth = top
    if decay.name:  # a named decay labels its groups
        decided.towers = ((decay.name, decay.decay, top),)
        decided.tower = dict.fromkeys(decayed, 0)
    # one pow per distinct depth, the same float the per-tensor pow gives
    factors = {d: decay.decay ** (top - d) for d in set(depths)}
    return depths, decayed, list(map(factors.__getitem__, depths))


def decay_towers(
    decays: tuple[LayerDecay, ...], table: ParamTable, tensors: Tensors, decided: Decisions
) -> tuple[list[int], list[int], list[float], list[int]]:
    """:func:`decay_one` for several towers, each decayed over its own depths.

    Tower ``k`` infers depths as one layer decay with its ``within`` does (only its own
    stacks are blocks) and counts from its own highest depth. A tensor in no tower keeps
    factor 1. The depths ``freeze_to`` and stages count (the structure) align the towers
    at their tops, where the rate factor is 1, and put the tensors of no tower there too
    (CLIP's ``logit_scale`` and projections): ``freeze_to(-1)`` trains exactly the tensors
    at factor 1, ``freeze_to(-2)`` one depth more in every tower, and equal rates (one
    group) are one depth.
    """
    names = tensors.names
    owner: dict[int, int] = {}
    own = [0] * len(names)  # each tower tensor's depth in its tower (read only at those)
    factor = [1.0] * len(names)
    labels = [decay.label(k) for k, decay in enumerate(decays)]
    towers = []
    for k, decay in enumerate(decays):
        where = f"layer_decay[{k}]"
        decayed = within_positions(decay.within, where, table, tensors)
        for t in decayed:
            other = owner.setdefault(t, k)
            if other != k:
                raise ConflictError(
                    f"parameter {names[t]!r} is in two towers: layer_decay[{other}] ({labels[other]}) "
                    f"and {where} ({labels[k]}); narrow a 'within'"
                )
        depths, head = _tower_depths(decay, names, decayed)
        if decay.place is not None:
            placed = place_depths(decay.place, table, tensors.of, names, depths, head)
            decided.placed.update((t, pattern) for t, pattern in placed.items() if owner.get(t) == k)
        top = max(depths)
        towers.append((labels[k], decay.decay, top))
        for t in decayed:
            own[t] = depths[t]
            factor[t] = decay.decay ** (top - depths[t])
    highest = max(top for _, _, top in towers)
    structure = [highest] * len(names)
    for t, k in owner.items():
        structure[t] = own[t] + highest - towers[k][2]
    decided.towers = tuple(towers)
    decided.tower = owner
    decided.max_depth = highest
    return own, sorted(owner), factor, structure


def within_positions(
    within: Selector | None, where: str, table: ParamTable, tensors: Tensors
) -> range | list[int]:
    """The tensor positions ``within`` selects (a layer decay's, a depth map's), else every tensor.

    Raises:
        CoverageError: ``within`` selects nothing, named as ``{where}.within``.
    """
    if within is None:
        return range(len(tensors.names))
    decayed = tensors.of(matching(within, table))
    if not decayed:  # a typo here would silently switch layer decay off
        sample = ", ".join(repr(n) for n in tensors.names[:5])
        raise CoverageError(
            f"{where}.within ({within.describe()}) "
            f"matches no parameter (names look like {sample}, ...); fix the selector (a prefix matches on "
            "dot boundaries: 'layer' does not match 'layer1', use glob 'layer*')"
            + no_match_hint(within, table)
        )
    return decayed


def _tower_depths(
    decay: LayerDecay, names: Sequence[str], decayed: range | list[int]
) -> tuple[list[int], int]:
    """Depths of every tensor and the head's depth, with only ``within``'s stacks as blocks."""
    if decay.within is None:
        return depths_and_head(names, decay.depth)
    # only the stacks inside `within` are blocks: a segmentation head's module lists
    # or a second tower must not push the backbone's depths down
    return depths_and_head(names, decay.depth, stacks_among=[names[t] for t in decayed])
