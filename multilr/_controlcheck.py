"""What the Controller checks before it owns anything: the optimizer, and a saved state.

A Controller changes rates and tensors only through a transition that cannot fail
half-way; what it is given from outside (an optimizer's groups when it is created, a
saved state when one is loaded) is checked here first, and a mismatch is refused with
a message naming both sides. Apart from :mod:`multilr._control` because these are pure
functions of the given values and the plan: nothing here writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from multilr._check import number, shown
from multilr._freezing import params as _params
from multilr._plantypes import Plan
from multilr.errors import MultiLRError, SpecError, UnsupportedFeatureError

__all__ = ["check_optimizer", "check_rates_unchanged", "read_state"]


def check_rates_unchanged(optimizer: Any, groups: Sequence[str], written: Sequence[float], step: int) -> None:
    """Refuse to go on when a group's ``lr`` is not what the Controller last wrote.

    Something else drives the rates too: a framework scheduler on the same optimizer
    (its next step would undo the Controller's, and a group the Controller unfreezes
    would stay at the scheduler's 0), a hand write, or ``optimizer.load_state_dict``
    without the Controller's state. Either driver would silently undo the other.

    Raises:
        MultiLRError: Names the first group whose rate changed, both rates, and the fix.
    """
    for name, pg, mine in zip(groups, optimizer.param_groups, written, strict=True):
        now = pg["lr"]
        if now != mine:
            raise MultiLRError(
                f"group {name!r} has lr {now!r}, but the Controller set {mine!r} for step {step}: something "
                "else changed it (a framework LR scheduler on the same optimizer, a write to "
                "param_groups[i]['lr'], or optimizer.load_state_dict without the Controller's state). The "
                "Controller drives every group's rate: give it the schedule (Controller(opt, groups, "
                "schedule=...), or the spec's schedule; MultiLRScheduler where a trainer wants a torch "
                "scheduler), change rates with set_scale, and restore checkpoints with "
                "multilr.load_state_dict(opt, ckpt, controller)"
            )


def check_optimizer(optimizer: Any, plan: Plan) -> None:
    """Refuse an optimizer whose groups are not exactly ``plan``'s, in the plan's order.

    Raises:
        UnsupportedFeatureError: The groups carry ``lr_scale`` (convention ``lr_scale``:
            ``oneflow-graph``, or a third-party backend).
        MultiLRError: The optimizer's groups do not match the plan's.
    """
    pgs = optimizer.param_groups
    if any("lr_scale" in g for g in pgs):
        raise UnsupportedFeatureError(
            "these groups carry lr_scale (convention 'lr_scale', as backend='oneflow-graph' emits): the "
            "Controller drives each group's own lr (convention 'lr'). With nn.Graph the rates are compiled "
            "at its first call, so they cannot be changed at run time; schedule them with "
            "multilr_oneflow.graph_scheduler(optimizer, schedule), or train in eager mode "
            "(backend='oneflow')"
        )
    if len(pgs) != len(plan.groups):
        raise MultiLRError(
            f"the optimizer has {len(pgs)} param groups, the plan {len(plan.groups)}: build the "
            "optimizer from exactly the groups multilr.build returned (no add_param_group)"
        )
    for i, (pg, g) in enumerate(zip(pgs, plan.groups, strict=True)):
        name = pg["name"] if "name" in pg else g.name  # noqa: SIM401 - OneFlow's ParamGroup has no .get
        if name != g.name or len(_params(pg)) != len(g.params):
            raise MultiLRError(
                f"optimizer group {i} ({name!r}, {len(_params(pg))} tensors) is not plan "
                f"group {g.name!r} ({len(g.params)} tensors): keep multilr's groups in their order"
            )


class SavedState(NamedTuple):
    """A Controller state, checked and in the Controller's group order."""

    step: int
    multipliers: list[float]
    frozen: list[bool]
    #: the stages applied when it was saved; ``None``: a state from before the key existed
    stages_done: set[str] | None
    #: positions of the groups an unfreeze switched on (none in states from before the key)
    thawed: list[int]


def read_state(state: Mapping[str, Any], groups: Sequence[str], stages: Mapping[str, Any]) -> SavedState:
    """Step, multipliers and frozen flags (in ``groups`` order), the stages done and the thawed groups.

    Args:
        state: What ``Controller.state_dict()`` returned.
        groups: The Controller's group names.
        stages: The spec's stages by name (``Program.stages``).

    Raises:
        SpecError: Missing keys, unknown group or stage names, or values of the wrong type.
    """
    # a KeyError or a TypeError from a half-written state would not say what is wrong
    keys = state if isinstance(state, Mapping) else {}
    missing = [k for k in ("step", "multipliers", "frozen") if k not in keys]
    if missing:
        raise SpecError(f"controller state lacks {missing}; pass what Controller.state_dict() returned")
    mult = state["multipliers"]
    if not isinstance(mult, Mapping):
        raise SpecError(f"controller state multipliers must map group names to numbers, got {shown(mult)}")
    frozen_names = _names(state["frozen"], "frozen")
    thawed = _names(state.get("thawed", ()), "thawed")
    unknown = sorted((set(mult) | set(frozen_names) | set(thawed)) - set(groups), key=str)
    if unknown:
        raise SpecError(f"controller state names unknown groups {unknown}; groups: {groups}")
    values = [number(mult.get(n, 1.0), f"multiplier of group {n!r}") for n in groups]
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int):  # int("3") would hide a corrupted state
        raise SpecError(f"controller state step must be an integer, got {step!r}")
    if step < 0:
        raise SpecError(f"controller state step must be >= 0, got {step}")
    done = set(_names(state["stages_done"], "stages_done")) if "stages_done" in state else None
    if done is not None and done - set(stages):
        raise SpecError(f"controller state names unknown stages {sorted(done - set(stages), key=str)}")
    frozen = [n in frozen_names for n in groups]
    return SavedState(step, values, frozen, done, [i for i, n in enumerate(groups) if n in thawed])


def _names(value: Any, key: str) -> list[Any]:
    """A list of names from ``value``; a string or a non-list is refused (it is not a list of names)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise SpecError(f"controller state {key} must be a list of names, got {shown(value)}")
    return list(value)
