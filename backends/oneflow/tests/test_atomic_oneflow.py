"""Atomic failures on OneFlow, eager and nn.Graph builds: a refusal changes nothing.

The torch side (``backends/torch/tests/test_atomic.py``) goes through every raise site
of the core; these are the paths that differ on OneFlow: its backend's own refusals
(``nn.Graph`` cannot run stages, a rule's own schedule or float64), the Controller's
(``lr_scale`` groups, no step pre-hook for ``freeze_by="grad"``), the checkpoint loader
on OneFlow's state_dict layout, and a few core paths through OneFlow tensors. No graph
is compiled, so they run in this process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multilr_oneflow
import numpy as np
import pytest

import multilr
from multilr import (
    BackendError,
    CheckpointError,
    ConflictError,
    Controller,
    CoverageError,
    MultiLRError,
    SpecError,
    UnsupportedFeatureError,
)
from multilr.schedules import Function
from multilr.testing import assert_bit_identical

flow = multilr_oneflow.import_oneflow()

SPEC = {
    "lr": 0.1,
    "weight_decay": 0.01,
    "no_decay": ["bias"],
    "rules": [
        {"prefix": "0", "frozen": True, "name": "stem"},
        {"prefix": "1", "frozen": True, "name": "low"},
        {"prefix": "3", "lr_mult": 10, "name": "head"},
    ],
    "stages": [{"at": 2, "unfreeze": ["low"], "lr_mult": 0.5}],
}
NAN_FROM_2 = Function(lambda t: math.nan if t >= 2 else 1.0)


def _model() -> Any:
    flow.manual_seed(0)
    return flow.nn.Sequential(
        flow.nn.Linear(3, 4), flow.nn.Linear(4, 4), flow.nn.Linear(4, 4), flow.nn.Linear(4, 2)
    )


def _train(model: Any, opt: Any, ctl: Controller, steps: int) -> None:
    x = flow.tensor(np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3))
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        ctl.step()
    model(x).square().mean().backward()  # leftover gradients


@dataclass
class Env:
    model: Any
    groups: multilr.ParamGroups
    opt: Any
    ctl: Controller
    tmp: Path

    def checkpoint(self, steps: int = 3) -> dict[str, Any]:
        """A good checkpoint of the same spec from another run, after a real save and load."""
        other = _model()
        groups = multilr.build(other, SPEC, backend="oneflow")
        opt = flow.optim.SGD(groups, momentum=0.9)
        ctl = Controller(opt, groups, schedule=self.ctl.schedule)
        _train(other, opt, ctl, steps)
        flow.save(multilr.state_dict(opt, ctl), str(self.tmp / "good"))
        return flow.load(str(self.tmp / "good"))  # type: ignore[no-any-return]


def make_env(tmp: Path, **ctl_kwargs: Any) -> Env:
    model = _model()
    groups = multilr.build(model, SPEC, backend="oneflow")
    opt = flow.optim.SGD(groups, momentum=0.9)
    ctl = Controller(opt, groups, **ctl_kwargs)
    _train(model, opt, ctl, 1)
    return Env(model, groups, opt, ctl, tmp)


def snapshot(env: Env) -> dict[str, Any]:
    def arr(t: Any) -> Any:
        return None if t is None else (str(t.dtype), t.numpy().copy())

    sd = env.opt.state_dict()
    return {
        "params": {n: (arr(p), p.requires_grad, arr(p.grad)) for n, p in env.model.named_parameters()},
        "state": {
            k: v if not isinstance(v, dict) else {kk: arr(vv) for kk, vv in v.items()}
            for k, v in sd["state"].items()
        },
        "groups": [dict(g["_options"]) for g in sd["param_groups"]],
        "controller": env.ctl.state_dict(),
        "rates": env.ctl.rates(),
    }



def _graph(spec: Any, model: Callable[[Env], Any] = lambda env: env.model) -> Callable[[Env], Any]:
    return lambda env: multilr.build(model(env), spec, backend="oneflow-graph")


def _renamed(env: Env) -> Any:
    ckpt = env.checkpoint()
    for g in (ckpt["param_groups"][-1]["_options"], ckpt["multilr"]["groups"][-1]):
        g["name"] = "classifier/no_decay"
    return multilr.load_state_dict(env.opt, ckpt, env.ctl)


def _plain_renamed(env: Env) -> Any:
    ckpt = env.checkpoint()
    del ckpt["multilr"]
    ckpt["param_groups"][-1]["_options"]["name"] = "classifier/no_decay"
    return multilr.load_state_dict(env.opt, ckpt)


def _at_step(ckpt: dict[str, Any], step: int) -> dict[str, Any]:
    ckpt["multilr"]["controller"]["step"] = step
    return ckpt


CASES: dict[str, tuple[Callable[[Env], Any], type[Exception], str]] = {
    "build-conflict": (
        lambda env: multilr.build(
            env.model, {**SPEC, "rules": [*SPEC["rules"], {"prefix": "3.weight", "lr_mult": 2}]}
        ),
        ConflictError,
        "3.weight",
    ),
    "build-rule-matches-nothing": (
        lambda env: multilr.build(
            env.model, {**SPEC, "rules": [*SPEC["rules"], {"prefix": "9", "lr_mult": 2}]}
        ),
        CoverageError,
        "'prefix:9' matches no parameter",
    ),
    "build-not-a-module": (
        lambda env: multilr.build([1], SPEC, backend="oneflow"),
        BackendError,
        "oneflow.nn.Module",
    ),
    "graph-stage": (_graph(SPEC), UnsupportedFeatureError, "spec stage 'stage0'"),
    "graph-own-schedule": (
        _graph(
            {
                "lr": 0.1,
                "rules": [{"prefix": "3", "name": "head", "schedule": {"kind": "step", "step_size": 1}}],
            }
        ),
        UnsupportedFeatureError,
        "group 'head' has its own schedule",
    ),
    "graph-float64": (
        _graph({"lr": 0.1}, lambda env: _model().to(flow.float64)),
        UnsupportedFeatureError,
        "is float64",
    ),
    "ctl-graph-groups": (
        lambda env: Controller(
            flow.optim.SGD(multilr.build(_model(), {"lr": 0.1}, backend="oneflow-graph")), env.groups
        ),
        UnsupportedFeatureError,
        "lr_scale",
    ),
    "ctl-freeze-by-grad": (
        lambda env: Controller(env.opt, env.groups, freeze_by="grad"),
        UnsupportedFeatureError,
        "register_step_pre_hook",
    ),
    "ctl-unknown-group": (lambda env: env.ctl.freeze("head", "nope"), SpecError, "'nope'"),
    "ctl-bad-factor-at-the-stage": (
        lambda env: (env.ctl.set_scale("head", 1.0), env.ctl.step()),
        SpecError,
        "at step 2",
    ),
    "ckpt-renamed-group": (_renamed, CheckpointError, "'classifier/no_decay' -> 'head/no_decay'"),
    "ckpt-plain-renamed-group": (_plain_renamed, CheckpointError, "'classifier/no_decay' -> 'head/no_decay'"),
    "ckpt-controller-missing": (
        lambda env: multilr.load_state_dict(env.opt, env.checkpoint(), None),
        CheckpointError,
        "holds a Controller's state \\(step 3",
    ),
    "ckpt-controller-refuses": (
        # the saved step 3 is past where the new Controller's schedule gives nan
        lambda env: multilr.load_state_dict(env.opt, _at_step(env.checkpoint(steps=1), 3), env.ctl),
        CheckpointError,
        "Controller state was refused, nothing changed: .*at step 3",
    ),
}


@pytest.mark.parametrize("case_id", list(CASES))
def test_a_failure_changes_nothing(case_id: str, tmp_path: Path) -> None:
    trigger, error, names = CASES[case_id]
    env = make_env(tmp_path, schedule=NAN_FROM_2 if "refuses" in case_id or "factor" in case_id else None)
    before = snapshot(env)
    with pytest.raises(error, match=names) as err:
        trigger(env)
    assert isinstance(err.value, MultiLRError), f"got {type(err.value).__name__}, should be a multilr error"
    assert_bit_identical(snapshot(env), before, "state")
