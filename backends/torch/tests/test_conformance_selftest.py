"""The suite catches wrong training: real torch runs that apply the scales wrongly.

Each wrong run is the torch backend's correct groups with one classic mistake made to
them before the optimizer takes them: what a framework's optimizer, an adapter or a
training loop gets wrong after the build. (The same mistakes in a backend's ``emit``
``build`` refuses outright: ``test_emitted.py``.)

* ``scale-gradient`` trains every group at the base rate and multiplies the gradients
  by the scale in a backward hook (the first FastAI.jl implementation, seed 003);
* ``scale-twice`` multiplies the already scaled rate by the scale again (pre-scaled
  ``lr`` plus ``lr_scale``);
* ``drop-scale`` trains every group at the base rate (``lr_scale`` in eager mode).

Every case must fail on each of them, for SGD and for Adam, except one that is not a
mistake: under SGD without weight decay, scaling the gradient *is* scaling the rate
(the update is linear in both), and those cells must pass. (Controlled cases are left
out there: ``multilr.Controller`` rewrites every group's rate from the plan.)

Training that loses the no-decay classes (``decay-everything``) must be caught with a
message that names the weight decay, not the rate.

The run-time cases (``ctl_*``) must catch a wrong Controller: one that ignores the calls,
one that "freezes" by rate 0 alone (gradients still flow: momentum and moments move on),
and one that drops the optimizer state of the tensors it unfreezes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from multilr_torch import TorchBackend

import multilr
from multilr import Controller, Plan
from multilr.testing import Case, TorchLikeHarness, all_cases, check_backend


class _Wrong(TorchLikeHarness):
    """The torch harness, with one mistake made to each trainable group before the optimizer."""

    name = "wrong"

    def __init__(self) -> None:
        super().__init__(torch, TorchBackend(), name=self.name)

    def make_optimizer(self, case: Case, groups: Any) -> Any:
        for emitted, group in zip(groups, groups.plan.groups, strict=True):
            if not group.frozen:
                self.mistake(emitted, groups.plan.base_lr, group.scale)
        return super().make_optimizer(case, groups)

    def mistake(self, group: dict[str, Any], base: float, scale: float) -> None:
        raise NotImplementedError


class ScaleGradient(_Wrong):
    name = "scale-gradient"

    def mistake(self, group: dict[str, Any], base: float, scale: float) -> None:
        group["lr"] = base
        for p in group["params"]:
            if p.requires_grad:  # a tensor the model froze gets no gradient to scale
                p.register_hook(lambda grad, s=scale: grad * s)


class ScaleTwice(_Wrong):
    name = "scale-twice"

    def mistake(self, group: dict[str, Any], base: float, scale: float) -> None:
        group["lr"] = group["lr"] * scale


class DropScale(_Wrong):
    name = "drop-scale"

    def mistake(self, group: dict[str, Any], base: float, scale: float) -> None:
        group["lr"] = base


def _equivalent(backend: type[_Wrong], case: Case) -> bool:
    """Whether the mistake changes nothing in this case (then the suite must not flag it)."""
    return backend is ScaleGradient and case.setup.kind == "sgd" and case.setup.weight_decay == 0


@pytest.mark.parametrize("backend", [ScaleGradient, ScaleTwice, DropScale], ids=lambda b: b.name)
@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_wrong_backend_is_caught(backend: type[_Wrong], family: str) -> None:
    cases = [c for c in all_cases() if c.setup.kind.startswith(family) and not c.controlled]
    report = check_backend(backend(), cases=cases)
    for result, case in zip(report.results, cases, strict=True):
        if _equivalent(backend, case):
            assert result.status == "passed", result.describe()
        else:
            assert result.status == "failed", f"{backend.name} was not caught on {case.id}"
            assert any("rate" in m for m in result.messages), result.describe()
    caught = sum(r.status == "failed" for r in report.results)
    assert caught >= len(cases) // 2, f"{backend.name}: only {caught} of {len(cases)} {family} cells failed"


def test_the_correct_backend_passes_the_same_cells() -> None:
    """The control: the unmodified backend, same cells, same harness: all pass."""
    cases = [c for c in all_cases() if c.setup.kind in ("sgd", "adam", "adamw")]
    report = check_backend(TorchLikeHarness(torch, TorchBackend()), cases=cases)
    assert report.ok, report.summary()


class ForgetRequiresGrad(TorchBackend):
    """Emits the right groups (frozen ones at rate 0) but leaves frozen tensors' flags on."""

    name = "forget-requires-grad"

    def emit(self, model: Any, plan: Plan) -> list[dict[str, Any]]:
        groups = super().emit(model, plan)
        for group in groups:
            for p in group["params"]:
                p.requires_grad_(True)
        return groups


def test_a_backend_that_leaves_frozen_tensors_trainable_is_caught() -> None:
    # at rate 0 they do not move, so only the flags show it: they would get gradients,
    # optimizer state and a share of a clipped gradient norm
    cases = [c for c in all_cases() if c.setup.kind in ("sgd", "adamw") and not c.controlled]
    report = check_backend(TorchLikeHarness(torch, ForgetRequiresGrad()), cases=cases)
    frozen = model_frozen = 0
    for result, case in zip(report.results, cases, strict=True):
        plan = multilr.plan(case.infos(), case.spec)
        if any(g.frozen for g in plan.groups):
            frozen += 1
            assert result.status == "failed", f"not caught on {case.id}"
            assert any("left with requires_grad on" in m for m in result.messages), result.describe()
        elif case.model_frozen():  # the user's own "off" switched on: they train
            model_frozen += 1
            assert result.status == "failed", f"not caught on {case.id}"
            assert any("switched on by build" in m for m in result.messages), result.describe()
        else:
            assert result.status == "passed", result.describe()
    assert frozen >= 4, f"only {frozen} cells freeze anything"
    assert model_frozen >= 2, f"only {model_frozen} cells have tensors the model froze"


class IgnoreTies(TorchBackend):
    """Keys every tensor by its name: a tied tensor is planned twice, under each name."""

    name = "ignore-ties"

    def extract(self, model: Any) -> list[multilr.ParamInfo]:
        return [dataclasses.replace(info, key=info.name) for info in super().extract(model)]


class LeafClassOnly(TorchBackend):
    """Reports each module's own class only, not its bases: a subclass loses its base's rules."""

    name = "leaf-class-only"

    def extract(self, model: Any) -> list[multilr.ParamInfo]:
        return [dataclasses.replace(info, module_types=info.module_types[:1]) for info in super().extract(model)]


@pytest.mark.parametrize(
    ("backend", "feature", "plain", "named"),
    [
        # a tied tensor planned twice, under each name: build's emit check refuses it
        (IgnoreTies, "tied", "layer_decay", "holds a tensor of group 0 too"),
        # Rescale(LayerNorm) is a norm only through its base: such a backend gives it the
        # rate and the weight decay of a plain tensor
        (LeafClassOnly, "subclassed", "no_decay", "blocks.2.norm"),
    ],
    ids=lambda x: x.name if isinstance(x, type) else None,
)
def test_a_backend_that_misreads_the_model_is_caught(
    backend: type[TorchBackend], feature: str, plain: str, named: str
) -> None:
    cases = [c for c in all_cases() if c.feature == feature]
    assert len(cases) >= 8
    report = check_backend(TorchLikeHarness(torch, backend()), cases=cases)
    for result in report.results:
        assert result.status == "failed", result.describe()
        assert any(named in m for m in result.messages), result.describe()
    # the same backend on a model without that feature is right
    others = [c for c in all_cases() if c.feature == plain and c.setup.kind == "adamw"]
    assert check_backend(TorchLikeHarness(torch, backend()), cases=others).ok


class DecayEverything(_Wrong):
    """The plan's groups, every one trained at the base weight decay (no_decay lost)."""

    name = "decay-everything"

    def make_optimizer(self, case: Case, groups: Any) -> Any:
        for group in groups:
            group["weight_decay"] = groups.plan.spec.weight_decay
        return TorchLikeHarness.make_optimizer(self, case, groups)


def test_a_wrong_weight_decay_is_reported_as_one() -> None:
    # a wrong weight decay changes the update's direction, which reads as a wrong rate;
    # the message must say which it is, or a backend's author goes after the scales
    cases = [c for c in all_cases() if "no_decay" in c.id and not c.controlled and c.setup.weight_decay > 0]
    assert len(cases) >= 8
    report = check_backend(DecayEverything(), cases=cases)
    for result, case in zip(report.results, cases, strict=True):
        assert result.status == "failed", result.describe()
        base = f"with weight decay {case.setup.weight_decay:g}, where the plan gives"
        # the first steps that show it start from the plan's optimizer state: named there
        # (Adam's L2 decay of 0.01 shows only at step 4, its moments normalise it away)
        first = result.messages[0]
        assert base in first and "the group's weight_decay is wrong, not its rate" in first, result.describe()


# -- wrong run-time control --------------------------------------------------------------


class _Proxy:
    """A Controller that passes every call on; the subclasses get one call wrong."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl, self.groups = ctl, ctl.groups

    def step(self) -> None:
        self.ctl.step()

    def set_scale(self, group: str, multiplier: float) -> None:
        self.ctl.set_scale(group, multiplier)

    def freeze(self, *groups: str) -> None:
        self.ctl.freeze(*groups)

    def unfreeze(self, *groups: str, multiplier: float | None = None) -> None:
        self.ctl.unfreeze(*groups, multiplier=multiplier)

    def freeze_to(self, n: int) -> None:
        self.ctl.freeze_to(n)


class IgnoreCalls(_Proxy):
    def set_scale(self, group: str, multiplier: float) -> None:
        pass

    def freeze(self, *groups: str) -> None:
        pass

    def unfreeze(self, *groups: str, multiplier: float | None = None) -> None:
        pass

    def freeze_to(self, n: int) -> None:
        pass


class FreezeByRate(_Proxy):
    def freeze(self, *groups: str) -> None:
        for g in groups:
            self.ctl.set_scale(g, 0.0)

    def unfreeze(self, *groups: str, multiplier: float | None = None) -> None:
        for g in groups:
            self.ctl.set_scale(g, 1.0 if multiplier is None else multiplier)


class ResetOnUnfreeze(_Proxy):
    def unfreeze(self, *groups: str, multiplier: float | None = None) -> None:
        self.ctl.unfreeze(*groups, multiplier=multiplier)
        opt = self.ctl.optimizer
        for pg in opt.param_groups:
            if pg["name"] in groups:
                for p in pg["params"]:
                    opt.state.pop(p, None)


class IgnoreStages(_Proxy):
    """Never applies the spec's stages: staged groups stay frozen."""

    def __init__(self, ctl: Controller) -> None:
        super().__init__(ctl)
        ctl._program.due = lambda step, state: state  # type: ignore[method-assign]


class IgnoreRuleSchedules(_Proxy):
    """Drops the rules' own schedules: every group follows the base schedule alone."""

    def __init__(self, ctl: Controller) -> None:
        super().__init__(ctl)
        ctl._program.own = [None] * len(ctl.groups)


class _WrongControl(TorchLikeHarness):
    def __init__(self, proxy: type[_Proxy]) -> None:
        super().__init__(torch, "torch", name=proxy.__name__)
        self.proxy = proxy

    def make_controller(self, case: Case, opt: Any, groups: Any) -> Any:
        return self.proxy(super().make_controller(case, opt, groups))


@pytest.mark.parametrize(
    ("proxy", "feature"),
    [
        (IgnoreCalls, None),
        (FreezeByRate, "ctl_freeze"),
        (ResetOnUnfreeze, "ctl_freeze"),
        (IgnoreStages, "ctl_stages"),
        (IgnoreRuleSchedules, "ctl_rule_schedule"),
    ],
    ids=["ignore-calls", "freeze-by-rate", "reset-on-unfreeze", "ignore-stages", "ignore-rule-schedules"],
)
def test_wrong_runtime_control_is_caught(proxy: type[_Proxy], feature: str | None) -> None:
    # ignoring the calls can only show in cases that make calls
    cases = [c for c in all_cases() if c.controlled and feature in (None, c.feature)]
    if feature is None:
        cases = [c for c in cases if c.events]
    report = check_backend(_WrongControl(proxy), cases=cases)
    assert cases and all(r.status == "failed" for r in report.results), report.summary()
