"""multilr.schedules, framework-free: shapes, validation, mapping form.

That each shape equals PyTorch's scheduler of the same name, step by step, is tested on
the torch side (backends/torch/tests/test_schedule_shapes.py).
"""

from __future__ import annotations

import math

import pytest

from multilr import SpecError
from multilr.schedules import (
    SGDR,
    Chain,
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
    schedule_from_dict,
    schedule_to_dict,
)


def test_simple_shapes() -> None:
    assert Constant(0.5).factors(3) == [0.5, 0.5, 0.5]
    assert Step(2, 0.5).factors(5) == [1, 1, 0.5, 0.5, 0.25]
    assert MultiStep((3, 1), 0.1).factors(4) == pytest.approx([1, 0.1, 0.1, 0.01])
    assert Exponential(0.5).factors(3) == [1, 0.5, 0.25]
    assert Polynomial(4, power=2, final=0.2).factors(6) == pytest.approx(
        [1, 0.2 + 0.8 * 0.5625, 0.2 + 0.8 * 0.25, 0.2 + 0.8 * 0.0625, 0.2, 0.2]
    )


def test_cosine_keeps_its_floor_after_total() -> None:
    c = Cosine(4, final=0.1)
    assert c.factors(6) == pytest.approx(
        [
            1,
            0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2,
            0.55,
            0.1 + 0.9 * (1 + math.cos(3 * math.pi / 4)) / 2,
            0.1,
            0.1,
        ]
    )


def test_sgdr_periods_grow_and_peaks_decay() -> None:
    s = SGDR(period=2, period_mult=2, cycle_mult=0.5)
    f = s.factors(7)
    assert f[0] == 1 and f[1] == pytest.approx(0.5)  # first period: 2 steps
    assert f[2] == pytest.approx(0.5)  # restart at half the peak
    assert f[6] == pytest.approx(0.25)  # third period starts at step 2 + 4
    assert f[3] < f[2] and f[5] < f[4]


def test_one_cycle_peaks_at_the_planned_rate() -> None:
    f = OneCycle(10, pct_start=0.3, div=25, final_div=1e4).factors(12)
    assert f[0] == pytest.approx(1 / 25)
    assert max(f) == pytest.approx(1.0) and f.index(max(f)) == 2  # step pct_start * total - 1
    assert f[9] == pytest.approx(1 / 25 / 1e4)
    assert f[11] == pytest.approx(f[9])  # stays at the floor after total
    three = OneCycle(10, pct_start=0.3, three_phase=True, anneal="linear").factors(10)
    assert three[4] == pytest.approx(1 / 25) and three[9] == pytest.approx(1 / 25 / 1e4)


def test_cyclical_modes() -> None:
    tri = Cyclical(0.1, 1.0, step_up=2).factors(9)
    assert tri == pytest.approx([0.1, 0.55, 1.0, 0.55, 0.1, 0.55, 1.0, 0.55, 0.1])
    tri2 = Cyclical(0.0, 1.0, step_up=2, mode="triangular2").factors(7)
    assert tri2[2] == 1.0 and tri2[6] == pytest.approx(0.5)
    exp = Cyclical(0.0, 1.0, step_up=2, mode="exp_range", gamma=0.9).factors(3)
    assert exp[2] == pytest.approx(0.81)


def test_warmup_and_chain() -> None:
    w = Warmup(Step(1, 0.5), steps=4, start=0.2)
    assert w.factors(6) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 0.5])
    e = Warmup(Constant(), steps=2, start=0.01, mode="exp")
    assert e.factors(3) == pytest.approx([0.01, 0.1, 1.0])
    # a warm-up rises to where the schedule after it starts, not to 1
    assert Warmup(Constant(0.5), steps=2).factors(3) == pytest.approx([0.005, 0.2525, 0.5])
    c = Constant(0.1).then(Exponential(0.5), at=2).then(Constant(0.3), at=4)
    assert c.factors(5) == pytest.approx([0.1, 0.1, 1.0, 0.5, 0.3])


def test_function_is_checked_as_it_runs() -> None:
    seed_001 = Function(lambda i: 1 / (i + 1), name="1/(i+1)")
    assert seed_001.factors(3) == pytest.approx([1, 0.5, 1 / 3])
    bad = Function(lambda i: 1.0 - i, name="falls below zero")
    assert bad.factor(1) == 0.0
    with pytest.raises(SpecError, match=r"Function\(falls below zero\) gives factor -1.0 at step 2"):
        bad.factor(2)
    with pytest.raises(SpecError, match="factor nan at step 0"):
        Function(lambda i: float("nan")).factor(0)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Step(0), "Step.step_size must be >= 1"),
        (lambda: Step(2, gamma=-1), "Step.gamma must be >= 0"),
        (lambda: Cosine(10, final=float("inf")), "Cosine.final must be finite"),
        (lambda: OneCycle(10, pct_start=1.5), "OneCycle.pct_start must be <= 1.0"),
        (lambda: OneCycle(10, anneal="cosine"), "OneCycle.anneal must be 'cos' or 'linear'"),
        (lambda: Cyclical(0.1, 1, step_up=2, mode="tri"), "Cyclical.mode must be"),
        (lambda: Warmup(Constant(), steps=2.5), "Warmup.steps must be an integer"),
        (lambda: Chain((Constant(), Constant()), ()), "one milestone fewer than parts"),
        (lambda: Chain((Constant(), Constant(), Constant()), (3, 2)), "increasing"),
        # equal milestones would skip the part between them without a word
        (lambda: Chain((Constant(), Constant(0.5), Constant(0.1)), (3, 3)), r"increasing and > 0, got \[3, 3\]"),
        # an exponential warm-up from 0 stays at 0 for all its steps
        (lambda: Warmup(Cosine(10), steps=4, start=0.0, mode="exp"), "Warmup.start must be > 0"),
        (lambda: OneCycle(1), "OneCycle.total must be >= 2"),  # one step cannot rise and fall
        (lambda: SGDR(2, cycle_mult=0.0), "SGDR.cycle_mult must be > 0"),  # every later peak 0
        (lambda: Chain((Constant(), Constant()), (2.7,)), r"Chain.milestones\[0\] must be an integer"),
        (lambda: Chain((Constant(), Constant()), ("3",)), r"Chain.milestones\[0\] must be an integer"),
        (lambda: Constant().factor(-1), "step must be >= 0"),
    ],
)
def test_bad_values_name_the_field(make, match) -> None:
    with pytest.raises(SpecError, match=match):
        make()


@pytest.mark.parametrize(
    "schedule",
    [
        Warmup(Cosine(100, final=0.01), steps=10),
        SGDR(10, 2, 0.5),
        OneCycle(50, anneal="linear", three_phase=True),
        Cyclical(0.1, 1.0, 5, 3, "exp_range", 0.99),
        Constant(0.1).then(MultiStep((5, 10), 0.5), at=3),
        Polynomial(20, 2.0, 0.1),
    ],
    ids=lambda s: type(s).__name__,
)
def test_mapping_form_round_trips(schedule) -> None:
    data = schedule_to_dict(schedule)
    assert schedule_from_dict(data) == schedule
    assert schedule_from_dict(data).factors(30) == schedule.factors(30)


def test_mapping_form_errors_name_the_key() -> None:
    with pytest.raises(SpecError, match=r"schedule.kind 'cosin' unknown \(did you mean 'cosine'\?\)"):
        schedule_from_dict({"kind": "cosin", "total": 10})
    with pytest.raises(SpecError, match="totl"):
        schedule_from_dict({"kind": "cosine", "totl": 10})
    with pytest.raises(SpecError, match=r"schedule.inner \(step\).*step_size"):
        schedule_from_dict({"kind": "warmup", "steps": 3, "inner": {"kind": "step"}})
    with pytest.raises(SpecError, match="no mapping"):
        schedule_to_dict(Function(abs))


@pytest.mark.parametrize(
    "data",
    [{"kind": "sgdr", "period": 1, "cycle_mult": 1e300}, {"kind": "exponential", "gamma": 1e300}],
    ids=["sgdr-cycle-mult", "exponential-gamma"],
)
def test_a_factor_past_float_range_is_refused_not_an_overflow(data: dict) -> None:
    from multilr.schedules import schedule_from_dict

    with pytest.raises(SpecError, match="factors must be finite"):
        schedule_from_dict(data).factor(3)
