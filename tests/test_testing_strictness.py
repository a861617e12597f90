"""How strict the conformance checks are: an error just past each tolerance must be caught.

``test_testing.py`` shows that the classic mistakes (scales off by 10% or more) fail.
These tests pin the rest of what the suite promises, so that a weakened check cannot
pass a wrong backend unnoticed: every tolerance of :data:`~multilr.testing.TOLERANCES`
rejects an error a few times its size, every step is checked (the first and the last
too), a backend's plan must match in weight decay and frozen flags as well as rates,
each case's spec keeps the rules its comment names, the cases' hyperparameters are
visible in the training (a backend that ignores one is caught), and the pytest and
trace helpers report every cell that did not pass. Framework-free: runs in both
environments.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np
import pytest

import multilr
from multilr.testing import (
    TOLERANCES,
    Case,
    Cell,
    CellResult,
    Observation,
    Reference,
    ReferenceHarness,
    Report,
    Unsupported,
    all_cases,
    assert_bit_identical,
    assert_conformance,
    case_by_id,
    check_cell,
    compare,
    record,
    reference_run,
)
from multilr.testing._check import EPS

from ._harnesses import Fixed


def _reference(case: Case) -> tuple[list[dict[str, np.ndarray]], Observation]:
    obs = ReferenceHarness().run(case)
    return [dict(s) for s in obs.params], obs


def _direction(case: Case, snaps: list[dict[str, np.ndarray]], name: str, step: int) -> np.ndarray:
    """The reference's update per unit rate of ``name`` at ``step``, replayed on ``snaps``."""
    plan = multilr.plan(case.infos(), case.spec)
    wd = {n: g.weight_decay for g in plan.groups for n in g.params}[name]
    ref = Reference(case.setup.kind, case.setup.hyper)
    for t in range(step + 1):
        u = ref.direction(name, snaps[t][name], case.gradient(t)[name], weight_decay=wd)
    return u


def _check(case: Case, snaps: list[dict[str, np.ndarray]], obs: Observation) -> CellResult:
    return check_cell(Fixed(Observation(snaps, obs.planned)), case)


@pytest.mark.parametrize(
    ("kind", "hyper"),
    [
        ("adam", {"betas": (0.9, 0.999), "eps": 0.5, "amsgrad": False}),
        ("adamw", {"betas": (0.9, 0.999), "eps": 0.5, "amsgrad": False}),
        ("adagrad", {"eps": 0.5, "lr_decay": 0.0}),
    ],
)
def test_eps_sits_outside_the_square_root(kind: str, hyper: dict[str, object]) -> None:
    # first step, g = 2: Adam's bias-corrected moments are g and g^2, Adagrad's sum g^2, so
    # the direction is g / (|g| + eps) = 0.8 (inside the root it would be 2 / sqrt(4.5));
    # the cases' eps (1e-8, 1e-10) are far too small to show where it sits
    ref = Reference(kind, hyper)
    got = ref.direction("w", np.array([1.0]), np.array([2.0]), weight_decay=0.0)
    assert float(got[0]) == pytest.approx(2.0 / (2.0 + 0.5))


# one case per (optimizer kind, dtype) row of TOLERANCES; float64 cases are cosine_restarts/mixed
_ROWS = {
    ("sgd", "float32"): "sgd_wd-step-mixed",
    ("adam", "float32"): "adam-step-mixed",
    ("adamw", "float32"): "adamw-step-mixed",
    ("rmsprop", "float32"): "rmsprop-step-mixed",
    ("adagrad", "float32"): "adagrad-step-mixed",
    ("adadelta", "float32"): "adadelta-step-mixed",
    **{
        (kind, "float64"): f"{opt}-cosine_restarts-mixed-float64"
        for kind, opt in [
            ("sgd", "sgd_wd"),
            ("adam", "adam"),
            ("adamw", "adamw"),
            ("rmsprop", "rmsprop"),
            ("adagrad", "adagrad"),
            ("adadelta", "adadelta"),
        ]
    },
}


def test_the_tolerances_are_the_measured_ones() -> None:
    # the tests below scale their errors by the table, so they cannot see the table itself
    # loosened: its values are ~10x the errors measured on PyTorch and OneFlow (see the
    # comment on TOLERANCES); changing one is a decision, made here as well
    assert dict(TOLERANCES) == {
        ("sgd", "float32"): (1e-4, 2e-6),
        ("adam", "float32"): (1e-3, 2e-5),
        ("adamw", "float32"): (1e-3, 2e-5),
        ("rmsprop", "float32"): (5e-4, 2e-6),
        ("adagrad", "float32"): (5e-4, 2e-6),
        ("adadelta", "float32"): (5e-4, 2e-6),
        ("sgd", "float64"): (1e-6, 3e-7),
        ("adam", "float64"): (1e-4, 1e-5),
        ("adamw", "float64"): (1e-4, 1e-5),
        ("rmsprop", "float64"): (1e-6, 3e-7),
        ("adagrad", "float64"): (1e-6, 3e-7),
        ("adadelta", "float64"): (1e-6, 3e-7),
    }
    assert dict(EPS) == {"float32": 2.0**-23, "float64": 2.0**-52}


def test_every_tolerance_row_has_a_case_here() -> None:
    assert set(_ROWS) == set(TOLERANCES)
    for (kind, dtype), cid in _ROWS.items():
        case = case_by_id(cid)
        assert (case.setup.kind, case.dtype) == (kind, dtype)


@pytest.mark.parametrize("row", list(_ROWS), ids=lambda r: "-".join(r))
def test_a_trajectory_error_twice_the_tolerance_fails(row: tuple[str, str]) -> None:
    # every parameter from step 3 on, off the reference by 2x the trajectory tolerance (one
    # update off by that much): a loosened tolerance or a laxer normalisation lets it through
    case = case_by_id(_ROWS[row])
    snaps, obs = _reference(case)
    tol = TOLERANCES[row][1]
    name = "head.weight"
    size = max(1.0, float(np.abs(snaps[3][name]).max()))
    for s in snaps[3:]:
        s[name] = s[name] + 2 * tol * size
    result = _check(case, snaps, obs)
    assert result.status == "failed"
    assert any(m.startswith(f"after step 3: {name} is") for m in result.messages), result.describe()


@pytest.mark.parametrize("row", list(_ROWS), ids=lambda r: "-".join(r))
def test_a_rate_off_by_three_times_its_tolerance_is_named_as_a_rate(row: tuple[str, str]) -> None:
    # step 2's update of head.weight made at (1 + 3 rtol) x the planned rate: the rate check
    # must name it (the element-wise and trajectory checks would only say "off")
    case = case_by_id(_ROWS[row])
    snaps, obs = _reference(case)
    rtol = TOLERANCES[row][0]
    name, t = "head.weight", 2
    extra = 3 * rtol * (snaps[t + 1][name] - snaps[t][name])
    for s in snaps[t + 1 :]:  # the later updates right
        s[name] = s[name] + extra
    result = _check(case, snaps, obs)
    assert any(m.startswith(f"step {t}: {name} trained at rate") for m in result.messages), result.describe()


@pytest.mark.parametrize("row", list(_ROWS), ids=lambda r: "-".join(r))
def test_an_update_not_along_the_direction_fails_at_three_times_its_tolerance(row: tuple[str, str]) -> None:
    # the right rate (least squares) but a wrong shape: step 2's update plus a part
    # orthogonal to the direction, three times the element-wise allowance (rtol of the
    # update, plus 4 ulps of the parameter): a gradient scaled per element looks like this
    case = case_by_id(_ROWS[row])
    snaps, obs = _reference(case)
    rtol, eps = TOLERANCES[row][0], EPS[row[1]]
    name, t = "blocks.0.fc.weight", 2  # a slow tensor (layer decay): its updates are small
    u = _direction(case, snaps, name, t)
    delta = snaps[t + 1][name] - snaps[t][name]
    want = -float((delta * u).sum() / (u * u).sum())
    off = np.random.default_rng(0).standard_normal(u.shape)
    off -= (off * u).sum() / (u * u).sum() * u
    allowed = rtol * float(np.abs(want * u).max()) + 4 * eps * float(np.abs(snaps[t][name]).max())
    snaps[t + 1][name] = snaps[t + 1][name] + off * (3 * allowed / float(np.abs(off).max()))
    result = _check(case, snaps, obs)
    assert any(m.startswith(f"step {t}: {name}'s update is not rate x direction") for m in result.messages), (
        result.describe()
    )


@pytest.mark.parametrize("step", range(6))
def test_every_step_is_checked(step: int) -> None:
    # one step's update of one tensor at 1.5x its rate (the later ones right): the rate
    # check and the trajectory check must both see that step, the first and last included
    case = case_by_id("adamw-step-mixed")
    snaps, obs = _reference(case)
    name = "head.bias"
    extra = 0.5 * (snaps[step + 1][name] - snaps[step][name])
    for s in snaps[step + 1 :]:
        s[name] = s[name] + extra
    result = _check(case, snaps, obs)
    assert any(m.startswith(f"step {step}: {name} trained at rate") for m in result.messages), (
        result.describe()
    )
    assert any(m.startswith(f"after step {step + 1}: {name} is") for m in result.messages), result.describe()


def test_a_step_uphill_is_a_negative_rate() -> None:
    # the update's sign is part of the rate: one step made the wrong way is that step's rate
    case = case_by_id("adamw-step-mixed")
    snaps, obs = _reference(case)
    name, t = "head.bias", 2
    extra = -2 * (snaps[t + 1][name] - snaps[t][name])
    for s in snaps[t + 1 :]:
        s[name] = s[name] + extra
    result = _check(case, snaps, obs)
    assert any(m.startswith(f"step {t}: {name} trained at rate -") for m in result.messages), (
        result.describe()
    )


def test_a_frozen_tensor_that_moves_by_one_ulp_fails() -> None:
    # frozen means bit for bit: the smallest move there is must show
    case = case_by_id("sgd-step-frozen")
    snaps, obs = _reference(case)
    w = snaps[4]["embed.weight"].copy()
    w[0, 0] = np.nextafter(np.float32(w[0, 0]), np.float32(np.inf))
    for s in snaps[4:]:
        s["embed.weight"] = w
    result = _check(case, snaps, obs)
    assert any("step 3: embed.weight is frozen but moved" in m for m in result.messages), result.describe()


def test_a_wrong_rate_is_not_blamed_on_the_weight_decay() -> None:
    # the weight-decay hint replays the steps under other decays: it must find no fit when
    # only the rate is wrong, or it sends a backend's author after the wrong setting
    case = case_by_id("adamw-step-no_decay")
    result = check_cell(ReferenceHarness("drop_scale"), case)
    assert result.status == "failed"
    assert not any("weight_decay is wrong" in m for m in result.messages), result.describe()


# -- the backend's own plan -------------------------------------------------------------


def _lr(row: tuple[float, float, bool]) -> tuple[float, float, bool] | None:
    return (row[0] * 2, row[1], row[2])


def _wd(row: tuple[float, float, bool]) -> tuple[float, float, bool] | None:
    return (row[0], row[1] + 0.01, row[2])


def _frozen(row: tuple[float, float, bool]) -> tuple[float, float, bool] | None:
    return (row[0], row[1], not row[2])


def _missing(row: tuple[float, float, bool]) -> tuple[float, float, bool] | None:
    return None


@pytest.mark.parametrize(
    ("change", "says"),
    [(_lr, "got (lr"), (_wd, "got (lr"), (_frozen, "got (lr"), (_missing, "is in no group")],
    ids=["rate", "weight-decay", "frozen-flag", "missing"],
)
def test_a_backend_plan_that_differs_in_any_column_fails(
    change: Callable[[tuple[float, float, bool]], tuple[float, float, bool] | None], says: str
) -> None:
    # the training itself is right: only the plan the backend reports is off (a backend
    # whose plan says one thing and whose groups another has a bug either way)
    case = case_by_id("adamw-step-mixed")
    obs = ReferenceHarness().run(case)
    planned = dict(obs.planned)
    row = change(planned["head.weight"])
    if row is None:
        del planned["head.weight"]
    else:
        planned["head.weight"] = row
    result = check_cell(Fixed(Observation(obs.params, planned)), case)
    assert result.status == "failed"
    assert any(m.startswith(f"plan: head.weight {says}") for m in result.messages), result.describe()


# -- what the cases train: their specs keep their rules ------------------------------------


@pytest.mark.parametrize(
    ("case_id", "name", "group", "lr", "weight_decay"),
    [
        # mixed: head x5, blocks.1.norm frozen, layer decay 0.7 per depth, one rate by name,
        # no decay on biases and norms
        ("adamw-step-mixed", "head.weight", "head/depth4", 0.05, 0.05),
        ("adamw-step-mixed", "blocks.1.norm.weight", "frozen-norm/depth2/no_decay/frozen", 0.0, 0.0),
        ("adamw-step-mixed", "blocks.0.fc.weight", "depth1", 0.01 * 0.7**3, 0.05),
        ("adamw-step-mixed", "blocks.2.fc.bias", "rates[blocks.2.fc.bias]/no_decay", 0.003, 0.0),
        ("adamw-step-mixed", "blocks.2.norm.bias", "depth3/no_decay", 0.007, 0.0),
        # no_decay: the embedding is in the no-decay families too
        ("adamw-step-no_decay", "embed.weight", "no_decay", 0.01, 0.0),
        ("adamw-step-no_decay", "head.weight", "head", 0.03, 0.05),
        # frozen: embed and blocks.0 frozen, the head x5
        ("sgd-step-frozen", "blocks.0.fc.weight", "embed/frozen", 0.0, 0.0),
        ("sgd-step-frozen", "head.bias", "head", 0.5, 0.0),
        # sgd_wd trains with weight decay (else SGD's scale_gradient is no mistake there)
        ("sgd_wd-step-mixed", "head.weight", "head/depth4", 0.5, 0.05),
        # tied: the lm_head rule reaches the embedding through its second name (rates by
        # depth left out on the next rows: what they prove is which rule reaches the tensor)
        ("adamw-step-tied", "embed.weight", "lm_head/", None, 0.05),
        # subclassed: Rescale is a norm through its base, GatedLinear and LayerScale by class
        ("adamw-step-subclassed", "blocks.2.norm.weight", "norms/", None, 0.0),
        ("adamw-step-subclassed", "blocks.1.fc.weight", "gated/", None, 0.05),
        ("adamw-step-subclassed", "blocks.0.scale.gamma", "layer-scale/", None, 0.0),
    ],
)
def test_the_case_specs_keep_their_rules(
    case_id: str, name: str, group: str, lr: float | None, weight_decay: float
) -> None:
    # a case whose spec silently lost a rule still trains and passes: only this shows it
    case = case_by_id(case_id)
    plan = multilr.plan(case.infos(), case.spec)
    (g,) = [g for g in plan.groups if name in g.params]
    assert g.name == group if not group.endswith("/") else g.name.startswith(group), g.name
    assert g.weight_decay == pytest.approx(weight_decay)
    if lr is not None:
        assert plan.lr_of(g) == pytest.approx(lr)


def test_the_runtime_cases_keep_their_calls() -> None:
    # every call of a run-time feature changes something: dropping or neutralising one
    # leaves a part of the Controller unchecked
    described = {c.feature: [e.describe() for e in c.events] for c in all_cases() if c.optimizer == "adamw"}
    assert described["ctl_scale"] == ["step 2: set_scale(backbone, 4)", "step 4: set_scale(default, 0.5)"]
    assert described["ctl_thaw"] == ["step 2: unfreeze(embed/frozen, multiplier=0.2)", "step 4: freeze(head)"]


# -- the cases' hyperparameters show in the training --------------------------------------


def _trained_with(case: Case, **hyper: object) -> Observation:
    """The reference run of ``case`` with other hyperparameters: a backend that ignores one."""
    setup = dataclasses.replace(case.setup, hyper={**case.setup.hyper, **hyper})

    class Other(Case):
        @property
        def setup(self):  # type: ignore[override]
            return setup

    other = Other(case.optimizer, case.schedule, case.feature, case.dtype, case.steps, case.seed)
    plan = multilr.plan(case.infos(), case.spec)
    traj, _ = reference_run(other, plan)
    return Observation(traj, ReferenceHarness().run(case).planned)


@pytest.mark.parametrize(
    ("optimizer", "hyper"),
    [
        ("momentum", {"momentum": 0.0}),
        ("nesterov", {"nesterov": False}),
        ("dampening", {"dampening": 0.0}),
        # eps set large in the cases so that it shows: a backend on the framework default fails
        ("rmsprop", {"eps": 1e-8}),
        ("adadelta", {"eps": 1e-6}),
        ("adam", {"eps": 1e-8}),
        ("adamw", {"eps": 1e-8}),
        # beta2 0.5 in the amsgrad cases, so that v falls and its running maximum differs
        ("amsgrad", {"amsgrad": False}),
        ("amsgrad", {"betas": (0.9, 0.999)}),
    ],
    ids=["momentum", "nesterov", "dampening", "rmsprop-eps", "adadelta-eps", "adam-eps", "adamw-eps",
         "amsgrad", "amsgrad-beta2"],
)
def test_a_backend_that_ignores_a_hyperparameter_is_caught(optimizer: str, hyper: dict[str, object]) -> None:
    cases = [c for c in all_cases() if c.optimizer == optimizer and not c.controlled]
    assert cases
    for case in cases:
        result = check_cell(Fixed(_trained_with(case, **hyper)), case)
        assert result.status == "failed", f"{optimizer} with {hyper} passes {case.id}"


def test_a_backend_that_drops_weight_decay_is_caught_on_sgd_wd() -> None:
    # the sgd_wd cells are the SGD cells where scaling the gradient is a mistake: only
    # their weight decay makes it one
    for case in [c for c in all_cases() if c.optimizer == "sgd_wd"]:
        no_wd = dataclasses.replace(case.spec, weight_decay=0.0)
        traj, _ = reference_run(case, multilr.plan(case.infos(), no_wd))
        obs = Observation(traj, ReferenceHarness().run(case).planned)
        assert check_cell(Fixed(obs), case).status == "failed", case.id


# -- the pytest and report helpers report every cell that did not pass ---------------------


_FAILING = Observation([], {})  # no snapshots: a failed cell


@pytest.mark.parametrize(
    ("harness", "expected_failure"),
    [
        (Fixed(_FAILING), ""),
        (Fixed(Unsupported("no LambdaLR")), ""),
        (ReferenceHarness(), "listed, but it passes"),
    ],
    ids=["failed", "unsupported", "xpass"],
)
def test_assert_conformance_fails_every_cell_that_did_not_pass(
    harness: object, expected_failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest.fail, not pytest.xfail (a subclass of it) and not a pass
    monkeypatch.delenv("MULTILR_TRACES", raising=False)
    cell = Cell("fixed", case_by_id("sgd-step-mixed"), expected_failure)
    with pytest.raises(pytest.fail.Exception) as info:
        assert_conformance(harness, cell)  # type: ignore[arg-type]
    assert info.type is pytest.fail.Exception


def test_a_listed_failure_is_an_xfail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTILR_TRACES", raising=False)
    cell = Cell("fixed", case_by_id("sgd-step-mixed"), "known")
    with pytest.raises(pytest.xfail.Exception):
        assert_conformance(Fixed(_FAILING), cell)


@pytest.mark.parametrize("status", ["failed", "unsupported", "xpass"])
def test_one_cell_that_did_not_pass_makes_the_report_fail(status: str) -> None:
    bad = CellResult("b", "sgd-step-mixed", status=status)  # type: ignore[arg-type]
    assert not bad.ok
    report = Report(
        [CellResult("b", "sgd-step-frozen"), bad, CellResult("b", "adam-step-mixed", status="xfail")]
    )
    assert not report.ok and report.failures() == [bad]


# -- traces: every disagreement and every unsupported cell is a problem --------------------


def _traced(tmp_path, backend: str, cases: list[Case]) -> None:
    for case in cases:
        result = check_cell(ReferenceHarness(), case)
        result.backend = backend
        record(result, tmp_path)


def _edit(tmp_path, backend: str, edit: Callable[[dict], None]) -> None:
    path = next(tmp_path.glob(f"{backend}.*.jsonl"))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    edit(lines[0])
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def _rates(rec: dict) -> None:
    rtol = TOLERANCES[("sgd", "float32")][0]
    rec["rates"]["head.weight"][3] *= 1 + 3 * rtol  # 1.5x the pairwise allowance of 2 rtol


def _final(rec: dict) -> None:
    ptol = TOLERANCES[("sgd", "float32")][1]
    rec["final"]["head.bias"][0] += 3 * 2 * ptol * max(1.0, max(abs(x) for x in rec["final"]["head.bias"]))


def _unsupported(rec: dict) -> None:
    rec["status"] = "unsupported"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_rates, "effective rates of head.weight differ"),
        (_final, "final head.bias differs"),
        (_unsupported, ": unsupported"),
    ],
    ids=["rates", "final", "unsupported"],
)
def test_compare_reports_a_small_disagreement_or_an_unsupported_cell(
    tmp_path, edit: Callable[[dict], None], says: str
) -> None:
    cases = list(all_cases()[:3])  # the others are missing: problems too, but not these
    _traced(tmp_path, "a", cases)
    _traced(tmp_path, "b", cases)
    _edit(tmp_path, "b", edit)  # b's first cell: sgd-step-head_backbone
    result = compare(tmp_path, ["a", "b"])
    assert not result.ok
    assert any("sgd-step-head_backbone" in p and says in p for p in result.problems), result.problems


# -- bit-identical means bit-identical ----------------------------------------------------


@pytest.mark.parametrize(
    ("got", "want"),
    [
        ({"w": np.array([1.0, np.nextafter(1.0, 2.0)])}, {"w": np.array([1.0, 1.0])}),  # one ulp
        ({"w": np.ones(2, np.float32)}, {"w": np.ones(2)}),  # another dtype
        ({"w": np.ones(2), "extra": 1}, {"w": np.ones(2)}),  # a key more
        ({"w": [1, 2]}, {"w": (1, 2)}),  # a list where a tuple was
    ],
    ids=["one-ulp", "dtype", "extra-key", "list-for-tuple"],
)
def test_assert_bit_identical_refuses_any_difference(got: object, want: object) -> None:
    with pytest.raises(AssertionError):
        assert_bit_identical(got, want, "state")
