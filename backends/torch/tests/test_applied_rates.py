"""The rates torch actually applies equal the plan, read from parameter updates.

Nothing here reads ``lr`` back from the group dicts to check it: each test sets known
gradients, lets the real optimizer step, and recovers every parameter's effective
learning rate from how far it moved. A reference re-implementation of each update
rule (SGD with momentum / Nesterov / L2 decay, Adam with L2 decay, AdamW with
decoupled decay) gives the update *per unit of learning rate* ``D``, and because every
rule here is linear in ``lr`` for a fixed history, ``delta = -lr * D`` and
``lr = -delta / D`` element by element.

That measures the rate, not the gradient: Adam's direction ``m_hat / (sqrt(v_hat) + eps)``
barely depends on the gradient's scale, so a multiplier put on the gradient instead
of the rate would show up as the base rate here
(``test_update_check_catches_gradient_scaling`` proves the check notices).

The model is ``resnet18(width=4)`` in float64 with a head rule (``fc`` x10), layer-wise
decay 0.8 over its 10 depths, ``no_decay=("bias", "norm")`` and ``layer1`` frozen, so
its 62 tensors land in 20 groups with 8 distinct non-zero rates. A ``LambdaLR`` changes the
rate between the three steps (factors 1, 0.5, 0.2): the rate at step ``k`` must be the
plan's rate times the schedule factor, for every parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import models
import pytest
import torch

import multilr
from multilr import LayerDecay, Prefix, Rule, Spec

SCHEDULE = (1.0, 0.5, 0.2)  # LambdaLR factor in force at steps 0, 1, 2
STEPS = len(SCHEDULE)


@dataclasses.dataclass(frozen=True)
class OptConfig:
    """One optimizer set-up and how to predict its update."""

    opt: Callable[..., torch.optim.Optimizer]
    kind: str  # "sgd", "adam" (L2 decay folded into the gradient) or "adamw" (decoupled)
    lr: float
    weight_decay: float
    hyper: dict[str, Any]
    ctor: dict[str, Any] = dataclasses.field(default_factory=dict)
    # float64 throughout: the worst relative error measured is ~3e-13 (Adam: p1 - p0 loses
    # |p| / |delta| of the 1e-16 precision), so 1e-9 leaves a wide margin and still
    # catches any wrong multiplier.
    rtol: float = 1e-9


ADAM_HYPER = {"betas": (0.9, 0.999), "eps": 1e-8}

CONFIGS = [
    pytest.param(OptConfig(torch.optim.SGD, "sgd", 0.1, 0.0, {"momentum": 0.0}), id="sgd"),
    pytest.param(OptConfig(torch.optim.SGD, "sgd", 0.1, 0.0, {"momentum": 0.9}), id="sgd-momentum"),
    pytest.param(
        OptConfig(torch.optim.SGD, "sgd", 0.1, 1e-2, {"momentum": 0.9, "nesterov": True}),
        id="sgd-nesterov-l2",
    ),
    pytest.param(OptConfig(torch.optim.Adam, "adam", 1e-2, 0.0, ADAM_HYPER), id="adam"),
    pytest.param(
        OptConfig(torch.optim.Adam, "adam", 1e-2, 1e-2, ADAM_HYPER, {"foreach": False}),
        id="adam-foreach-false-l2",
    ),
    pytest.param(OptConfig(torch.optim.AdamW, "adamw", 1e-2, 0.05, ADAM_HYPER), id="adamw"),
    # fused runs in float64 here too (CPU fused Adam supports double), so the same
    # tolerance holds; no float32 loosening is needed.
    pytest.param(
        OptConfig(torch.optim.AdamW, "adamw", 1e-2, 0.05, ADAM_HYPER, {"fused": True}), id="adamw-fused"
    ),
    pytest.param(
        OptConfig(torch.optim.AdamW, "adamw", 1e-2, 0.05, ADAM_HYPER, {"foreach": True}),
        id="adamw-foreach",
    ),
]


def make_spec(cfg: OptConfig) -> Spec:
    return Spec(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        hyper=cfg.hyper,
        rules=[
            Rule(Prefix("fc"), lr_mult=10, name="head"),
            Rule(Prefix("layer1"), frozen=True, name="frozen-layer1"),
        ],
        layer_decay=LayerDecay(0.8),
        no_decay=("bias", "norm"),
    )


class Reference:
    """Update per unit of learning rate, for one parameter, step by step."""

    def __init__(self, kind: str, hyper: dict[str, Any], weight_decay: float) -> None:
        self.kind = kind
        self.hyper = hyper
        self.wd = weight_decay
        self.t = 0
        self.buf: torch.Tensor | None = None
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def direction(self, grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        """``D`` such that this step's update is ``-lr * D`` (``param``: value before the step)."""
        self.t += 1
        if self.kind == "sgd":
            d = grad + self.wd * param
            mu = self.hyper.get("momentum", 0.0)
            if mu:
                self.buf = d.clone() if self.buf is None else mu * self.buf + d
                d = d + mu * self.buf if self.hyper.get("nesterov", False) else self.buf
            return d
        b1, b2 = self.hyper["betas"]
        eps = self.hyper["eps"]
        g = grad + self.wd * param if self.kind == "adam" else grad
        self.m = (1 - b1) * g if self.m is None else b1 * self.m + (1 - b1) * g
        self.v = (1 - b2) * g * g if self.v is None else b2 * self.v + (1 - b2) * g * g
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        d = m_hat / (v_hat.sqrt() + eps)
        if self.kind == "adamw":
            d = d + self.wd * param  # decoupled: p * (1 - lr * wd) - lr * d
        return d


def gradients(model: torch.nn.Module, step: int) -> dict[str, torch.Tensor]:
    """Known gradients for the trainable tensors: fixed sign per element, size in [0.5, 1.5].

    A fixed sign keeps momentum and Adam's moments well away from zero, so ``lr = -delta / D``
    is well conditioned everywhere.
    """
    out = {}
    for i, (name, p) in enumerate(model.named_parameters()):
        if not p.requires_grad:
            continue  # what backward does: a frozen tensor receives no gradient
        sign_gen = torch.Generator().manual_seed(1000 + i)
        size_gen = torch.Generator().manual_seed(100_000 * (step + 1) + i)
        sign = torch.randint(0, 2, p.shape, generator=sign_gen).to(p.dtype) * 2 - 1
        size = torch.rand(p.shape, generator=size_gen, dtype=p.dtype) + 0.5
        out[name] = sign * size
    return out


def applied_rates(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler | None,
    cfg: OptConfig,
    wd_of: dict[str, float],
    grad_scale: dict[str, float] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Run ``STEPS`` steps; per step, the element-wise effective rate of every trained tensor.

    ``grad_scale`` multiplies a tensor's gradient before the step (used only to show the
    check tells a gradient multiplier from a rate multiplier).
    """
    refs = {name: Reference(cfg.kind, cfg.hyper, wd_of[name]) for name, _ in model.named_parameters()}
    out = []
    for step in range(STEPS):
        grads = gradients(model, step)
        before = {}
        for name, p in model.named_parameters():
            if name in grads:
                p.grad = grads[name] * (grad_scale or {}).get(name, 1.0)
            before[name] = p.detach().clone()
        opt.step()
        rates = {}
        for name, p in model.named_parameters():
            if name not in grads:
                continue
            d = refs[name].direction(p.grad.detach(), before[name])
            rates[name] = -(p.detach() - before[name]) / d
        out.append(rates)
        if sched is not None:
            sched.step()
    return out


def mismatches(rates: list[dict[str, torch.Tensor]], expected: dict[str, float], rtol: float) -> list[str]:
    """Every (step, tensor) whose element-wise rate strays from ``expected * SCHEDULE[step]``."""
    bad = []
    for step, per_tensor in enumerate(rates):
        for name, lr in per_tensor.items():
            want = expected[name] * SCHEDULE[step]
            err = ((lr - want).abs() / want).max().item()
            if not err <= rtol:
                worst = lr.flatten()[((lr - want).abs()).flatten().argmax()].item()
                bad.append(f"step {step} {name}: got {worst!r}, should be {want!r} (rel err {err:.2e})")
    return bad


def built(cfg: OptConfig) -> tuple[torch.nn.Module, multilr.ParamGroups]:
    model = models.resnet18(width=4, seed=0).double()
    return model, multilr.build(model, make_spec(cfg), backend="torch")


def test_spec_gives_many_distinct_rates() -> None:
    """Guards the other tests against a plan so flat that any scaling would pass."""
    _, groups = built(OptConfig(torch.optim.SGD, "sgd", 0.1, 0.0, {}))
    plan = groups.plan
    trained = {lr for lr in plan.rates().values() if lr > 0}
    frozen = sorted(p.name for p in plan.params if p.frozen)
    assert len(trained) == 8, f"got {len(trained)} distinct rates, should be 8 [depths 0, 3..8; fc x10]"
    assert frozen and all(n.startswith("layer1.") for n in frozen), (
        f"got frozen {frozen}, should be exactly the layer1.* tensors"
    )
    assert len(frozen) == 12, f"got {len(frozen)} frozen tensors, should be 12 [layer1.*]"


@pytest.mark.parametrize("cfg", CONFIGS)
def test_applied_rate_equals_plan_times_schedule(cfg: OptConfig) -> None:
    model, groups = built(cfg)
    plan = groups.plan
    opt = cfg.opt(groups, **cfg.ctor)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: SCHEDULE[min(k, STEPS - 1)])
    wd_of = {p.name: p.weight_decay for p in plan.params}
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if plan.param(n).frozen}

    rates = applied_rates(model, opt, sched, cfg, wd_of)

    trained = [n for n, p in model.named_parameters() if not plan.param(n).frozen]
    assert sorted(rates[0]) == sorted(trained), (
        f"got updates for {len(rates[0])} tensors, should be {len(trained)} [{cfg.kind}: all non-frozen]"
    )
    bad = mismatches(rates, plan.rates(), cfg.rtol)
    assert not bad, (
        f"applied rate != plan rate x schedule for {len(bad)} (step, tensor) pairs:\n" + "\n".join(bad[:10])
    )
    # the ratio between any two tensors is the plan's ratio at every step
    for step, per_tensor in enumerate(rates):
        factors = [(lr / plan.rates()[n]).median().item() for n, lr in per_tensor.items()]
        spread = max(factors) / min(factors) - 1
        assert spread <= 1e-9, (
            f"got applied/plan factors from {min(factors)!r} to {max(factors)!r} at step {step}, "
            f"should all be {SCHEDULE[step]} [{cfg.kind}]"
        )
    for name, p in model.named_parameters():
        if name in frozen_before:
            assert not p.requires_grad, f"got requires_grad=True on {name}, should be False [frozen rule]"
            assert torch.equal(p.detach(), frozen_before[name]), (
                f"got {name} changed after {STEPS} steps, should be bit-identical [frozen, {cfg.kind}]"
            )


@pytest.mark.parametrize(
    "cfg",
    [CONFIGS[0], CONFIGS[3]],
    ids=["sgd", "adam"],
)
def test_update_check_catches_gradient_scaling(cfg: OptConfig) -> None:
    """Negative control: multipliers on the gradient with one shared lr must fail the check.

    This is what a backend that scaled gradients (hooks, ``grad *= scale``) instead of
    rates would do. For Adam the update hardly changes with the gradient's scale, so
    the measured rate is the base rate and every tensor whose plan scale is not 1
    is reported.
    """
    model, groups = built(cfg)
    plan = groups.plan
    for g in groups:
        if g["lr"] > 0:
            g["lr"] = cfg.lr  # one shared rate ...
    scale = {p.name: p.scale for p in plan.params}  # ... and the plan's scale on the gradient
    opt = cfg.opt(groups, **cfg.ctor)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: SCHEDULE[min(k, STEPS - 1)])
    wd_of = {p.name: p.weight_decay for p in plan.params}

    rates = applied_rates(model, opt, sched, cfg, wd_of, grad_scale=scale)

    flagged = {line.split()[2].rstrip(":") for line in mismatches(rates, plan.rates(), cfg.rtol)}
    should = {n for n in rates[0] if abs(scale[n] - 1) > 1e-12}
    assert should, "got no tensor with a scale other than 1, should be many [spec has decay and head rule]"
    assert flagged == should, (
        f"got {len(flagged)} tensors flagged, should be {len(should)} "
        f"[every tensor with scale != 1; missed: {sorted(should - flagged)[:5]}]"
    )


@pytest.mark.parametrize("cfg", CONFIGS)
def test_frozen_untouched_by_real_training(cfg: OptConfig) -> None:
    """Real forward/backward: frozen tensors get no gradient and never move."""
    model, groups = built(cfg)
    plan = groups.plan
    opt = cfg.opt(groups, **cfg.ctor)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 32, 32, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (4,), generator=gen)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for name, p in model.named_parameters():
        if plan.param(name).frozen:
            assert p.grad is None, f"got a gradient on {name}, should be None [frozen, {cfg.kind}]"
            assert torch.equal(p.detach(), start[name]), (
                f"got {name} changed, should be bit-identical after 3 steps [frozen, {cfg.kind}]"
            )
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), start[n])]
    trained = [n for n in start if not plan.param(n).frozen]
    assert sorted(moved) == sorted(trained), (
        f"got {len(moved)} tensors moved, should be the {len(trained)} non-frozen ones [{cfg.kind}]"
    )
