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


@pytest.mark.parametrize("name", ["one_cycle_cos", "cyclical", "function", "warmup_exp"])
def test_a_tabulated_schedule_holds_its_last_value_after_the_run(name: str) -> None:
    # documented: past total_steps the table has no more rows; the last one holds. Read
    # from OneFlow's own scheduler, stepped for real, and from rates_at (graph_recorder's)
    schedule = SHAPES[name]
    opt, plan = _optimizer()
    sched = multilr_oneflow.graph_scheduler(opt, schedule, total_steps=STEPS)
    last = {g.name: g.lr * schedule.factor(STEPS - 1) for g in plan.groups}
    for step in range(2 * STEPS):
        if step >= STEPS - 1:
            real = {g["name"]: g["lr"] * g["lr_scale"] for g in opt.param_groups}  # as the graph does
            assert real == pytest.approx(last, rel=1e-9, abs=1e-15), step
            modelled = multilr_oneflow.rates_at(plan, step, sched)
            assert modelled == pytest.approx(last, rel=1e-9, abs=1e-15), step
        opt.step()
        sched.step()


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


def _options(opt) -> list[dict]:
    return [dict(g.options) for g in opt.param_groups]


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param(Constant(2.0), id="constant-2"),
        pytest.param(Cyclical(0.5, 2.0, 3), id="cyclical-to-2"),
        pytest.param(Constant(0.5).then(Constant(1.5), at=3), id="chain-to-1.5"),
        pytest.param(Warmup(Constant(), steps=4, start=3.0), id="warmup-from-3"),
    ],
)
def test_a_factor_above_one_is_refused_and_the_optimizer_untouched(schedule) -> None:
    # OneFlow's ConstantLR / LinearLR raise a bare ValueError on such factors, after the
    # schedulers made before it have already rewritten the groups' lr
    opt, _ = _optimizer()
    before = _options(opt)
    with pytest.raises(UnsupportedFeatureError, match=r"reaches factor .* take factors in \[0, 1\]"):
        multilr_oneflow.graph_scheduler(opt, schedule, total_steps=12)
    assert _options(opt) == before


def test_a_scheduler_failing_half_way_leaves_the_optimizer_as_it_was(monkeypatch) -> None:
    # fault injection: the second of two real segments fails while it is made, after the
    # first has set every group's lr and initial_lr
    from multilr_oneflow import _schedules

    def fail(optimizer, base):
        raise RuntimeError("made to fail")

    real = _schedules._segments(Constant(0.5), None)[0]
    monkeypatch.setattr(
        _schedules,
        "_segments",
        lambda s, total: [_schedules._Segment(real.make, 3), _schedules._Segment(fail, None)],
    )
    opt, _ = _optimizer()
    before = _options(opt)
    with pytest.raises(RuntimeError, match="made to fail"):
        multilr_oneflow.graph_scheduler(opt, Step(2))
    assert _options(opt) == before
    monkeypatch.undo()
    sched = multilr_oneflow.graph_scheduler(opt, Polynomial(4, final=0.5))  # a retry reads the real base
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1]
    assert multilr_oneflow.rates_at(_optimizer()[1], 10, sched)["head"] == pytest.approx(0.5)
