"""Atomic failures on torch: every error path of build, the Controller and the checkpoint loader.

Each case of :data:`CASES` sets up a model that already trains (groups, an SGD-momentum
optimizer with state, a Controller past its first step, leftover gradients), copies
everything (each parameter's data, ``requires_grad`` and ``grad``, the buffers, the
optimizer's groups and state, the Controller's state and rates), triggers one error,
checks its type and that the message names what is wrong, and checks that nothing of
the copy changed.

:data:`SITES` lists every function of the core (and of the torch backend) that raises,
with the cases that reach it or why none can: :func:`test_every_raise_site_is_listed`
reads the sources, so a new error path fails here until it gets a case or a reason.
"""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from models import TinyNet, tied_lm, tiny_net
from multilr_torch import TorchBackend

import multilr
from multilr import (
    BackendError,
    BackendNotFoundError,
    CheckpointError,
    ConflictError,
    Controller,
    CoverageError,
    ModuleType,
    MultiLRError,
    Ndim,
    PlanError,
    Predicate,
    Rule,
    Spec,
    SpecError,
    UnsupportedFeatureError,
)
from multilr.schedules import Chain, Constant, Function
from multilr.testing import assert_bit_identical

ROOT = Path(__file__).resolve().parents[3]


def Net() -> TinyNet:
    """A stem, two blocks, a final LayerNorm, a head: module types, depths and no_decay classes."""
    return tiny_net(norm=True)


#: The running set-up: a frozen stem, a stage for blocks.0 at step 2, a head at 10x.
SPEC = {
    "lr": 0.1,
    "weight_decay": 0.01,
    "no_decay": ["bias", "norm"],
    "rules": [
        {"prefix": "stem", "frozen": True, "name": "stem"},
        {"prefix": "blocks.0", "frozen": True, "name": "low"},
        {"prefix": "head", "lr_mult": 10, "name": "head"},
    ],
    "stages": [{"at": 2, "unfreeze": ["low"], "lr_mult": 0.5}],
}


@dataclass
class Env:
    """A model in training: what a failed call must leave exactly as it was."""

    model: torch.nn.Module
    groups: multilr.ParamGroups
    opt: torch.optim.Optimizer
    ctl: Controller
    tmp: Path
    spec: Any
    ctl_kwargs: dict[str, Any]

    @property
    def saved(self) -> dict[str, Any]:
        """A good checkpoint of the same spec from another run, three steps in (past the stage)."""
        other = Net()
        groups = multilr.build(other, self.spec)
        opt = torch.optim.SGD(groups, momentum=0.9)
        ctl = Controller(opt, groups, **self.ctl_kwargs)
        _train(other, opt, ctl, 3)
        torch.save(multilr.state_dict(opt, ctl), self.tmp / "good.pt")
        return torch.load(self.tmp / "good.pt")  # type: ignore[no-any-return]


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, ctl: Controller, steps: int) -> None:
    x = torch.linspace(-1, 1, 15).reshape(5, 3)
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        ctl.step()
    model(x).square().mean().backward()  # leftover gradients: a failed call must keep them too


def _step_after_foreign_write(env: Env) -> None:
    """``ctl.step()`` after another driver wrote a rate; the write itself is undone after."""
    i = env.ctl.groups.index("head")
    pg = env.opt.param_groups[i]
    mine = pg["lr"]
    pg["lr"] = 0.123
    try:
        env.ctl.step()  # refused: the Controller's state must not move
    finally:
        pg["lr"] = mine


def make_env(tmp: Path, spec: Any = SPEC, **ctl_kwargs: Any) -> Env:
    model = Net()
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups, momentum=0.9)
    ctl = Controller(opt, groups, **ctl_kwargs)
    _train(model, opt, ctl, 1)
    return Env(model, groups, opt, ctl, tmp, spec, ctl_kwargs)


def snapshot(env: Env) -> dict[str, Any]:
    """Copies of everything a failure must leave alone."""
    return {
        "params": {
            n: (p.detach().clone(), p.requires_grad, None if p.grad is None else p.grad.clone())
            for n, p in env.model.named_parameters()
        },
        "buffers": {n: b.clone() for n, b in env.model.named_buffers()},
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in env.opt.param_groups],
        "group_tensors": [[id(p) for p in g["params"]] for g in env.opt.param_groups],
        "optimizer_state": copy.deepcopy(env.opt.state_dict()["state"]),
        "controller": env.ctl.state_dict(),
        "rates": env.ctl.rates(),
    }


@dataclass(frozen=True)
class Case:
    """One error path: what triggers it, the error, and a regex its message must match."""

    trigger: Callable[[Env], Any]
    error: type[Exception]
    names: str
    env_spec: Any = None  # the set-up's spec, when the case needs another one
    ctl_kwargs: dict[str, Any] = field(default_factory=dict)


def _build(spec: Any, **kw: Any) -> Callable[[Env], Any]:
    return lambda env: multilr.build(env.model, spec, **kw)


def _spec(**changes: Any) -> dict[str, Any]:
    return {**SPEC, **changes}


def _rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return _spec(rules=[*SPEC["rules"], *rules])


def _with_tower(second: Any) -> Callable[[Env], Any]:
    """A build with two towers: the blocks, and ``second`` (the case's bad or clashing one)."""
    return _build(_spec(layer_decay=[{"decay": 0.5, "within": {"prefix": "blocks"}}, second]))


def _predicate_raises(env: Env) -> Any:
    """A rule whose Python predicate fails on 1-D tensors (no ``shape[1]``)."""
    spec = Spec.from_dict(SPEC)
    wide = Rule(Predicate(lambda name, info: info.shape[1] > 0, "wide"), lr_mult=2)
    return multilr.build(env.model, replace(spec, rules=(*spec.rules, wide)))


def _file(name: str, text: str) -> Callable[[Env], Any]:
    def trigger(env: Env) -> Any:
        (env.tmp / name).write_text(text)
        return multilr.build(env.model, env.tmp / name)

    return trigger


class _Plugin(TorchBackend):
    """A third-party backend built on torch's, whose extract is changed by the case."""

    def __init__(self, extract: Callable[[Any], list[Any]], convention: str = "lr") -> None:
        self._extract = extract
        self.convention = convention  # type: ignore[assignment]

    def extract(self, model: Any) -> list[Any]:
        return self._extract(model)


class _Reversed(TorchBackend):
    """A third-party backend whose emit hands the groups back in reverse order."""

    name = "reversed"

    def emit(self, model: Any, plan: multilr.Plan) -> list[dict[str, Any]]:
        return super().emit(model, plan)[::-1]


def _extra_param(model: Any) -> list[Any]:
    infos = TorchBackend().extract(model)
    return [
        *infos,
        multilr.ParamInfo("ghost.weight", (2,), "float32", "ghost", ("Linear",), True, "ghost.weight"),
    ]


def _ckpt(change: Callable[[dict[str, Any]], Any]) -> Callable[[Env], Any]:
    """Load the good checkpoint after ``change`` spoils a copy of it."""

    def trigger(env: Env) -> Any:
        ckpt = env.saved
        change(ckpt)
        return multilr.load_state_dict(env.opt, ckpt, env.ctl)

    return trigger


def _ctl_state(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda ck: ck["multilr"]["controller"].update(changes)


def _refusing_optimizer(env: Env) -> Any:
    def refuse(opt: Any, state: Any) -> None:
        raise RuntimeError("disk says no")

    saved = env.saved
    handle = env.opt.register_load_state_dict_pre_hook(refuse)
    try:
        return multilr.load_state_dict(env.opt, saved, env.ctl)
    finally:
        handle.remove()


NAN_FROM_2 = Function(lambda t: math.nan if t >= 2 else 1.0)
EPOCH_SPEC = _spec(stages=[{"epoch": 1, "unfreeze": ["low"]}])
GRAD_SPEC = _spec(stages=[])  # stem and low frozen for good

CASES: dict[str, Case] = {
    # -- the spec, read before build looks at the model ----------------------------------
    "spec-unknown-key": Case(_build(_spec(rulez=[])), SpecError, "unknown key 'rulez'"),
    "spec-lr-not-a-number": Case(_build(_spec(lr="fast")), SpecError, "lr"),
    "spec-missing-lr": Case(_build({"rules": []}), SpecError, "missing required key 'lr'"),
    "spec-not-a-spec": Case(_build(42), SpecError, "spec must be a Spec, a mapping or a file path, got int"),
    "spec-file-missing": Case(
        _build("/nonexistent/spec.yaml"), SpecError, "cannot read spec file '/nonexistent"
    ),
    "spec-file-extension": Case(_file("spec.txt", "lr: 1"), SpecError, "spec.txt.*unknown extension"),
    "spec-bad-json": Case(_file("spec.json", '{"lr": '), SpecError, "JSON"),
    "spec-json-not-a-mapping": Case(_file("spec.json", "[1]"), SpecError, "mapping"),
    "spec-bad-yaml": Case(_file("spec.yaml", "lr: [1\n"), SpecError, "YAML"),
    "spec-hyper-value": Case(_build(_spec(hyper={"betas": {"a": 1}})), SpecError, "hyper.betas"),
    "spec-hyper-lr": Case(_build(_spec(hyper={"lr": 1.0})), SpecError, "hyper.lr"),
    "spec-hyper-typo": Case(_build(_spec(hyper={"momentun": 0.9})), SpecError, "did you mean 'momentum'"),
    "spec-duplicate-rule": Case(
        _build(_rules({"prefix": "norm", "lr_mult": 2, "name": "head"})),
        SpecError,
        "two rules are named 'head'",
    ),
    "spec-rule-two-rates": Case(
        _build(_rules({"prefix": "norm", "lr": 1, "lr_mult": 2})), SpecError, "rules\\[3\\]"
    ),
    "spec-rule-name-type": Case(
        _build(_rules({"prefix": "norm", "lr_mult": 2, "name": 3})), SpecError, "name"
    ),
    "spec-rule-sets-nothing": Case(_build(_rules({"prefix": "norm"})), SpecError, "sets nothing"),
    "spec-rule-priority": Case(
        _build(_rules({"prefix": "norm", "lr_mult": 2, "priority": 1.5})), SpecError, "priority"
    ),
    "spec-rule-no-selector": Case(_build(_rules({"lr_mult": 2})), SpecError, "exactly one selector key"),
    "plan-predicate-raises": Case(_predicate_raises, PlanError, r"'predicate:wide' raised IndexError on parameter"),
    "spec-rule-empty-prefix": Case(_build(_rules({"prefix": "", "lr_mult": 2})), SpecError, "prefix"),
    "spec-rule-bad-regex": Case(
        _build(_rules({"regex": "(", "lr_mult": 2})), SpecError, "invalid regex pattern '\\('"
    ),
    "spec-rule-module-type": Case(
        lambda env: multilr.build(env.model, Spec(lr=0.1, rules=[Rule(ModuleType(()), lr_mult=2)])),
        SpecError,
        "module_type",
    ),
    "spec-rule-ndim": Case(
        lambda env: multilr.build(env.model, Spec(lr=0.1, rules=[Rule(Ndim(-1), lr_mult=2)])),
        SpecError,
        "ndim",
    ),
    "spec-layer-decay-range": Case(_build(_spec(layer_decay={"decay": 1.5})), SpecError, "layer_decay"),
    "spec-layer-decay-missing": Case(
        _build(_spec(layer_decay={})), SpecError, "missing required key 'decay'"
    ),
    "spec-layer-decay-depth": Case(
        _build(_spec(layer_decay={"decay": 0.5, "depth": "deep"})), SpecError, "layer_decay.depth"
    ),
    "spec-layer-decay-place": Case(
        _build(_spec(layer_decay={"decay": 0.5, "place": {"norm.*": "top"}})),
        SpecError,
        r"layer_decay\.place\['norm\.\*'\] must be 'stem', 'head'",
    ),
    "spec-layer-decay-place-depth": Case(
        _build(_spec(layer_decay={"decay": 0.5, "place": {"norm.*": -1}})),
        SpecError,
        r"layer_decay\.place\['norm\.\*'\] must be 'stem', 'head' or an integer depth >= 0, got -1",
    ),
    "spec-layer-decay-place-pattern": Case(
        _build(_spec(layer_decay={"decay": 0.5, "place": {"": "head"}})),
        SpecError,
        "layer_decay.place: pattern must be a non-empty string",
    ),
    "spec-spread-order": Case(
        _build(_spec(spread={"lo": 1.0, "hi": 0.1, "over": ["stem", "low"]})), SpecError, "spread.lo"
    ),
    "spec-spread-missing": Case(_build(_spec(spread={"lo": 1.0})), SpecError, "spread: missing required key"),
    "spec-spread-unknown-rule": Case(
        _build(_spec(spread={"lo": 0.1, "hi": 1.0, "over": ["stem", "nope"]})), SpecError, "'nope'"
    ),
    "spec-no-decay-class": Case(_build(_spec(no_decay=["biases"])), SpecError, "unknown class 'biases'"),
    "spec-unmatched-value": Case(_build(_spec(unmatched="sometimes")), SpecError, "unmatched"),
    "spec-rates-name": Case(_build(_spec(rates={"": 0.1})), SpecError, "rates"),
    "spec-stage-when": Case(_build(_spec(stages=[{"unfreeze": ["low"]}])), SpecError, "stages\\[0\\]"),
    "spec-stage-unknown-rule": Case(
        _build(_spec(stages=[{"at": 1, "unfreeze": ["nope"]}])), SpecError, "'nope', which names no rule"
    ),
    "spec-stage-unfreeze-type": Case(
        _build(_spec(stages=[{"at": 1, "unfreeze": 3}])), SpecError, "stages\\[0\\].unfreeze"
    ),
    "spec-stage-duplicate": Case(
        _build(
            _spec(
                stages=[
                    {"at": 1, "unfreeze": ["low"], "name": "s"},
                    {"at": 2, "unfreeze": ["stem"], "name": "s"},
                ]
            )
        ),
        SpecError,
        "two stages are named 's'",
    ),
    "spec-schedule-kind": Case(_build(_spec(schedule={"kind": "nope"})), SpecError, "schedule.kind 'nope'"),
    "spec-schedule-field": Case(
        _build(_spec(schedule={"kind": "step", "step_size": [1], "gamma": 0.5})),
        SpecError,
        "schedule.step_size",
    ),
    "spec-schedule-steps": Case(_build(_spec(schedule={"kind": "cosine", "steps": 0})), SpecError, "steps"),
    "spec-schedule-warmup-mode": Case(
        _build(_spec(schedule={"kind": "warmup", "inner": {"kind": "constant"}, "steps": 2, "mode": "wild"})),
        SpecError,
        "Warmup.mode",
    ),
    "spec-schedule-onecycle": Case(
        _build(_spec(schedule={"kind": "one_cycle", "steps": 10, "anneal": "wild"})), SpecError, "anneal"
    ),
    "spec-schedule-cyclical": Case(
        _build(_spec(schedule={"kind": "cyclical", "low": 0.1, "high": 1.0, "step_up": 2, "mode": "wild"})),
        SpecError,
        "Cyclical.mode",
    ),
    "spec-schedule-chain": Case(
        lambda env: multilr.build(env.model, Spec(lr=0.1, schedule=Chain((Constant(), Constant()), ()))),
        SpecError,
        "Chain",
    ),
    "spec-schedule-number-text": Case(
        _build(_spec(schedule={"kind": "step", "step_size": 2, "gamma": "half"})), SpecError, "schedule.gamma"
    ),
    # -- planning against the model ----------------------------------------------------
    "plan-rule-matches-nothing": Case(
        _build(_rules({"prefix": "decoder", "lr_mult": 2})),
        CoverageError,
        "'prefix:decoder' matches no parameter",
    ),
    "spec-towers-not-a-list": Case(
        lambda env: multilr.build(env.model, Spec(lr=0.1, layer_decay=0.5)),  # type: ignore[arg-type]
        SpecError,
        "layer_decay must be a LayerDecay or a list of them, got 0.5",
    ),
    "spec-tower-without-within": Case(
        _with_tower({"decay": 0.8}),
        SpecError,
        r"layer_decay\[1\]: a tower of several needs 'within'",
    ),
    "spec-tower-entry": Case(
        _with_tower({"decay": 2}),
        SpecError,
        r"layer_decay\[1\]: layer_decay\.decay must be <= 1",
    ),
    "spec-towers-empty": Case(_build(_spec(layer_decay=[])), SpecError, "layer_decay: an empty list of towers"),
    "spec-towers-same-label": Case(
        _with_tower({"decay": 0.8, "within": "blocks.*"}),  # labelled 'blocks' as the prefix one
        SpecError,
        r"layer_decay\[0\] and layer_decay\[1\] are both labelled 'blocks'; give one a name",
    ),
    "spec-tower-not-a-mapping": Case(
        _with_tower(0.8),
        SpecError,
        r"layer_decay\[1\] must be a mapping, got 0\.8",
    ),
    "plan-towers-overlap": Case(
        _with_tower({"decay": 0.8, "within": "blocks.1.*", "name": "top"}),
        ConflictError,
        r"parameter 'blocks\.1\.[a-z0-9_.]+' is in two towers: layer_decay\[0\] \(blocks\) and layer_decay\[1\] \(top\)",
    ),
    "plan-tower-within-matches-nothing": Case(
        _with_tower({"decay": 0.8, "within": "decoder.*"}),
        CoverageError,
        r"layer_decay\[1\]\.within \(glob:decoder\.\*\) matches no parameter",
    ),
    "plan-layer-decay-within-matches-nothing": Case(
        _build(_spec(layer_decay={"decay": 0.5, "within": {"prefix": "decoder"}})),
        CoverageError,
        r"layer_decay\.within \(prefix:decoder\) matches no parameter",
    ),
    "plan-conflict": Case(
        _build(_rules({"prefix": "head.weight", "lr_mult": 3, "name": "top"})), ConflictError, "head.weight"
    ),
    "plan-rates-unknown": Case(_build(_spec(rates={"head.wieght": 0.1})), CoverageError, "'head.wieght'"),
    "plan-rates-tied": Case(
        lambda env: multilr.build(
            tied_lm(), {"lr": 0.1, "rates": {"embed.weight": 0.1, "lm_head.weight": 0.2}}
        ),
        ConflictError,
        "lm_head.weight",
    ),
    "plan-unmatched-error": Case(_build(_spec(unmatched="error")), CoverageError, "'blocks.1.weight'"),
    "plan-no-parameters": Case(
        lambda env: multilr.build(torch.nn.ReLU(), {"lr": 0.1}), CoverageError, "no parameters"
    ),
    "plan-depth-map": Case(
        _build(_spec(layer_decay={"decay": 0.5, "depth": {"head.*": 1}})), PlanError, "'stem.weight'"
    ),
    "plan-place-matches-nothing": Case(
        _build(_spec(layer_decay={"decay": 0.5, "place": {"final_norm.*": "head"}})),
        CoverageError,
        r"layer_decay\.place\['final_norm\.\*'\] matches no parameter",
    ),
    "plan-place-conflict": Case(
        _build(_spec(layer_decay={"decay": 0.5, "place": {"head.*": "stem", "*.bias": "head"}})),
        ConflictError,
        "'head.bias'",
    ),
    "plan-stage-units": Case(
        _build(_spec(stages=[{"at": 1, "unfreeze": ["low"]}, {"epoch": 1, "unfreeze": ["low"]}])),
        SpecError,
        "both unfreeze the same parameters",
    ),
    "plan-stage-overflow": Case(
        _build(_spec(lr=10.0, stages=[{"at": 1, "unfreeze": ["low"], "lr_mult": 1e308}])),
        SpecError,
        "overflows",
    ),
    "plan-plugin-not-paraminfo": Case(
        _build(SPEC, backend=_Plugin(lambda m: [("stem.weight", (4, 3))])), PlanError, "expected ParamInfo"
    ),
    "plan-plugin-duplicate-name": Case(
        _build(SPEC, backend=_Plugin(lambda m: TorchBackend().extract(m) * 2)),
        PlanError,
        "'stem.weight' appears twice",
    ),
    # -- backends ----------------------------------------------------------------------
    "backend-unknown-name": Case(_build(SPEC, backend="tensorflow"), BackendNotFoundError, "'tensorflow'"),
    "backend-cannot-infer": Case(
        lambda env: multilr.build(object(), SPEC),
        BackendNotFoundError,
        "cannot tell which backend reads a object",
    ),
    "backend-contract": Case(_build(SPEC, backend=object()), BackendError, "does not implement name"),  # type: ignore[arg-type]
    "backend-convention": Case(
        _build(SPEC, backend=_Plugin(TorchBackend().extract, convention="both")), BackendError, "convention"
    ),
    "backend-not-installed": Case(_build(SPEC, backend="oneflow"), BackendNotFoundError, "'multilr-oneflow'"),
    "backend-emit-reorders": Case(
        _build(SPEC, backend=_Reversed()), BackendError, "backend 'reversed', group 0 .*: named 'head"
    ),
    "backend-plugin-fails": Case(
        lambda env: (
            multilr.register_backend("broken-at-start", lambda: 1 / 0),
            multilr.build(env.model, SPEC, backend="broken-at-start"),
        ),
        BackendError,
        "'broken-at-start' failed to start",
    ),
    "backend-not-a-module": Case(
        lambda env: multilr.build([1], SPEC, backend="torch"),
        BackendError,
        "needs a torch.nn.Module, got list",
    ),
    "backend-lazy-module": Case(
        lambda env: multilr.build(
            torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LazyLinear(2)), {"lr": 0.1}
        ),
        BackendError,
        "'1.weight' is uninitialized",
    ),
    "backend-plan-mismatch": Case(
        _build(SPEC, backend=_Plugin(_extra_param)), BackendError, "no parameter 'ghost.weight'"
    ),
    # -- the Controller: construction ---------------------------------------------------
    "ctl-no-plan": Case(lambda env: Controller(env.opt, object()), MultiLRError, "needs the plan"),
    "ctl-freeze-by": Case(
        lambda env: Controller(env.opt, env.groups, freeze_by="sometimes"),
        SpecError,
        "freeze_by",  # type: ignore[arg-type]
    ),
    "ctl-lr-scale": Case(
        lambda env: Controller(torch.optim.SGD([{**g, "lr_scale": 1.0} for g in env.groups]), env.groups),
        UnsupportedFeatureError,
        "lr_scale",
    ),
    "ctl-group-count": Case(
        lambda env: Controller(torch.optim.SGD(env.groups[:2]), env.groups), MultiLRError, "2 param groups"
    ),
    "ctl-group-order": Case(
        lambda env: Controller(torch.optim.SGD(list(reversed(env.groups))), env.groups),
        MultiLRError,
        "optimizer group 0 \\('head/no_decay'",
    ),
    "ctl-epoch-stage": Case(
        lambda env: Controller(env.opt, env.groups),
        SpecError,
        "stage 'stage0' starts at epoch 1",
        env_spec=EPOCH_SPEC,
        ctl_kwargs={"steps_per_epoch": 3},
    ),
    "ctl-steps-per-epoch": Case(
        lambda env: Controller(env.opt, env.groups, steps_per_epoch=0), SpecError, "steps_per_epoch"
    ),
    # -- the Controller: calls -----------------------------------------------------------
    "ctl-unknown-group": Case(lambda env: env.ctl.set_scale("haed", 2.0), SpecError, "'haed'.*'head'"),
    "ctl-shared-parameter": Case(
        lambda env: env.ctl.set_scale("blocks.1.bias", 2.0),
        MultiLRError,
        "'blocks.1.bias' shares group 'no_decay'",
    ),
    "ctl-rate-written-elsewhere": Case(
        lambda env: _step_after_foreign_write(env),
        MultiLRError,
        "group 'head' has lr 0.123, but the Controller set",
    ),
    "ctl-bad-multiplier": Case(
        lambda env: env.ctl.set_scale("head", -1.0), SpecError, "multiplier of group 'head'"
    ),
    "ctl-freeze-one-unknown": Case(lambda env: env.ctl.freeze("head", "nope"), SpecError, "'nope'"),
    "ctl-unfreeze-not-frozen": Case(
        lambda env: env.ctl.unfreeze("head"), MultiLRError, "cannot unfreeze \\['head'\\]"
    ),
    "ctl-freeze-no-group": Case(lambda env: env.ctl.freeze(), MultiLRError, "freeze\\(\\) needs the groups"),
    "ctl-unfreeze-no-group": Case(
        lambda env: env.ctl.unfreeze(*[]), MultiLRError, "unfreeze\\(\\) needs the groups .*unfreeze_all"
    ),
    "ctl-unfreeze-all-bad-multiplier": Case(
        lambda env: env.ctl.unfreeze_all(multiplier=-1.0), SpecError, "unfreeze multiplier"
    ),
    "ctl-unfreeze-bad-multiplier": Case(
        lambda env: env.ctl.unfreeze("stem/frozen", multiplier=math.inf), SpecError, "unfreeze multiplier"
    ),
    "ctl-freeze-to-mixed-group": Case(
        lambda env: env.ctl.freeze_to(2), MultiLRError, "freeze_to\\(2\\): group"
    ),
    "ctl-bad-factor-later": Case(
        lambda env: env.ctl.step(), SpecError, "at step 2", ctl_kwargs={"schedule": NAN_FROM_2}
    ),
    "ctl-stage-transition-fails": Case(
        # step 2 would apply stage0 (unfreeze blocks.0) and the head's own schedule gives nan there
        lambda env: (env.ctl.step(), env.ctl.frozen()),
        SpecError,
        "at step 2",
        env_spec=_rules({"prefix": "norm", "name": "norm", "schedule": NAN_FROM_2}),
    ),
    "ctl-grad-mode-thaw": Case(
        lambda env: env.ctl.unfreeze("stem/frozen"),
        MultiLRError,
        "cannot unfreeze \\['stem/frozen'\\] with freeze_by='grad'",
        env_spec=GRAD_SPEC,
        ctl_kwargs={"freeze_by": "grad"},
    ),
    "ctl-load-unknown-group": Case(
        lambda env: env.ctl.load_state_dict({**env.ctl.state_dict(), "multipliers": {"nope": 1.0}}),
        SpecError,
        "'nope'",
    ),
    "ctl-load-negative-step": Case(
        lambda env: env.ctl.load_state_dict({**env.ctl.state_dict(), "step": -1}),
        SpecError,
        "step must be >= 0",
    ),
    "ctl-load-unknown-stage": Case(
        lambda env: env.ctl.load_state_dict({**env.ctl.state_dict(), "stages_done": ["warp"]}),
        SpecError,
        "'warp'",
    ),
    "ctl-load-bad-multiplier": Case(
        lambda env: env.ctl.load_state_dict({**env.ctl.state_dict(), "multipliers": {"head": "x"}}),
        SpecError,
        "multiplier of group 'head'",
    ),
    "ctl-load-missing-key": Case(lambda env: env.ctl.load_state_dict({"step": 1}), SpecError, "multipliers"),
    "ctl-load-frozen-not-a-list": Case(
        lambda env: env.ctl.load_state_dict({**env.ctl.state_dict(), "frozen": "head"}),
        SpecError,
        "frozen must be a list of names",
    ),
    # -- checkpoints -------------------------------------------------------------------
    "ckpt-not-a-checkpoint": Case(
        lambda env: multilr.load_state_dict(env.opt, {"model": {}}, env.ctl),
        CheckpointError,
        "keys \\['model'\\]",
    ),
    "ckpt-graph-groups": Case(
        lambda env: multilr.load_state_dict(
            torch.optim.SGD([{"params": [torch.zeros(1)], "lr": 0.1, "lr_scale": 1.0}]), env.saved
        ),
        CheckpointError,
        "carries lr_scale",
    ),
    "ckpt-plan-type": Case(
        lambda env: multilr.load_state_dict(env.opt, env.saved, plan=3), CheckpointError, "plan must be"
    ),
    "ckpt-other-groups": Case(
        _ckpt(lambda ck: ck["param_groups"][0].update(name="trunk")), CheckpointError, "inconsistent"
    ),
    "ckpt-renamed-group": Case(
        _ckpt(
            lambda ck: [g.update(name="trunk") for g in (ck["param_groups"][0], ck["multilr"]["groups"][0])]
        ),
        CheckpointError,
        "renamed \\(same position\\): 'trunk' -> 'stem/frozen'",
    ),
    "ckpt-section-malformed": Case(_ckpt(lambda ck: ck.update(multilr=[])), CheckpointError, "malformed"),
    "ckpt-section-format": Case(
        _ckpt(lambda ck: ck["multilr"].update(format=99)), CheckpointError, "format 99"
    ),
    "ckpt-group-entry": Case(
        _ckpt(lambda ck: ck["multilr"]["groups"][2].pop("tensors")), CheckpointError, "malformed group entry"
    ),
    "ckpt-saved-group-type": Case(
        _ckpt(lambda ck: ck["param_groups"].__setitem__(0, "stem")), CheckpointError, "not a mapping: 'stem'"
    ),
    "ckpt-controller-missing": Case(
        _ckpt(lambda ck: ck["multilr"].update(controller=None)), CheckpointError, "holds no Controller state"
    ),
    "ckpt-controller-unexpected": Case(
        lambda env: multilr.load_state_dict(env.opt, env.saved),
        CheckpointError,
        "holds a Controller's state \\(step 3",
    ),
    "ckpt-controller-other-optimizer": Case(
        lambda env: multilr.load_state_dict(
            torch.optim.SGD(multilr.build(env.model, SPEC)), env.saved, env.ctl
        ),
        CheckpointError,
        "drives another optimizer",
    ),
    "ckpt-controller-keys": Case(
        _ckpt(lambda ck: ck["multilr"]["controller"].pop("frozen")), CheckpointError, "lacks \\['frozen'\\]"
    ),
    "ckpt-controller-malformed": Case(_ckpt(_ctl_state(frozen="stem")), CheckpointError, "malformed"),
    "ckpt-controller-groups": Case(
        _ckpt(_ctl_state(multipliers={"head": 1.0})), CheckpointError, "multipliers for \\['head'\\]"
    ),
    "ckpt-controller-step": Case(
        _ckpt(_ctl_state(step="3")), CheckpointError, "step must be an integer, got '3'"
    ),
    "ckpt-controller-refuses": Case(
        _ckpt(_ctl_state(step=-4)),
        CheckpointError,
        "Controller state was refused, nothing changed: .*step must be >= 0",
    ),
    "ckpt-optimizer-refuses": Case(
        _refusing_optimizer, CheckpointError, "optimizer state was refused, nothing changed: disk says no"
    ),
}


@pytest.mark.parametrize("case_id", list(CASES))
def test_a_failure_changes_nothing(case_id: str, tmp_path: Path) -> None:
    case = CASES[case_id]
    env = make_env(tmp_path, case.env_spec if case.env_spec is not None else SPEC, **case.ctl_kwargs)
    before = snapshot(env)
    with pytest.raises(case.error, match=case.names) as err:
        case.trigger(env)
    assert isinstance(err.value, MultiLRError), f"got {type(err.value).__name__}, should be a multilr error"
    assert_bit_identical(snapshot(env), before, "state")


# -- every raise site has a case or a reason --------------------------------------------

#: Modules whose raise sites build, the Controller and the checkpoint loader can reach.
MODULES = [
    "multilr/_build.py", "multilr/_check.py", "multilr/_checkpoint.py", "multilr/_control.py",
    "multilr/_controlcheck.py", "multilr/_decisions.py", "multilr/_depth.py", "multilr/_emitted.py",
    "multilr/_freezing.py",
    "multilr/_hyperkeys.py", "multilr/_layerdecay.py", "multilr/_mmengine.py",
    "multilr/_params.py", "multilr/_placement.py", "multilr/_plan.py", "multilr/_plantypes.py", "multilr/_registry.py",
    "multilr/_rules.py", "multilr/_runorder.py", "multilr/_select.py", "multilr/_spec.py", "multilr/_stacks.py", "multilr/_stages.py",
    "multilr/_table.py", "multilr/_targets.py", "multilr/_tensors.py", "multilr/_text.py", "multilr/_timeline.py",
    "multilr/backend.py", "multilr/schedules/_base.py",
    "multilr/schedules/_io.py", "multilr/schedules/_shapes.py",
    "backends/torch/src/multilr_torch/_backend.py", "backends/torch/src/multilr_torch/_forward.py",
]  # fmt: skip

_CONVERTER = "a config converter: it makes a Spec from a mapping and touches no model or optimizer (test_mmengine.py)"

#: ``module::function`` -> the cases that reach its raises, or why none can (a string).
SITES: dict[str, list[str] | str] = {
    "multilr/_runorder.py::check_mode": "forward_depths checks its mode before anything runs (test_forward_depths.py)",
    "multilr/_runorder.py::positional": "forward_depths refuses a mapping as args before hooks go on (test_forward_depths.py)",
    "multilr/_runorder.py::FirstRuns.evaluating": (
        "a failed forward pass: test_forward_depths.py checks flags, hooks and the RNG after it"
    ),
    "multilr/_check.py::check_keys": ["spec-unknown-key", "spec-schedule-field"],
    "multilr/_check.py::number": [
        "spec-lr-not-a-number",
        "ctl-bad-multiplier",
        "spec-layer-decay-range",
        "ctl-unfreeze-all-bad-multiplier",
    ],
    "multilr/_check.py::integer": ["spec-rule-priority"],
    "multilr/_checkpoint.py::load_state_dict": ["ckpt-not-a-checkpoint", "ckpt-renamed-group"],
    "multilr/_checkpoint.py::_plan_of": ["ckpt-plan-type"],
    "multilr/_checkpoint.py::_refuse_graph_groups": ["ckpt-graph-groups"],
    "multilr/_checkpoint.py::_saved_layout": [
        "ckpt-section-malformed",
        "ckpt-section-format",
        "ckpt-group-entry",
        "ckpt-other-groups",
    ],
    "multilr/_checkpoint.py::_saved_name": ["ckpt-saved-group-type"],
    "multilr/_checkpoint.py::_check_controller": [
        "ckpt-controller-missing",
        "ckpt-controller-unexpected",
        "ckpt-controller-other-optimizer",
        "ckpt-controller-keys",
        "ckpt-controller-malformed",
        "ckpt-controller-groups",
        "ckpt-controller-step",
    ],
    "multilr/_checkpoint.py::_load": ["ckpt-controller-refuses", "ckpt-optimizer-refuses"],
    "multilr/_control.py::Controller.__init__": ["ctl-no-plan"],
    "multilr/_control.py::Controller.freeze": ["ctl-freeze-no-group"],
    "multilr/_control.py::Controller.unfreeze": ["ctl-unfreeze-not-frozen", "ctl-unfreeze-no-group"],
    "multilr/_freezing.py::step_pre_hook": [
        "ctl-freeze-by",
        "(no register_step_pre_hook: torch always has one; test_atomic_oneflow covers it)",
    ],
    "multilr/_freezing.py::Freezing.check_thaw": ["ctl-grad-mode-thaw"],
    "multilr/_controlcheck.py::check_optimizer": ["ctl-lr-scale", "ctl-group-count", "ctl-group-order"],
    "multilr/_controlcheck.py::check_rates_unchanged": ["ctl-rate-written-elsewhere"],
    "multilr/_controlcheck.py::read_state": [
        "ctl-load-unknown-group",
        "ctl-load-negative-step",
        "ctl-load-unknown-stage",
        "ctl-load-missing-key",
    ],
    "multilr/_controlcheck.py::_names": ["ctl-load-frozen-not-a-list"],
    "multilr/_targets.py::group_index": [
        "ctl-unknown-group",
        "ctl-shared-parameter",
        "ctl-freeze-one-unknown",
    ],
    "multilr/_targets.py::frozen_below": ["ctl-freeze-to-mixed-group"],
    "multilr/_depth.py::_explicit": ["plan-depth-map"],
    "multilr/_tensors.py::check_names": "duplicate names from a table backend: collect_params walks a module tree, "
    "whose names are unique; the ParamInfo path is plan-plugin-duplicate-name",
    "multilr/_plan.py::_as_table": ["plan-plugin-not-paraminfo", "plan-plugin-duplicate-name"],
    "multilr/_plan.py::_match_rules": ["plan-rule-matches-nothing"],
    "multilr/_layerdecay.py::within_positions": [
        "plan-layer-decay-within-matches-nothing",
        "plan-tower-within-matches-nothing",
    ],
    "multilr/_layerdecay.py::decay_towers": ["plan-towers-overlap"],
    "multilr/_plan.py::_pick": ["plan-conflict"],
    "multilr/_plan.py::_apply_rates": ["plan-rates-unknown", "plan-rates-tied"],
    "multilr/_plan.py::resolve": ["plan-no-parameters", "plan-unmatched-error", "plan-stage-overflow"],
    "multilr/_plantypes.py::Plan.__getattr__": "attribute access on a finished plan, after build returned",
    "multilr/_plantypes.py::Plan.param": "a lookup on a finished plan (KeyError by contract), after build returned",
    "multilr/_plantypes.py::Plan.group": "a lookup on a finished plan (KeyError by contract), after build returned",
    "multilr/_registry.py::infer_backend": ["backend-cannot-infer"],
    "multilr/_registry.py::get_backend": [
        "backend-unknown-name",
        "backend-plugin-fails",
        "(an entry point that fails to import needs an installed broken package; it raises before the model "
        "is read, as backend-plugin-fails does)",
    ],
    "multilr/_registry.py::_check_contract": ["backend-contract", "backend-convention"],
    "multilr/_emitted.py::_check_settings": "a wrong lr, lr_scale or weight_decay from an emit: "
    "backends/torch/tests/test_emitted.py (raised where check_emitted raises, after emit returns)",
    "multilr/_registry.py::register_backend": "refused before any model is read (tests/test_registry.py)",
    "multilr/_mmengine.py::from_mmengine": _CONVERTER,
    "multilr/_mmengine.py::_base_weight_decay": _CONVERTER,
    "multilr/_mmengine.py::_custom_rules": _CONVERTER,
    "multilr/_mmengine.py::_depthwise": _CONVERTER,
    "multilr/_emitted.py::check_emitted": [
        "backend-emit-reorders",
        "(the other refusals: backends/torch/tests/test_emitted.py, on the same running model)",
    ],
    "multilr/_registry.py::_entry_point": "two installed packages registering one name "
    "(tests/test_registry.py puts such a pair on sys.path); it raises before the model is read",
    "multilr/_rules.py::Rule.__post_init__": ["spec-rule-two-rates", "spec-rule-sets-nothing"],
    "multilr/_rules.py::Rule.from_dict": ["spec-rule-name-type"],
    "multilr/_rules.py::LayerDecay.__post_init__": ["spec-layer-decay-depth"],
    "multilr/_rules.py::LayerDecay.from_dict": ["spec-layer-decay-missing"],
    "multilr/_rules.py::_checked_place": ["spec-layer-decay-place"],
    "multilr/_rules.py::_patterns": ["spec-layer-decay-place-pattern"],
    "multilr/_rules.py::_check_depth": ["spec-layer-decay-place-depth"],
    "multilr/_placement.py::place_depths": ["plan-place-matches-nothing", "plan-place-conflict"],
    "multilr/_rules.py::Spread.__post_init__": ["spec-spread-order"],
    "multilr/_rules.py::Spread.from_dict": ["spec-spread-missing"],
    "multilr/_select.py::ModuleType.__init__": ["spec-rule-module-type"],
    "multilr/_select.py::Ndim.__init__": ["spec-rule-ndim"],
    "multilr/_select.py::Predicate.to_dict": "only from to_dict/to_json; multilr.state_dict catches it "
    "(the fingerprint is None for a Python-only spec)",
    "multilr/_select.py::_check_pattern": ["spec-rule-empty-prefix"],
    "multilr/_select.py::_compile": ["spec-rule-bad-regex"],
    "multilr/_select.py::selector_from_dict": ["spec-rule-no-selector"],
    "multilr/_select.py::matching": ["plan-predicate-raises"],
    "multilr/_select.py::selector_to_dict": "only from to_dict/to_json (a selector class of the user's "
    "without to_dict); multilr.state_dict catches it",
    "multilr/_spec.py::_hyper_value": ["spec-hyper-value"],
    "multilr/_hyperkeys.py::check_hyper_key": ["spec-hyper-typo"],
    "multilr/_spec.py::Spec.__post_init__": [
        "spec-hyper-lr",
        "spec-duplicate-rule",
        "spec-spread-unknown-rule",
        "spec-no-decay-class",
        "spec-unmatched-value",
        "spec-rates-name",
    ],
    "multilr/_spec.py::Spec._checked_stages": ["spec-stage-unknown-rule", "spec-stage-duplicate"],
    "multilr/_spec.py::Spec.from_dict": ["spec-missing-lr", "spec-stage-unfreeze-type"],
    "multilr/_spec.py::Spec.from_file": ["spec-file-missing", "spec-file-extension"],
    "multilr/_spec.py::as_spec": ["spec-not-a-spec"],
    "multilr/_spec.py::_towers": [
        "spec-towers-not-a-list",
        "spec-tower-without-within",
        "spec-towers-empty",
        "spec-towers-same-label",
    ],
    "multilr/_spec.py::_tower_from_dict": ["spec-tower-entry", "spec-tower-not-a-mapping"],
    "multilr/_stages.py::Stage.__post_init__": ["spec-stage-when"],
    "multilr/_stages.py::Stage.from_dict": ["spec-stage-unfreeze-type"],
    "multilr/_stages.py::Stage.start": ["ctl-epoch-stage"],
    "multilr/_stages.py::stage_of": ["plan-stage-units"],
    "multilr/_text.py::parse_json": ["spec-bad-json", "spec-json-not-a-mapping"],
    "multilr/_text.py::parse_yaml": ["spec-bad-yaml"],
    "multilr/_text.py::_yaml": "PyYAML missing, when a spec is read from or written to YAML text: "
    "before any model or optimizer is involved",
    "multilr/backend.py::_checked": "convention is checked by _check_contract first (backend-convention)",
    "multilr/backend.py::attach_params": ["backend-plan-mismatch"],
    "multilr/backend.py::attach_table": "build passes the table extract_table just made, which always has "
    "its tensors",
    "multilr/schedules/_base.py::Schedule.factor": ["ctl-bad-factor-later", "ctl-stage-transition-fails"],
    "multilr/schedules/_base.py::Chain.__post_init__": ["spec-schedule-chain"],
    "multilr/schedules/_base.py::Chain._factor": "an invariant (AssertionError 'unreachable'), not an input error",
    "multilr/schedules/_base.py::check_steps": ["spec-schedule-steps", "ctl-steps-per-epoch"],
    "multilr/schedules/_io.py::schedule_to_dict": "only from to_dict/to_json; multilr.state_dict catches it",
    "multilr/schedules/_io.py::schedule_from_dict": ["spec-schedule-kind"],
    "multilr/schedules/_io.py::_field": ["spec-schedule-field"],
    "multilr/schedules/_io.py::number_text": ["spec-schedule-number-text"],
    "multilr/schedules/_shapes.py::OneCycle.__post_init__": ["spec-schedule-onecycle"],
    "multilr/schedules/_shapes.py::OneCycle._factor": "an invariant (AssertionError 'unreachable'), not an input error",
    "multilr/schedules/_shapes.py::Cyclical.__post_init__": ["spec-schedule-cyclical"],
    "multilr/schedules/_shapes.py::Warmup.__post_init__": ["spec-schedule-warmup-mode"],
    "backends/torch/src/multilr_torch/_backend.py::_require_module": ["backend-not-a-module"],
    "backends/torch/src/multilr_torch/_backend.py::TorchBackend.extract_table": ["backend-lazy-module"],
}


def raise_sites(modules: list[str]) -> set[str]:
    """``module::function`` of every ``raise`` statement in ``modules`` (module level: ``<module>``)."""
    found = set()
    for rel in modules:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))

        def visit(node: ast.AST, stack: list[str], rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit(child, [*stack, child.name])
                    continue
                if isinstance(child, ast.Raise):
                    found.add(f"{rel}::{'.'.join(stack) or '<module>'}")
                visit(child, stack)

        visit(tree, [])
    return found


def test_every_raise_site_is_listed() -> None:
    found = raise_sites(MODULES)
    new, gone = sorted(found - set(SITES)), sorted(set(SITES) - found)
    assert not new, f"got raise sites with no case and no reason in SITES: {new}"
    assert not gone, f"got SITES entries for functions that no longer raise: {gone}"
    for site, covered in SITES.items():
        if isinstance(covered, list):
            unknown = [c for c in covered if c not in CASES and not c.startswith("(")]
            assert not unknown, f"got {site} covered by unknown cases {unknown}"
    used = {c for v in SITES.values() if isinstance(v, list) for c in v}
    assert not sorted(set(CASES) - used - _EXTRA), (
        f"got cases for no listed site: {sorted(set(CASES) - used - _EXTRA)}"
    )


#: Cases that reach a site listed under another case already, kept for the message they check.
_EXTRA = {
    "ckpt-controller-refuses",
    "ctl-load-bad-multiplier",
    "ctl-unfreeze-bad-multiplier",
    "backend-not-installed",
}


@pytest.mark.parametrize(
    "change",
    [
        lambda env: env.model.head.weight.requires_grad_(False),
        lambda env: env.model.head.bias.grad.add_(1.0),
        lambda env: env.opt.state[env.model.head.weight]["momentum_buffer"].mul_(2.0),
        lambda env: env.opt.param_groups[0].update(lr=0.5),
        lambda env: env.ctl.set_scale("head", 2.0),
    ],
    ids=["requires_grad", "grad", "momentum", "lr", "controller"],
)
def test_the_snapshot_sees_every_kind_of_change(change: Callable[[Env], Any], tmp_path: Path) -> None:
    """The comparison above can fail: each kind of change a failed call could make is seen."""
    env = make_env(tmp_path)
    before = snapshot(env)
    change(env)
    with pytest.raises(AssertionError, match=r"changed|should be"):
        assert_bit_identical(snapshot(env), before, "state")
