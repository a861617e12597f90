"""Checkpoints of an optimizer built by multilr, and of its Controller, that refuse a changed spec.

Why not the framework's own ``optimizer.load_state_dict``: torch (and OneFlow, which copies
it) only checks that the number of groups and each group's tensor count match, then pairs
the saved state with the tensors by position. A spec changed so that the counts still
agree (two groups renamed or swapped, a rule that moves a tensor from one group to
another of the same size) loads without a word and trains every tensor on the wrong
rate with another tensor's momentum (MMEngine and fastai users have hit exactly this).
multilr's groups have names, so a checkpoint can say which groups it holds:

* :func:`state_dict` is the optimizer's own state_dict plus a ``"multilr"`` section: a
  format version, each group's name, tensor count, tensor shapes (and tensor names when
  the plan is known), a fingerprint of the spec, and the Controller's state (step,
  multipliers, frozen groups, stages applied);
* :func:`load_state_dict` compares all of it with the optimizer (and a plain
  torch/OneFlow state_dict by its group names) before it writes anything, refuses a
  mismatch naming the groups that differ, and only then loads the optimizer and the
  Controller. If loading fails after all, the Controller, the groups' rates and every
  tensor's ``requires_grad`` and ``.grad`` are put back as they were.

Duck-typed on the optimizer (``param_groups``, ``state_dict``, ``load_state_dict``):
no framework is imported. Save the returned dict right away (``torch.save``,
``oneflow.save``): like the framework's, it refers to the live state tensors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from multilr._freezing import params as _params
from multilr._plantypes import Plan
from multilr.errors import CheckpointError, MultiLRError

__all__ = ["FORMAT", "SECTION", "load_state_dict", "state_dict"]

#: Key of multilr's section in a checkpoint.
SECTION = "multilr"
#: Version of that section's layout; a checkpoint from a newer layout is refused.
FORMAT = 1
_CONTROLLER_KEYS = ("step", "multipliers", "frozen", "stages_done")


class _Layout(NamedTuple):
    """One group as a checkpoint records it: what must agree for the state to fit."""

    name: str | None
    tensors: int
    shapes: list[list[int]] | None
    params: list[str] | None


def state_dict(optimizer: Any, controller: Any = None, *, plan: Any = None) -> dict[str, Any]:
    """The optimizer's state_dict plus multilr's section (groups, spec fingerprint, controller).

    Args:
        optimizer: An optimizer built from ``multilr.build(...)`` groups.
        controller: The :class:`~multilr.Controller` driving it, if any: its state is saved too.
        plan: The plan (or the groups ``build`` returned), to record each group's tensor
            names and the spec's fingerprint; by default the controller's plan.

    Returns:
        A dict the framework's ``save`` writes and :func:`load_state_dict` reads. Its
        ``"state"`` and ``"param_groups"`` are the optimizer's own.

    Example:
        >>> import multilr, torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> spec = {"lr": 0.1, "rules": [{"prefix": "1", "lr_mult": 10, "name": "head"}]}
        >>> groups = multilr.build(model, spec)
        >>> opt = torch.optim.SGD(groups, momentum=0.9)
        >>> ckpt = multilr.state_dict(opt, multilr.Controller(opt, groups))
        >>> [(g["name"], g["tensors"]) for g in ckpt["multilr"]["groups"]]
        [('default', 2), ('head', 2)]
        >>> ckpt["multilr"]["controller"]["step"]
        0
    """
    _refuse_graph_groups(optimizer)
    the_plan = _plan_of(plan, controller)
    layout = _live_layout(optimizer, the_plan)
    out = dict(optimizer.state_dict())
    out[SECTION] = {
        "format": FORMAT,
        "groups": [g._asdict() for g in layout],
        "spec": _fingerprint(the_plan),
        "controller": controller.state_dict() if controller is not None else None,
    }
    return out


def load_state_dict(
    optimizer: Any, checkpoint: Mapping[str, Any], controller: Any = None, *, plan: Any = None
) -> None:
    """Load a checkpoint into an optimizer rebuilt from the same spec (and its Controller).

    Everything is checked before anything is written: the groups' names, order, tensor
    counts, shapes (and tensor names when both sides know them), and the Controller's
    state. A plain ``optimizer.state_dict()`` is accepted too, checked by its group names
    and sizes, when no Controller is involved.

    Args:
        optimizer: The new optimizer, built from ``multilr.build(model, same_spec)``.
        checkpoint: What :func:`state_dict` returned (after a save/load round trip).
        controller: The new :class:`~multilr.Controller` on ``optimizer``; required when
            the checkpoint holds a Controller's state, refused when it does not.
        plan: As in :func:`state_dict`; by default the controller's plan.

    Raises:
        CheckpointError: The checkpoint does not fit: the message names the groups only
            in the checkpoint, only in the optimizer, in another order, or with other
            tensors; or the Controller's state is missing, unexpected or invalid.
            Nothing has changed.

    Example:
        >>> import multilr, torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> spec = {"lr": 0.1, "rules": [{"prefix": "1", "lr_mult": 10, "name": "head"}]}
        >>> opt = torch.optim.SGD(multilr.build(model, spec))
        >>> ckpt = multilr.state_dict(opt)
        >>> multilr.load_state_dict(opt, ckpt)
        >>> renamed = {**spec, "rules": [{"prefix": "1", "lr_mult": 10, "name": "top"}]}
        >>> other = torch.optim.SGD(multilr.build(model, renamed))
        >>> multilr.load_state_dict(other, ckpt)
        Traceback (most recent call last):
        ...
        multilr.errors.CheckpointError: the checkpoint's param groups do not match this optimizer's ...
    """
    _refuse_graph_groups(optimizer)
    the_plan = _plan_of(plan, controller)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("param_groups"), list):
        keys = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else None
        raise CheckpointError(
            "not an optimizer checkpoint: expected a mapping with 'state' and 'param_groups', got "
            f"{type(checkpoint).__name__}" + (f" with keys {keys}" if keys is not None else "")
        )
    section = checkpoint.get(SECTION)
    saved = _saved_layout(checkpoint, section)
    other_kind = _other_kind(checkpoint["param_groups"], list(optimizer.param_groups))
    if other_kind:
        raise CheckpointError(
            f"the checkpoint was saved from another kind of optimizer: {other_kind}; the framework's "
            "own load gives each group the saved hyperparameters and each tensor the saved state, and "
            "fails on them (at the load or the next step) or trains wrong. Load it into the kind of "
            "optimizer it was saved from"
        )
    live = _live_layout(optimizer, the_plan)
    problems = _differences(saved, live)
    if problems:
        hint = _spec_hint(section, the_plan)
        raise CheckpointError(
            f"the checkpoint's param groups do not match this optimizer's ({hint}); "
            "loading would pair saved state with the wrong tensors:\n  "
            + "\n  ".join(problems)
            + "\nrebuild the optimizer from the spec the checkpoint was saved with"
        )
    saved_ctl = section.get("controller") if isinstance(section, Mapping) else None
    _check_controller(saved_ctl, controller, optimizer, [g.name for g in live])
    _load(optimizer, {k: v for k, v in checkpoint.items() if k != SECTION}, controller, saved_ctl)


# -- layouts ---------------------------------------------------------------------------


def _refuse_graph_groups(optimizer: Any) -> None:
    """Refuse an nn.Graph optimizer: its state lives in the graph, not in the optimizer.

    OneFlow's graph keeps momentum, Adam moments and step counts as graph variables
    (``graph.state_dict()``: ``"<param>-momentum"``); the optimizer's own state stays
    empty, so a checkpoint of it would save nothing and resume from nothing.
    """
    for i, group in enumerate(getattr(optimizer, "param_groups", None) or ()):
        if "lr_scale" in group:
            name = group["name"] if "name" in group else "unnamed"  # noqa: SIM401 - OneFlow's ParamGroup
            raise CheckpointError(
                f"param_groups[{i}] ({name}) carries lr_scale: an nn.Graph optimizer "
                "(backend='oneflow-graph') keeps its state (momentum, Adam moments, steps) in the graph, "
                "and its own state is empty; save and load graph.state_dict() instead (docs/checkpoints.md)"
            )


def _plan_of(plan: Any, controller: Any) -> Plan | None:
    if plan is None and controller is not None:
        plan = getattr(controller, "plan", None)
    if plan is None or isinstance(plan, Plan):
        return plan
    inner = getattr(plan, "plan", None)
    if not isinstance(inner, Plan):
        raise CheckpointError("plan must be a Plan or the groups multilr.build returned")
    return inner


def _live_layout(optimizer: Any, plan: Plan | None) -> list[_Layout]:
    groups = list(optimizer.param_groups)
    names: list[str | None] = [g["name"] if "name" in g else None for g in groups]  # noqa: SIM401
    tensors = [_params(g) for g in groups]
    plan_params: list[list[str] | None] = [None] * len(groups)
    if plan is not None and [g.name for g in plan.groups] == names:
        plan_params = [list(g.params) for g in plan.groups]
    return [
        _Layout(n, len(ts), [[int(d) for d in t.shape] for t in ts], ps)
        for n, ts, ps in zip(names, tensors, plan_params, strict=True)
    ]


def _saved_layout(checkpoint: Mapping[str, Any], section: Any) -> list[_Layout]:
    """The groups a checkpoint holds: from multilr's section, else from the plain param_groups."""
    pgs = checkpoint["param_groups"]
    plain = [_Layout(_saved_name(g), len(g.get("params", ())), None, None) for g in pgs]
    if section is None:
        return plain
    if not isinstance(section, Mapping) or not isinstance(section.get("groups"), list):
        raise CheckpointError(f"the checkpoint's {SECTION!r} section is malformed: {section!r:.200}")
    if section.get("format") != FORMAT:
        raise CheckpointError(
            f"the checkpoint's {SECTION!r} section has format {section.get('format')!r}; this multilr "
            f"reads format {FORMAT} (saved by a newer multilr?)"
        )
    try:
        recorded = [
            _Layout(g["name"], int(g["tensors"]), g.get("shapes"), g.get("params")) for g in section["groups"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"the checkpoint's {SECTION!r} section has a malformed group entry ({exc!r})"
        ) from None
    ours, theirs = [(g.name, g.tensors) for g in recorded], [(g.name, g.tensors) for g in plain]
    if ours != theirs:
        raise CheckpointError(
            f"the checkpoint is inconsistent: its {SECTION!r} section records groups {ours}, "
            f"its param_groups hold {theirs}"
        )
    return recorded


#: Names LR schedulers add to the groups they drive (torch's ``initial_lr``; ``OneCycleLR``'s
#: rate and momentum bounds): they tell which scheduler ran, not which optimizer.
_SCHEDULER_NAMES = frozenset({"initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"})


def _option_names(group: Any) -> set[str]:
    """A param group's hyperparameter names: torch keeps them in the group, OneFlow in ``_options``."""
    if isinstance(group, Mapping):
        options = group.get("_options")
        keys: Any = options if isinstance(options, Mapping) else group
    else:  # OneFlow's live ParamGroup
        keys = getattr(group, "options", None) or {}
    return {str(k) for k in keys} - {"params"} - _SCHEDULER_NAMES


def _other_kind(saved: list[Any], live: list[Any]) -> str:
    """How the saved groups' hyperparameters show another optimizer; empty when they do not.

    Each side must hold names the other lacks (SGD's ``momentum``, AdamW's ``betas``): a
    checkpoint of another torch version holds a few names more, or fewer (``fused`` came
    later), never both. The names schedulers add (``initial_lr``, ``OneCycleLR``'s
    ``max_lr``) are left out: a scheduler made after the load is no other optimizer.

    Example:
        >>> sgd = {"params": [0], "lr": 0.1, "momentum": 0.9}
        >>> adamw = {"params": [0], "lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8}
        >>> print(_other_kind([adamw], [sgd]))
        its param groups carry ['betas', 'eps'], which this optimizer's lack, and lack ['momentum']
        >>> _other_kind([{**sgd, "initial_lr": 0.1, "max_lr": 1.0}], [{**sgd, "fused": None}])
        ''
    """
    saved_names, live_names = set().union(*map(_option_names, saved)), set().union(*map(_option_names, live))
    extra, missing = sorted(saved_names - live_names), sorted(live_names - saved_names)
    if not extra or not missing:
        return ""
    return f"its param groups carry {extra}, which this optimizer's lack, and lack {missing}"


def _saved_name(group: Any) -> str | None:
    """A saved group's name: torch keeps it in the group, OneFlow under ``_options``."""
    if not isinstance(group, Mapping):
        raise CheckpointError(f"a saved param group is not a mapping: {group!r:.200}")
    if "name" in group:
        return group["name"]  # type: ignore[no-any-return]
    options = group.get("_options")
    return options.get("name") if isinstance(options, Mapping) else None


def _differences(saved: list[_Layout], live: list[_Layout]) -> list[str]:
    """What differs between two group lists, by group name; empty when they match."""
    s_names = [_label(g, i) for i, g in enumerate(saved)]
    l_names = [_label(g, i) for i, g in enumerate(live)]
    out = []
    only_saved = [n for n in s_names if n not in l_names]
    only_live = [n for n in l_names if n not in s_names]
    if len(saved) == len(live):
        renamed = [
            (a, b) for a, b in zip(s_names, l_names, strict=True) if a in only_saved and b in only_live
        ]
        if renamed:
            out.append("renamed (same position): " + ", ".join(f"{a!r} -> {b!r}" for a, b in renamed))
            only_saved = [n for n in only_saved if n not in {a for a, _ in renamed}]
            only_live = [n for n in only_live if n not in {b for _, b in renamed}]
    if only_saved:
        out.append(f"only in the checkpoint: {only_saved}")
    if only_live:
        out.append(f"only in the optimizer: {only_live}")
    common_saved = [n for n in s_names if n in l_names]
    common_live = [n for n in l_names if n in s_names]
    if common_saved != common_live:
        moved = [a for a, b in zip(common_saved, common_live, strict=True) if a != b]
        out.append(
            f"in another order: {moved} (checkpoint order {common_saved}, optimizer order {common_live})"
        )
    by_name = dict(zip(l_names, live, strict=True))
    for name, s in zip(s_names, saved, strict=True):
        if name in by_name:
            detail = _group_difference(s, by_name[name])
            if detail:
                out.append(f"group {name!r}: {detail}")
    return out


def _label(group: _Layout, index: int) -> str:
    return group.name if group.name is not None else f"#{index} (unnamed)"


def _group_difference(saved: _Layout, live: _Layout) -> str:
    if saved.tensors != live.tensors:
        return f"{saved.tensors} tensors in the checkpoint, {live.tensors} in the optimizer"
    if saved.params is not None and live.params is not None and list(saved.params) != live.params:
        gone = [p for p in saved.params if p not in live.params]
        new = [p for p in live.params if p not in saved.params]
        if gone or new:
            return f"other tensors (only in the checkpoint: {gone}, only in the optimizer: {new})"
        return f"the same tensors in another order ({list(saved.params)} vs {live.params})"
    if saved.shapes is not None and live.shapes is not None:
        for i, (a, b) in enumerate(zip(saved.shapes, live.shapes, strict=True)):
            if list(a) != list(b):
                return f"tensor {i} has shape {list(a)} in the checkpoint, {list(b)} in the optimizer"
    return ""


def _fingerprint(plan: Plan | None) -> str | None:
    """A short hash of the spec's mapping form; None without a plan or for a Python-only spec."""
    if plan is None:
        return None
    try:
        text = json.dumps(plan.spec.to_dict(), sort_keys=True)
    except (MultiLRError, TypeError):  # a Predicate or Function has no mapping form
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _spec_hint(section: Any, plan: Plan | None) -> str:
    saved = section.get("spec") if isinstance(section, Mapping) else None
    here = _fingerprint(plan)
    if saved and here and saved != here:
        return f"the spec changed: fingerprint {saved} in the checkpoint, {here} here"
    if saved and saved == here:
        return "the same spec, but groups renamed, reordered, added or removed by hand"
    return "was the spec changed?"


# -- the controller --------------------------------------------------------------------


def _check_controller(saved: Any, controller: Any, optimizer: Any, names: list[str | None]) -> None:
    """Refuse a missing, unexpected or malformed Controller state before anything is written."""
    if controller is None:
        if saved is not None:
            raise CheckpointError(
                f"the checkpoint holds a Controller's state (step {saved.get('step', '?')}, frozen "
                f"{saved.get('frozen', '?')}); pass the new Controller, or its stages and frozen groups "
                "would silently restart"
            )
        return
    if saved is None:
        raise CheckpointError(
            "a Controller was given but the checkpoint holds no Controller state; save it with "
            "multilr.state_dict(optimizer, controller)"
        )
    if getattr(controller, "optimizer", None) is not optimizer:
        raise CheckpointError("the Controller drives another optimizer; pass the one it was built on")
    if not isinstance(saved, Mapping) or any(k not in saved for k in _CONTROLLER_KEYS):
        missing = [k for k in _CONTROLLER_KEYS if not isinstance(saved, Mapping) or k not in saved]
        raise CheckpointError(f"the checkpoint's Controller state lacks {missing}")
    mult, frozen = saved["multipliers"], saved["frozen"]
    if not isinstance(mult, Mapping) or not isinstance(frozen, (list, tuple)):
        raise CheckpointError(
            "the checkpoint's Controller state is malformed: "
            f"multipliers {mult!r:.100}, frozen {frozen!r:.100}"
        )
    if set(mult) != set(names):
        raise CheckpointError(
            f"the checkpoint's Controller state has multipliers for {sorted(map(str, mult))}, the "
            f"optimizer's groups are {names}"
        )


def _load(optimizer: Any, opt_state: dict[str, Any], controller: Any, saved_ctl: Any) -> None:
    """Write the checked state; on a failure put back everything the Controller could have touched."""
    groups = list(optimizer.param_groups)
    tensors = [t for g in groups for t in _params(g)]
    flags = [(t, bool(t.requires_grad), t.grad) for t in tensors]
    rates = [g["lr"] for g in groups]
    before = controller.state_dict() if controller is not None else None
    try:
        if controller is not None:
            controller.load_state_dict(saved_ctl)  # checks and computes every rate before it writes
        optimizer.load_state_dict(opt_state)  # the framework checks before it writes
        if controller is not None:
            controller.load_state_dict(saved_ctl)  # the rates by the Controller's formula, as uninterrupted
    except Exception as exc:
        if controller is not None:
            controller.load_state_dict(before)
        for t, flag, grad in flags:
            if bool(t.requires_grad) != flag:
                t.requires_grad_(flag)
            t.grad = grad
        for g, rate in zip(optimizer.param_groups, rates, strict=True):
            g["lr"] = rate
        # the Controller raises multilr errors; anything else came from the framework
        what = "Controller state" if isinstance(exc, MultiLRError) else "optimizer state"
        raise CheckpointError(f"the checkpoint's {what} was refused, nothing changed: {exc}") from exc
