"""The conformance suite itself (framework-free): reference, schedules, checks, traces.

Runs in both environments. The backends' own conformance runs are in
``backends/*/tests/test_conformance*.py``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import multilr
from multilr.testing import (
    FEATURES,
    MISTAKES,
    RUNTIME_FEATURES,
    SCHEDULES,
    Case,
    Event,
    Module,
    Observation,
    Reference,
    ReferenceHarness,
    Unsupported,
    all_cases,
    case_by_id,
    check_backend,
    check_cell,
    compare,
    conformance_cells,
    controlled_rates,
    record,
    reference_run,
)
from multilr.testing.__main__ import main

from ._harnesses import Fixed

# -- the reference optimizers, against values worked out by hand ------------------------


def _steps(kind: str, hyper: dict, grads: list[float], p: float = 1.0, wd: float = 0.0) -> list[float]:
    ref = Reference(kind, hyper)
    return [float(ref.direction("w", np.array([p]), np.array([g]), weight_decay=wd)[0]) for g in grads]


def test_sgd_momentum_buffer_starts_at_the_gradient_then_dampens() -> None:
    h = {"momentum": 0.9, "dampening": 0.5, "nesterov": False}
    # b1 = g = 1; b2 = 0.9 * 1 + 0.5 * 2 = 1.9
    assert _steps("sgd", h, [1.0, 2.0]) == pytest.approx([1.0, 1.9])


def test_sgd_nesterov_and_l2_decay() -> None:
    h = {"momentum": 0.9, "dampening": 0.0, "nesterov": True}
    # d = g + wd * p = 1 + 0.1 * 2 = 1.2; b = 1.2; direction d + 0.9 b = 2.28
    assert _steps("sgd", h, [1.0], p=2.0, wd=0.1) == pytest.approx([2.28])


def test_adam_first_step_is_the_sign_and_adamw_adds_decoupled_decay() -> None:
    h = {"betas": (0.9, 0.999), "eps": 0.0, "amsgrad": False}
    assert _steps("adam", h, [-3.0]) == pytest.approx([-1.0])
    assert _steps("adamw", h, [-3.0], p=2.0, wd=0.1) == pytest.approx([-1.0 + 0.2])
    # Adam's L2 decay enters the gradient, so one step is still the sign
    assert _steps("adam", h, [-3.0], p=2.0, wd=0.1) == pytest.approx([-1.0])


def test_adam_second_step_and_amsgrad() -> None:
    b1, b2 = 0.9, 0.999
    g1, g2 = 2.0, 0.05  # small enough that v falls on the second step
    m = (1 - b1) * (b1 * g1 + g2)
    v = (1 - b2) * (b2 * g1 * g1 + g2 * g2)
    plain = (m / (1 - b1**2)) / (math.sqrt(v) / math.sqrt(1 - b2**2))
    h = {"betas": (b1, b2), "eps": 0.0, "amsgrad": False}
    assert _steps("adam", h, [g1, g2])[1] == pytest.approx(plain)
    vmax = (1 - b2) * g1 * g1  # amsgrad keeps the first step's larger v
    assert vmax > v
    ams = (m / (1 - b1**2)) / (math.sqrt(vmax) / math.sqrt(1 - b2**2))
    assert _steps("adam", {**h, "amsgrad": True}, [g1, g2])[1] == pytest.approx(ams)


def test_rmsprop_eps_outside_and_adagrad() -> None:
    assert _steps("rmsprop", {"alpha": 0.9, "eps": 0.1}, [2.0]) == pytest.approx([2.0 / (math.sqrt(0.4) + 0.1)])
    assert _steps("adagrad", {"eps": 0.0, "lr_decay": 0.5}, [2.0, 1.0]) == pytest.approx(
        [1.0, 1.0 / math.sqrt(5.0) / 1.5]
    )


def test_adadelta_accumulates_directions_not_rate_times_direction() -> None:
    rho, eps = 0.5, 0.01
    sq1 = (1 - rho) * 4.0
    d1 = math.sqrt(eps) / math.sqrt(sq1 + eps) * 2.0
    acc1 = (1 - rho) * d1 * d1
    sq2 = rho * sq1 + (1 - rho) * 1.0
    d2 = math.sqrt(acc1 + eps) / math.sqrt(sq2 + eps) * 1.0
    assert _steps("adadelta", {"rho": rho, "eps": eps}, [2.0, 1.0]) == pytest.approx([d1, d2])


def test_unknown_reference_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="'lamb' unknown"):
        Reference("lamb", {})


# -- schedules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "factors"),
    [
        ("constant", [1, 1, 1, 1, 1, 1]),
        ("step", [0.7**t for t in range(6)]),
        # T_0 = 2, T_mult = 2: periods [0, 2), [2, 6)
        ("cosine_restarts", [1, 0.5, 1, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]),
        # 1/4 up to 1 at step 2, down to 1/8 at step 5 (torch OneCycleLR, linear)
        ("one_cycle", [0.25, 0.625, 1.0, 1 - 0.875 / 3, 1 - 2 * 0.875 / 3, 0.125]),
        ("inverse", [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6]),
    ],
)
def test_schedule_factors(name: str, factors: list[float]) -> None:
    assert [SCHEDULES[name].factor(t) for t in range(6)] == pytest.approx(factors)


def test_group_decay_gives_each_group_its_factor() -> None:
    case = case_by_id("sgd-group_decay-mixed")
    plan = multilr.plan(case.infos(), case.spec)
    f = case.sched.factors(plan, 6)
    head = [i for i, g in enumerate(plan.groups) if g.params[0].startswith("head.")]
    other = [i for i in range(len(plan.groups)) if i not in head]
    assert head and other
    assert f[:, head[0]].tolist() == pytest.approx([0.6**t for t in range(6)])
    assert f[:, other[0]].tolist() == pytest.approx([0.85**t for t in range(6)])


# -- the cases --------------------------------------------------------------------------


def test_cases_are_many_distinct_and_cover_the_issue() -> None:
    cases = all_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)) == 201
    assert {c.optimizer for c in cases} >= {"sgd", "momentum", "nesterov", "adam", "adamw"}
    assert {c.schedule for c in cases} == set(SCHEDULES)
    assert {c.feature for c in cases} >= {"head_backbone", "layer_decay", "per_tensor", "frozen", "no_decay"}
    for case in cases:  # every case's plan has at least two distinct trainable rates
        plan = multilr.plan(case.infos(), case.spec)
        assert len({plan.lr_of(g) for g in plan.groups if not g.frozen}) >= 2, case.id


def test_case_data_is_seeded_and_rounded_to_its_dtype() -> None:
    a, b = case_by_id("adam-step-mixed"), case_by_id("adam-cosine_restarts-mixed-float64")
    w32, w64 = a.initial()["head.weight"], b.initial()["head.weight"]
    assert np.array_equal(w32, w32.astype(np.float32).astype(np.float64))
    assert not np.array_equal(w64, w64.astype(np.float32).astype(np.float64))
    assert np.allclose(w32, w64, rtol=1e-6)
    g0, g1 = a.gradient(0), a.gradient(1)
    assert all(np.array_equal(np.sign(g0[n]), np.sign(g1[n])) for n in g0)
    assert not np.array_equal(g0["head.weight"], g1["head.weight"])
    with pytest.raises(KeyError, match="no conformance case 'nope'"):
        case_by_id("nope")


# -- the checks: the reference passes, the mistakes are caught --------------------------


def test_the_reference_passes_every_case() -> None:
    report = check_backend(ReferenceHarness())
    assert report.ok, report.summary()
    assert {r.status for r in report.results} == {"passed"}


@pytest.mark.parametrize("mistake", MISTAKES)
@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_every_mistake_is_caught(mistake: str, family: str) -> None:
    cases = [c for c in all_cases() if c.setup.kind.startswith(family)]
    report = check_backend(ReferenceHarness(mistake), cases=cases)
    for result, case in zip(report.results, cases, strict=True):
        # under SGD without weight decay, a scaled gradient is exactly a scaled rate
        same = mistake == "scale_gradient" and case.setup.kind == "sgd" and case.setup.weight_decay == 0
        assert result.status == ("passed" if same else "failed"), (case.id, result.describe())
    assert sum(r.status == "failed" for r in report.results) >= len(cases) // 2


def _reference_obs(case: Case) -> Observation:
    return ReferenceHarness().run(case)


def test_a_frozen_tensor_that_moves_fails() -> None:
    case = case_by_id("sgd-step-frozen")
    obs = _reference_obs(case)
    snaps = [dict(s) for s in obs.params]
    snaps[-1]["embed.weight"] = snaps[-1]["embed.weight"] + 1e-7
    result = check_cell(Fixed(Observation(snaps, obs.planned)), case)
    assert result.status == "failed"
    assert any("embed.weight is frozen but moved" in m for m in result.messages)


def test_a_backend_plan_that_differs_fails() -> None:
    case = case_by_id("adam-step-layer_decay")
    obs = _reference_obs(case)
    planned = dict(obs.planned)
    lr, wd, frozen = planned["head.bias"]
    planned["head.bias"] = (lr * 2, wd, frozen)
    result = check_cell(Fixed(Observation(obs.params, planned)), case)
    assert result.status == "failed"
    assert any(m.startswith("plan: head.bias got (lr") for m in result.messages)


def test_a_trajectory_off_by_a_little_fails_its_tolerance() -> None:
    case = case_by_id("adamw-step-mixed")
    obs = _reference_obs(case)
    snaps = [dict(s) for s in obs.params]
    for s in snaps[1:]:  # a constant offset after the first step: rates look right, the path does not
        s["head.weight"] = s["head.weight"] + 1e-3
    result = check_cell(Fixed(Observation(snaps, obs.planned)), case)
    assert any("from the reference" in m for m in result.messages), result.describe()


def test_statuses_unsupported_crash_xfail_xpass() -> None:
    case = case_by_id("sgd-step-mixed")
    assert check_cell(Fixed(Unsupported("no LambdaLR")), case).status == "unsupported"
    crashed = check_cell(Fixed(RuntimeError("boom")), case)
    assert crashed.status == "failed" and "raised RuntimeError: boom" in crashed.messages[0]
    assert check_cell(Fixed(Unsupported("x")), case, expected_failure="why").status == "xfail"
    xpass = check_cell(ReferenceHarness(), case, expected_failure="why")
    assert xpass.status == "xpass" and not xpass.ok
    assert "listed as an expected failure (why) but passed" in xpass.messages[0]


def test_conformance_cells_ids_and_expected_failure_validation() -> None:
    cells = conformance_cells("mine", {"rmsprop-*": "eps inside"})
    ids = [c.id for c in cells]
    assert ids[0] == "mine-sgd-step-head_backbone" and len(ids) == 201
    assert all(len(i.split("-")) in (4, 5) for i in ids)
    reasons = {c.values[0].case.optimizer: c.values[0].expected_failure for c in cells}
    assert reasons["rmsprop"] == "eps inside" and reasons["adam"] == ""
    with pytest.raises(ValueError, match="'lamb-\\*' matches no case id"):
        conformance_cells("mine", {"lamb-*": "no such optimizer"})
    with pytest.raises(ValueError, match="needs a reason"):
        conformance_cells("mine", {"rmsprop-*": " "})


# -- run-time control cases (multilr.Controller, events during the run) ------------------


def _planned(case_id: str) -> tuple[Case, multilr.Plan]:
    case = case_by_id(case_id)
    return case, multilr.plan(case.infos(), case.spec)


def test_controlled_cases_cover_every_runtime_feature() -> None:
    controlled = [c for c in all_cases() if c.controlled]
    assert {c.feature for c in controlled} == set(RUNTIME_FEATURES)
    assert {c.optimizer for c in controlled} == {"momentum", "adam", "adamw"}
    assert not any(c.controlled for c in all_cases() if c.feature in FEATURES)
    assert [e.describe() for e in case_by_id("adamw-step-ctl_freeze").events] == [
        "step 1: freeze(head*)",
        "step 2: freeze(no_decay)",
        "step 4: unfreeze(head*, multiplier=0.5)",
        "step 5: unfreeze(no_decay)",
    ]


def test_controlled_rates_model_freezing_and_multipliers() -> None:
    case, plan = _planned("momentum-step-ctl_freeze")
    tl = controlled_rates(plan, case.sched.shape(), case.events, case.steps)
    names = [g.name for g in plan.groups]
    f = [0.7**t for t in range(6)]
    head, nd = names.index("head"), names.index("no_decay")
    lr_h, lr_nd = plan.groups[head].lr, plan.groups[nd].lr
    assert [r[head] for r in tl.rates] == pytest.approx([lr_h, 0, 0, 0, lr_h * 0.5 * f[4], lr_h * 0.5 * f[5]])
    # unfreeze without a multiplier keeps the group's (1)
    assert [r[nd] for r in tl.rates] == pytest.approx([lr_nd, lr_nd * f[1], 0, 0, 0, lr_nd * f[5]])
    assert [row[head] for row in tl.frozen] == [False, True, True, True, False, False]


def test_freeze_to_counts_depths_from_the_top() -> None:
    case, plan = _planned("adamw-step-ctl_freeze_to")
    tl = controlled_rates(plan, case.sched.shape(), case.events, case.steps)
    assert [g.name for g in plan.groups] == ["depth0", "depth1", "depth2", "depth3", "depth4"]
    frozen = [[g for g, f in zip(["d0", "d1", "d2", "d3", "d4"], row, strict=True) if f] for row in tl.frozen]
    assert frozen == [["d0", "d1", "d2", "d3"]] * 2 + [["d0", "d1"]] * 2 + [[]] * 2


def test_the_reference_resumes_momentum_after_a_freeze() -> None:
    """head.bias (no weight decay) trains on step 0, is frozen on 1-3, resumes its buffer on 4."""
    case, plan = _planned("momentum-step-ctl_freeze")
    traj, rates = reference_run(case, plan)
    p0, g0, g4 = case.initial()["head.bias"], case.gradient(0)["head.bias"], case.gradient(4)["head.bias"]
    p1 = p0 - rates[0]["head.bias"] * g0  # the buffer starts at g0
    for t in (1, 2, 3, 4):
        assert np.array_equal(traj[t]["head.bias"], p1), t
    assert traj[5]["head.bias"] == pytest.approx(p1 - rates[4]["head.bias"] * (0.9 * g0 + g4))


def test_a_tensor_unfrozen_mid_run_starts_its_adam_state_then() -> None:
    """embed.weight, frozen by the spec, is first updated on step 2: Adam's first step, g / (|g| + eps)."""
    case, plan = _planned("adam-step-ctl_thaw")
    traj, rates = reference_run(case, plan)
    p2, g2 = traj[2]["embed.weight"], case.gradient(2)["embed.weight"] + 0.01 * traj[2]["embed.weight"]
    assert np.array_equal(p2, case.initial()["embed.weight"])
    step = -rates[2]["embed.weight"] * g2 / (np.abs(g2) + case.setup.hyper["eps"])
    assert traj[3]["embed.weight"] == pytest.approx(p2 + step, rel=1e-9)


def test_bad_events_are_case_errors() -> None:
    with pytest.raises(ValueError, match="action 'thaw' unknown"):
        Event(1, "thaw", ("a",))
    with pytest.raises(ValueError, match="integer >= 0"):
        Event(-1, "freeze", ("a",))
    with pytest.raises(ValueError, match="freeze_to takes a depth and no groups"):
        Event(1, "freeze_to", ("a",), 2)
    with pytest.raises(ValueError, match=r"set_scale\(a\): needs a value"):
        Event(1, "set_scale", ("a",))
    with pytest.raises(ValueError, match="must be an integer"):
        Event(1, "freeze_to", value=1.5)
    case, plan = _planned("momentum-step-ctl_scale")  # groups: backbone (depths 0-3), default (4)
    shape = case.sched.shape()
    with pytest.raises(ValueError, match="'nope' matches no group"):
        controlled_rates(plan, shape, [Event(0, "freeze", ("nope",))], 2)
    with pytest.raises(ValueError, match="group 'backbone' is not frozen"):
        controlled_rates(plan, shape, [Event(0, "unfreeze", ("backbone",))], 2)
    with pytest.raises(ValueError, match="group 'backbone' lies on both sides of depth 2"):
        controlled_rates(plan, shape, [Event(0, "freeze_to", value=2)], 2)


# -- traces across environments ---------------------------------------------------------


def _write(tmp_path, harness, backend: str, cases=None, expected=None) -> None:
    report = check_backend(harness, cases=cases, expected_failures=expected)
    for r in report.results:
        r.backend = backend
        record(r, tmp_path)


def test_compare_accepts_agreeing_backends_and_prints_the_matrix(tmp_path) -> None:
    _write(tmp_path, ReferenceHarness(), "a")
    _write(tmp_path, ReferenceHarness(), "b", expected={"*-inverse-*": "no LambdaLR"})
    result = compare(tmp_path, ["a", "b"])
    # b lists inverse as expected to fail but it passes: strict, so that is a problem
    assert not result.ok and any("b-sgd-inverse-mixed: xpass" in p for p in result.problems)
    for f in tmp_path.iterdir():
        f.unlink()
    _write(tmp_path, ReferenceHarness(), "a")
    _write(tmp_path, ReferenceHarness(), "b")
    result = compare(tmp_path, ["a", "b"])
    assert result.ok, result.matrix()
    text = result.matrix()
    assert "a                    201                 0       0        0" in text
    assert "a ~ b: 201 cells" in text and text.endswith("conformance: OK")


def test_compare_fails_on_a_missing_backend_missing_cells_or_a_disagreement(tmp_path) -> None:
    _write(tmp_path, ReferenceHarness(), "a")
    _write(tmp_path, ReferenceHarness(), "b", cases=all_cases()[:100])
    result = compare(tmp_path, ["a", "b", "c"])
    assert "c: no traces" in " ".join(result.problems)
    assert sum(p.endswith(": missing") for p in result.problems) == len(all_cases()) - 100
    assert result.matrix().endswith("conformance: FAILED")
    # a disagreement between two passing backends: edit b's final parameters
    path = next(tmp_path.glob("b.*.jsonl"))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[0]["final"]["head.bias"][0] += 0.01
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = compare(tmp_path, ["a", "b"])
    assert any("final head.bias differs" in p for p in result.problems)


def test_cli_compare_exit_codes(tmp_path, capsys) -> None:
    _write(tmp_path, ReferenceHarness(), "a")
    assert main(["compare", str(tmp_path), "--backends", "a"]) == 0
    assert "conformance: OK" in capsys.readouterr().out
    assert main(["compare", str(tmp_path), "--backends", "a,b"]) == 1
    assert "b: no traces" in capsys.readouterr().out
    assert main(["cases"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 201


def test_record_does_nothing_without_a_directory(monkeypatch) -> None:
    monkeypatch.delenv("MULTILR_TRACES", raising=False)
    assert record(check_cell(ReferenceHarness(), all_cases()[0])) is None


def test_importing_the_suite_loads_no_framework_and_no_pytest() -> None:
    code = (
        "import sys, multilr.testing; "
        "print(sorted(m for m in ('torch', 'oneflow', 'pytest') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_subclassed_layout_reports_each_class_with_its_bases() -> None:
    infos = {i.name: i.module_types for i in case_by_id("adamw-step-subclassed").infos()}
    assert infos["blocks.1.fc.weight"] == ("GatedLinear", "Linear")
    assert infos["blocks.2.norm.weight"] == ("Rescale", "LayerNorm")
    assert infos["blocks.0.scale.gamma"] == ("LayerScale",)
    assert infos["blocks.0.fc.weight"] == ("Linear",)
    with pytest.raises(ValueError, match="'x': kind 'scale' needs its class name"):
        Module("x", "scale", (4,))


def test_the_towers_case_decays_each_tower_over_its_own_depths() -> None:
    # what the towers cells prove every backend applies: the same block of either tower at
    # its own tower's rate, each tower from its own embedding up, the head in neither
    case = case_by_id("adamw-step-towers")
    made = multilr.plan(case.infos(), case.spec)
    lr = {p.name: p.lr for p in made.params}
    assert lr["text.blocks.1.fc.weight"] == pytest.approx(0.01 * 0.8)  # text: 3 depths above 0
    assert lr["vision.blocks.1.fc.weight"] == pytest.approx(0.01 * 0.6**2)  # vision: 4
    assert lr["text.embed.weight"] == pytest.approx(0.01 * 0.8**3)
    assert lr["vision.patch.weight"] == pytest.approx(0.01 * 0.6**4)
    assert lr["head.weight"] == pytest.approx(0.03)
    assert len(made.params) == len(case.names()) == 23


def test_case_is_frozen() -> None:
    case = all_cases()[0]
    with pytest.raises(AttributeError):
        case.dtype = "float64"  # type: ignore[misc]
    assert replace(case, dtype="float64").id.endswith("-float64")


def test_the_newest_trace_file_wins_whatever_its_name(tmp_path):
    import os

    from multilr.testing import load_traces

    def write(name, status, when):
        path = tmp_path / name
        path.write_text(json.dumps({"backend": "mine", "case": "sgd-step-frozen", "status": status}) + "\n")
        os.utime(path, ns=(when, when))

    # pid 10234 ran after pid 9876, though "10234" sorts first as text
    write("mine.9876.jsonl", "pass", 1_000_000_000)
    write("mine.10234.jsonl", "fail", 2_000_000_000)
    assert load_traces(tmp_path)["mine"]["sgd-step-frozen"]["status"] == "fail"
