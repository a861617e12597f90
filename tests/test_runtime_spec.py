"""The spec's runtime parts, framework-free: a rule's own schedule, staged unfreezing, the spec schedule.

Planned against hand-made parameter lists; the rates they give are checked through
``planned_rates`` (the formula the Controller applies, tested on real optimizers in
the backends' controller tests).
"""

from __future__ import annotations

import math

import pytest

import multilr
from multilr import LayerDecay, Prefix, Rule, Spec, SpecError, Stage, planned_rates
from multilr.errors import ConflictError
from multilr.schedules import SGDR, Constant, Cosine, Function, Inverse, Step

from ._infos import info, resnet_like

YAML = """
lr: 0.01
schedule: {kind: sgdr, period: 4}
rules:
  - {prefix: conv1, frozen: true, name: stem}
  - {glob: "layer4.*", lr_mult: 0.1, name: top}
  - {prefix: fc, lr_mult: 1, name: head, schedule: {kind: step, step_size: 10, gamma: 0.9}}
stages:
  - {at: 6, unfreeze: [top], lr_mult: 0.5}
  - {epoch: 2, unfreeze: [stem], name: late}
"""


def test_runtime_parts_round_trip_through_yaml_and_json() -> None:
    spec = Spec.from_yaml(YAML)
    assert spec.schedule == SGDR(4)
    assert spec.rules[2].schedule == Step(10, 0.9)
    assert spec.stages == (
        Stage(("top",), at=6, lr_mult=0.5, name="stage0"),
        Stage(("stem",), epoch=2, name="late"),
    )
    assert Spec.from_dict(spec.to_dict()) == spec
    assert Spec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"stages": [{"at": 5, "unfreeze": ["haed"]}]},
            "stages[0] unfreezes 'haed', which names no rule (did you mean 'head'",
        ),
        ({"stages": [{"at": 5}]}, "stages[0]: give exactly one of 'unfreeze'"),
        ({"stages": [{"unfreeze": ["head"]}]}, "stages[0]: give exactly one of 'at'"),
        ({"stages": [{"at": 1, "epoch": 1, "unfreeze": ["head"]}]}, "exactly one of 'at'"),
        ({"stages": [{"at": -1, "unfreeze": ["head"]}]}, "at must be an integer >= 0, got -1"),
        ({"stages": [{"at": 1, "unfreeze": ["head"], "lr_mult": -2}]}, "lr_mult"),
        ({"stages": [{"at": 1, "from_depth": 1, "unfreeze": ["head"]}]}, "exactly one of 'unfreeze'"),
        ({"stages": [{"at": 1, "unfreez": ["head"]}]}, "unfreez"),
        (
            {
                "stages": [
                    {"at": 1, "unfreeze": ["head"], "name": "a"},
                    {"at": 2, "unfreeze": ["head"], "name": "a"},
                ]
            },
            "two stages are named 'a'",
        ),
        ({"schedule": {"kind": "cosin", "total": 10}}, "schedule.kind 'cosin' unknown"),
        ({"rules": [{"prefix": "fc", "schedule": {"kind": "step"}, "name": "head"}]}, "step_size"),
    ],
    ids=[
        "unknown-rule",
        "no-target",
        "no-time",
        "both-times",
        "negative-step",
        "negative-mult",
        "two-targets",
        "misspelt-key",
        "duplicate-names",
        "unknown-schedule",
        "schedule-missing-field",
    ],
)
def test_bad_runtime_parts_are_refused_naming_the_key(data: dict, message: str) -> None:
    base = {"lr": 0.1, "rules": [{"prefix": "fc", "lr_mult": 10, "name": "head"}]}
    with pytest.raises(SpecError, match=None) as err:
        Spec.from_dict({**base, **data})
    assert message in str(err.value), f"got {err.value!s}, should contain {message!r}"


def test_a_rule_that_only_sets_a_schedule_is_a_rule() -> None:
    assert Rule("fc.*", schedule={"kind": "exponential", "gamma": 0.5}).schedule.factor(2) == 0.25


def test_groups_never_straddle_a_stage_or_a_schedule() -> None:
    infos = [info("a.w"), info("b.w"), info("c.w"), info("d.w")]
    spec = Spec(
        lr=0.1,
        rules=[
            Rule("b.*", lr_mult=1, name="decaying", schedule=Step(2, 0.5)),
            Rule("c.*", lr_mult=1, name="late"),
        ],
        stages=[Stage(("late",), at=3)],
    )
    plan = multilr.plan(infos, spec)
    # a.w and d.w share rate, decay and flags: one group; b.w has its own schedule, c.w its stage
    assert [(g.name, g.params, g.frozen, g.stage) for g in plan.groups] == [
        ("default", ("a.w", "d.w"), False, None),
        ("decaying", ("b.w",), False, None),
        ("late/stage0", ("c.w",), True, "stage0"),
    ]
    assert plan.group("decaying").schedule == Step(2, 0.5)
    assert plan.param("c.w").frozen_source == "stage0 (until step 3)"
    assert "then decaying's Step(step_size=2, gamma=0.5)" in plan.param("b.w").rate_source
    assert "until step 3" in plan.summary(rich=False)
    as_dict = plan.to_dict()["groups"]
    assert as_dict[1]["schedule"] == {"kind": "step", "step_size": 2, "gamma": 0.5}
    assert as_dict[2]["stage"] == "stage0"


def test_equal_schedules_of_two_rules_share_a_group() -> None:
    spec = Spec(
        lr=0.1,
        rules=[Rule("a.*", name="x", schedule=Step(2, 0.5)), Rule("b.*", name="y", schedule=Step(2, 0.5))],
    )
    assert len(multilr.plan([info("a.w"), info("b.w")], spec).groups) == 1


def test_two_rules_giving_one_tensor_different_schedules_conflict() -> None:
    spec = Spec(
        lr=0.1,
        rules=[Rule("a.*", name="x", schedule=Step(2, 0.5)), Rule("*.w", name="y", schedule=Step(3, 0.5))],
    )
    with pytest.raises(ConflictError, match=r"'a\.w': rules 'x' .* and 'y' .* both set its schedule"):
        multilr.plan([info("a.w"), info("b.w")], spec)
    higher = Rule("*.w", name="y", schedule=Step(3, 0.5), priority=1)
    plan = multilr.plan([info("a.w"), info("b.w")], Spec(lr=0.1, rules=[spec.rules[0], higher]))
    assert plan.groups[0].schedule == Step(3, 0.5)


def test_a_stage_unfreezes_what_a_rule_froze_and_the_rest_stays_frozen() -> None:
    infos = resnet_like()
    spec = Spec(
        lr=0.01,
        rules=[
            Rule(Prefix("layer4"), frozen=True, name="top"),
            Rule(Prefix("layer1"), frozen=True, name="low"),
            Rule(Prefix("fc"), lr_mult=10, name="head"),
        ],
        stages=[Stage(("top",), at=5, lr_mult=0.1)],
    )
    plan = multilr.plan(infos, spec)
    top = plan.group("top/stage0")
    assert top.frozen and top.stage == "stage0"
    assert all(p.startswith("layer4.") for p in top.params)
    low = plan.group("low/frozen")
    assert low.frozen and low.stage is None
    rates = planned_rates(plan, 7)
    assert rates.rates["top/stage0"] == (0.0,) * 5 + (0.001, 0.001)  # 0.01 x 0.1 from step 5
    assert rates.rates["low/frozen"] == (0.0,) * 7
    assert rates.rates["head"] == (0.1,) * 7


def test_from_depth_stages_unfreeze_from_the_top_down_like_freeze_to() -> None:
    infos = resnet_like()
    spec = Spec(
        lr=1.0,
        layer_decay=LayerDecay(0.1, depth="blocks"),  # seed 004: 10x lower per block going down
        stages=[Stage(from_depth=-1, at=0), Stage(from_depth=-2, at=2), Stage(from_depth=0, at=4)],
    )
    plan = multilr.plan(infos, spec)
    top = plan.max_depth
    assert top is not None
    seen = planned_rates(plan, 5)
    by_depth = {plan.param(g.params[0]).depth: seen.rates[g.name] for g in plan.groups}
    assert by_depth[top] == (1.0,) * 5  # the head trains from step 0
    assert by_depth[top - 1] == (0.0, 0.0, 0.1, 0.1, 0.1)
    for d in range(top - 1):
        expected = 0.1 ** (top - d)
        assert by_depth[d][:4] == (0.0,) * 4
        assert math.isclose(by_depth[d][4], expected), (
            f"got {by_depth[d][4]} at depth {d}, should be {expected}"
        )


def test_epoch_stages_need_steps_per_epoch() -> None:
    spec = Spec(lr=0.1, rules=[Rule("a.*", frozen=True, name="a")], stages=[Stage(("a",), epoch=2)])
    plan = multilr.plan([info("a.w"), info("b.w")], spec)
    with pytest.raises(SpecError, match="starts at epoch 2: give steps_per_epoch"):
        planned_rates(plan, 8)
    rates = planned_rates(plan, 8, steps_per_epoch=3).rates["a/stage0"]
    assert rates == (0.0,) * 6 + (0.1, 0.1)


def test_an_epoch_stage_and_a_step_stage_on_one_tensor_are_refused() -> None:
    spec = Spec(
        lr=0.1,
        rules=[Rule("a.*", frozen=True, name="a")],
        stages=[Stage(("a",), epoch=2), Stage(from_depth=0, at=3)],
    )
    with pytest.raises(SpecError, match="use steps for both, or epochs for both"):
        multilr.plan([info("a.w"), info("b.w")], spec)


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        pytest.param(Stage(("a",), epoch=2, lr_mult=2), Stage(from_depth=0, at=0, lr_mult=3), "stage1",
                     id="step-0-beats-epoch-2"),
        pytest.param(Stage(("a",), epoch=0, lr_mult=2), Stage(from_depth=0, at=4, lr_mult=3), "stage0",
                     id="epoch-0-beats-step-4"),
        pytest.param(Stage(("a",), at=0, lr_mult=2), Stage(from_depth=0, epoch=0, lr_mult=3), "stage0",
                     id="both-at-0-first-listed"),
    ],
)
def test_a_stage_at_0_may_meet_the_other_unit(first: Stage, second: Stage, winner: str) -> None:
    # step 0 is epoch 0 for any epoch length, so the order is known
    spec = Spec(lr=0.1, rules=[Rule("a.*", frozen=True, name="a")], stages=[first, second])
    plan = multilr.plan([info("a.w"), info("b.w")], spec)
    assert plan.group(plan.param("a.w").group).stage == winner
    mult = (first if winner == "stage0" else second).lr_mult
    assert planned_rates(plan, 1, steps_per_epoch=3).rates[f"a/{winner}"] == (0.1 * mult,)


def test_a_stage_rate_that_overflows_is_refused_at_plan_time() -> None:
    spec = Spec(lr=10.0, rules=[Rule("a.*", frozen=True, name="a")], stages=[Stage(("a",), at=1, lr_mult=1e308)])
    with pytest.raises(SpecError, match=r"stage 'stage0': lr_mult 1e\+308 x the planned rate 10\.0 of parameter 'a\.w'"):
        multilr.plan([info("a.w"), info("b.w")], spec)


def test_the_earliest_stage_wins() -> None:
    spec = Spec(
        lr=0.1,
        rules=[Rule("a.*", frozen=True, name="a")],
        stages=[Stage(("a",), at=5, lr_mult=2), Stage(("a",), at=1, lr_mult=3)],
    )
    plan = multilr.plan([info("a.w"), info("b.w")], spec)
    assert planned_rates(plan, 3).rates["a/stage1"] == (0.0, 0.1 * 3, 0.1 * 3)


def test_planned_rates_multiply_the_spec_schedule_and_the_rules_own() -> None:
    spec = Spec(
        lr=1.0,
        schedule=Inverse(),
        rules=[Rule("a.*", lr_mult=0.5, name="a", schedule=Step(2, 0.1))],
    )
    plan = multilr.plan([info("a.w"), info("b.w")], spec)
    rates = planned_rates(plan, 4).rates
    assert rates["default"] == (1.0, 1 / 2, 1 / 3, 1 / 4)
    assert rates["a"] == pytest.approx((0.5, 0.25, 0.5 / 3 * 0.1, 0.5 / 4 * 0.1), rel=1e-12)
    # an explicit schedule replaces the spec's, never the rule's own
    assert planned_rates(plan, 3, Constant()).rates["a"] == pytest.approx((0.5, 0.5, 0.05), rel=1e-12)


def test_a_bad_factor_names_the_step() -> None:
    plan = multilr.plan(
        [info("a.w")], Spec(lr=1.0, rules=[Rule("a.*", name="a", schedule=Function(lambda t: 1 - t))])
    )
    with pytest.raises(SpecError, match=r"gives factor -1\.0 at step 2"):
        planned_rates(plan, 3)


def test_cosine_preview_has_one_row_per_step_and_group() -> None:
    plan = multilr.plan(
        resnet_like(), Spec(lr=0.1, layer_decay=LayerDecay(0.5, depth="blocks"), schedule=Cosine(10))
    )
    h = planned_rates(plan, 10)
    assert h.steps == tuple(range(10))
    assert set(h.groups) == {g.name for g in plan.groups}
    top = max(h.groups, key=lambda g: h.rates[g][0])
    assert h.rates[top][0] == pytest.approx(0.1) and h.rates[top][-1] < 0.01
