"""Each multilr schedule equals PyTorch's scheduler of the same shape, and keeps group ratios.

PyTorch's scheduler runs on a group whose ``initial_lr`` is 1, so its rate *is* the factor;
multilr's shape must give the same factor at every step. Then the multilr schedule drives
real multilr groups through ``LambdaLR``: every group's rate stays its planned rate x factor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as S

import multilr
from multilr import LayerDecay, Prefix, Rule, Spec
from multilr.schedules import (
    SGDR,
    Constant,
    Cosine,
    Cyclical,
    Exponential,
    MultiStep,
    OneCycle,
    Polynomial,
    Schedule,
    Step,
    Warmup,
)

STEPS = 40


def _torch_rates(make: Callable[[torch.optim.Optimizer], Any], steps: int = STEPS) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


PAIRS: dict[str, tuple[Schedule, Callable[[Any], Any]]] = {
    "step": (Step(7, 0.5), lambda o: S.StepLR(o, 7, 0.5)),
    "multistep": (MultiStep((5, 12, 30), 0.3), lambda o: S.MultiStepLR(o, [5, 12, 30], 0.3)),
    "exponential": (Exponential(0.93), lambda o: S.ExponentialLR(o, 0.93)),
    "cosine": (Cosine(STEPS, final=0.05), lambda o: S.CosineAnnealingLR(o, STEPS, eta_min=0.05)),
    "sgdr": (SGDR(5, 2, final=0.01), lambda o: S.CosineAnnealingWarmRestarts(o, 5, 2, eta_min=0.01)),
    "one_cycle_cos": (
        OneCycle(STEPS),
        lambda o: S.OneCycleLR(o, 1.0, total_steps=STEPS, cycle_momentum=False),
    ),
    "one_cycle_linear_3": (
        OneCycle(STEPS, pct_start=0.25, div=10, final_div=100, anneal="linear", three_phase=True),
        lambda o: S.OneCycleLR(
            o,
            1.0,
            total_steps=STEPS,
            pct_start=0.25,
            div_factor=10,
            final_div_factor=100,
            anneal_strategy="linear",
            three_phase=True,
            cycle_momentum=False,
        ),
    ),
    "triangular": (Cyclical(0.1, 1.0, 4, 6), lambda o: S.CyclicLR(o, 0.1, 1.0, 4, 6, cycle_momentum=False)),
    "triangular2": (
        Cyclical(0.1, 1.0, 3, mode="triangular2"),
        lambda o: S.CyclicLR(o, 0.1, 1.0, 3, mode="triangular2", cycle_momentum=False),
    ),
    "exp_range": (
        Cyclical(0.1, 1.0, 3, mode="exp_range", gamma=0.97),
        lambda o: S.CyclicLR(o, 0.1, 1.0, 3, mode="exp_range", gamma=0.97, cycle_momentum=False),
    ),
    "polynomial": (Polynomial(30, power=2.0), lambda o: S.PolynomialLR(o, total_iters=30, power=2.0)),
    "warmup_linear": (
        Warmup(Constant(), steps=8, start=0.1),
        lambda o: S.LinearLR(o, start_factor=0.1, total_iters=8),
    ),
    "warmup_then_exponential": (
        Warmup(Exponential(0.9), steps=5, start=0.2),
        lambda o: S.SequentialLR(
            o, [S.LinearLR(o, start_factor=0.2, total_iters=5), S.ExponentialLR(o, 0.9)], milestones=[5]
        ),
    ),
}


@pytest.mark.parametrize("name", PAIRS)
def test_shape_equals_pytorch(name: str) -> None:
    ours, theirs = PAIRS[name]
    assert ours.factors(STEPS) == pytest.approx(_torch_rates(theirs), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", PAIRS)
def test_lambda_lr_with_a_multilr_schedule_keeps_every_group_ratio(name: str) -> None:
    schedule = PAIRS[name][0]
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    spec = Spec(
        lr=0.1, rules=[Rule(Prefix("2"), lr_mult=10, name="head")], layer_decay=LayerDecay(0.5, depth="top")
    )
    groups = multilr.build(model, spec, backend="torch")
    planned = [g["lr"] for g in groups]
    assert len(set(planned)) >= 3
    opt = torch.optim.SGD(groups)
    sched = S.LambdaLR(opt, schedule)
    for step in range(STEPS):
        f = schedule.factor(step)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr * f for lr in planned], rel=1e-12)
        opt.step()
        sched.step()
