"""multilr_oneflow.graph_scheduler: multilr schedules as schedulers nn.Graph can run.

The compiled-in rates of real graphs are checked by the conformance suite (``ml_*`` cases
of ``test_conformance.py``). Here, quickly and for every shape: the scheduler's own
formulas, as ``rates_at`` evaluates them the way the graph does, give the schedule's
factors for every group at every step; and the refusals.
"""

from __future__ import annotations

import multilr_oneflow
import pytest

import multilr
from multilr import Prefix, Rule, Spec, UnsupportedFeatureError
from multilr.schedules import (
    SGDR,
    Constant,
    Cosine,
    Cyclical,
    Exponential,
    Function,
    MultiStep,
    OneCycle,
    Polynomial,
    Step,
    Warmup,
)

flow = multilr_oneflow.import_oneflow()
STEPS = 40

SHAPES = {
    "constant": Constant(0.3),
    "step": Step(7, 0.5),
    "multistep": MultiStep((5, 12), 0.3),
    "exponential": Exponential(0.93),
    "cosine": Cosine(30, final=0.05),
    "sgdr": SGDR(5, 2, cycle_mult=0.8, final=0.01),
    "polynomial": Polynomial(30, power=2.0, final=0.1),
    "one_cycle_linear": OneCycle(STEPS, pct_start=0.25, anneal="linear"),
    "one_cycle_linear_3": OneCycle(STEPS, pct_start=0.25, anneal="linear", three_phase=True),
    "warmup_cosine": Warmup(Cosine(30, final=0.1), steps=5, start=0.1),
    "chain": Constant(0.1).then(Warmup(Exponential(0.9), steps=4), at=3).then(Step(2, 0.5), at=20),
    # tabulated (no built-in form)
    "one_cycle_cos": OneCycle(STEPS),
    "cyclical": Cyclical(0.1, 1.0, 3, mode="triangular2"),
    "function": Function(lambda t: 1.0 / (t + 1), name="seed 001"),
    "warmup_exp": Warmup(Constant(), steps=4, mode="exp"),
}


def _optimizer():
    model = flow.nn.Sequential(flow.nn.Linear(3, 3), flow.nn.Linear(3, 2))
    groups = multilr.build(
        model, Spec(lr=0.1, rules=[Rule(Prefix("1"), lr_mult=10, name="head")]), backend="oneflow-graph"
    )
    return flow.optim.SGD(groups), groups.plan


@pytest.mark.parametrize("name", SHAPES)
def test_compiled_scheduler_gives_the_schedule_factors_per_group(name: str) -> None:
    schedule = SHAPES[name]
    opt, plan = _optimizer()
    sched = multilr_oneflow.graph_scheduler(opt, schedule, total_steps=STEPS)
    multilr_oneflow.check_scheduler(sched)  # add_optimizer accepts it
    for step in range(STEPS):
        got = multilr_oneflow.rates_at(plan, step, sched)
        want = {g.name: g.lr * schedule.factor(step) for g in plan.groups}
        assert got == pytest.approx(want, rel=1e-9, abs=1e-15), f"step {step}"


def test_shapes_with_a_built_in_form_need_no_length() -> None:
    opt, _ = _optimizer()
    for name in ("step", "cosine", "sgdr", "polynomial", "one_cycle_linear", "warmup_cosine", "chain"):
        multilr_oneflow.graph_scheduler(opt, SHAPES[name])


@pytest.mark.parametrize("name", ["one_cycle_cos", "cyclical", "function", "warmup_exp"])
def test_without_a_length_the_rest_is_refused_with_an_alternative(name: str) -> None:
    opt, _ = _optimizer()
    with pytest.raises(UnsupportedFeatureError, match="pass total_steps="):
        multilr_oneflow.graph_scheduler(opt, SHAPES[name])


def test_eager_groups_are_refused() -> None:
    model = flow.nn.Sequential(flow.nn.Linear(3, 3), flow.nn.Linear(3, 2))
    groups = multilr.build(model, Spec(lr=0.1, rules=[Rule(Prefix("1"), lr_mult=10)]), backend="oneflow")
    with pytest.raises(UnsupportedFeatureError, match="LambdaLR"):
        multilr_oneflow.graph_scheduler(flow.optim.SGD(groups), Step(2))
