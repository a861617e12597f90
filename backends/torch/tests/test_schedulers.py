"""torch's learning-rate schedulers keep the plan's ratios between groups.

Each scheduler drives the groups ``multilr.build`` emitted and, in lockstep, a
one-tensor reference optimizer at ``lr=1.0``: the reference's ``lr`` is the schedule
factor, and after every step each trainable group's ``lr`` must equal its plan rate
times that factor (frozen groups stay at exactly 0). A schedule that never moves
would pass trivially, so each test also asserts the factor changed.

``OneCycleLR`` needs ``max_lr`` as a per-group list taken from the plan; with a scalar
it overwrites every group's rate with the same value (frozen groups included), which
``test_onecycle_scalar_max_lr_collapses_groups`` documents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import models
import pytest
import torch
from torch.optim import lr_scheduler as S

import multilr
from multilr import LayerDecay, Prefix, Rule, Spec

STEPS = 8
BASE = 0.1


def build() -> tuple[torch.nn.Module, multilr.ParamGroups, torch.optim.Optimizer]:
    model = models.resnet18(width=4, seed=0)
    spec = Spec(
        lr=BASE,
        weight_decay=1e-4,
        hyper={"momentum": 0.9},
        rules=[
            Rule(Prefix("fc"), lr_mult=10, name="head"),
            Rule(Prefix("layer1"), frozen=True, name="frozen-layer1"),
        ],
        layer_decay=LayerDecay(0.8),
        no_decay=("bias", "norm"),
    )
    groups = multilr.build(model, spec, backend="torch")
    return model, groups, torch.optim.SGD(groups)


def reference_optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)


# (optimizer, per-group max lrs or [1.0] for the reference) -> scheduler
Factory = Callable[[torch.optim.Optimizer, list[float]], Any]

SCHEDULERS = [
    pytest.param(lambda o, top: S.StepLR(o, step_size=2, gamma=0.5), id="steplr"),
    pytest.param(lambda o, top: S.ExponentialLR(o, gamma=0.9), id="exponential"),
    pytest.param(lambda o, top: S.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.0), id="cosine"),
    pytest.param(lambda o, top: S.LambdaLR(o, lambda k: 1.0 / (k + 1)), id="lambda"),
    pytest.param(
        lambda o, top: S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=4), id="linear-warmup"
    ),
    pytest.param(
        lambda o, top: S.SequentialLR(
            o,
            [
                S.LinearLR(o, start_factor=0.1, total_iters=3),
                S.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.0),
            ],
            milestones=[3],
        ),
        id="warmup-then-cosine",
    ),
    pytest.param(
        lambda o, top: S.OneCycleLR(o, max_lr=top if len(top) > 1 else top[0], total_steps=STEPS + 1),
        id="onecycle-per-group-max-lr",
    ),
    pytest.param(
        lambda o, top: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=0), id="reduce-on-plateau"
    ),
]


def advance(sched: Any, step: int) -> None:
    if isinstance(sched, S.ReduceLROnPlateau):
        sched.step(float(step))  # a loss that only rises: reduce every step
    else:
        sched.step()


@pytest.mark.parametrize("make", SCHEDULERS)
def test_scheduler_keeps_plan_ratios(make: Factory) -> None:
    _, groups, opt = build()
    plan = groups.plan
    names = [g["name"] for g in opt.param_groups]
    assert names == [g.name for g in plan.groups], (
        f"got optimizer groups {names}, should be the plan's groups in order"
    )
    max_lrs = [plan.lr_of(g) for g in plan.groups]  # the per-group list the docs recommend
    sched = make(opt, max_lrs)
    ref = reference_optimizer()
    ref_sched = make(ref, [1.0])
    factors = set()
    for step in range(STEPS + 1):  # step 0: the rates right after the scheduler is made
        factor = ref.param_groups[0]["lr"]
        factors.add(round(factor, 12))
        for g in opt.param_groups:
            pg = plan.group(g["name"])
            if pg.frozen:
                assert g["lr"] == 0.0, f"got lr {g['lr']!r} on frozen group {pg.name!r}, should be 0.0"
                continue
            want = pg.lr * factor
            assert g["lr"] == pytest.approx(want, rel=1e-12), (
                f"got lr {g['lr']!r} in group {pg.name!r} at step {step}, should be {want!r} "
                f"[plan lr {pg.lr!r} x schedule factor {factor!r}]"
            )
        opt.step()
        ref.step()
        advance(sched, step)
        advance(ref_sched, step)
    assert len(factors) > 2, f"got schedule factors {sorted(factors)}, should take several values"


def test_onecycle_scalar_max_lr_collapses_groups() -> None:
    """The torch trap: ``OneCycleLR(max_lr=scalar)`` gives every group the same rate.

    It overwrites each group's ``lr`` (and ``initial_lr``) from ``max_lr``, so the plan's
    ratios are gone and even the frozen groups get a non-zero rate. Pass
    ``max_lr=[plan.lr_of(g) for g in plan.groups]`` instead.
    """
    _, groups, opt = build()
    plan = groups.plan
    S.OneCycleLR(opt, max_lr=BASE, total_steps=STEPS)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    distinct = set(lrs.values())
    assert len(distinct) == 1, f"got {len(distinct)} distinct rates, should be 1 [scalar max_lr collapses]"
    assert len({g.lr for g in plan.groups}) > 1, "got a flat plan, should have several rates [test set-up]"
    frozen = [n for n in lrs if plan.group(n).frozen]
    assert frozen and all(lrs[n] > 0 for n in frozen), (
        f"got frozen-group lrs {[lrs[n] for n in frozen]}, should be > 0 [scalar max_lr overwrites them]"
    )
