"""The rates OneFlow actually applies, read from parameter updates, equal the plan.

Nothing here reads ``lr`` back from the groups to check a rate: each test gives known
gradients, lets the real optimizer step (eager ``opt.step()`` with the ``oneflow``
backend; a compiled ``nn.Graph`` with the ``oneflow-graph`` backend and
``multilr_oneflow.add_optimizer``), and recovers every parameter's effective rate from
how far it moved. A reference re-implementation of each update rule (SGD with momentum
and L2 decay, Adam with L2 decay, AdamW with decoupled decay) gives the update per unit
of learning rate ``D``; every rule here is linear in ``lr`` for a fixed history, so
``delta = -lr * D`` and ``lr = -delta / D`` element by element. Adam's direction barely
depends on the gradient's scale, so this measures the rate, not a gradient multiplier.

Model and spec (``_graph_case.py``): stem / 3 residual blocks (Linear + BatchNorm1d) /
head, 14 tensors; head x10, layer decay 0.7 over depths 0..4, no decay on biases and
norms, ``blocks.1.norm`` frozen, so 5 distinct non-zero rates. ``StepLR(step_size=1,
gamma=0.5)`` halves the rate at every step: on step ``k`` every tensor must train at its
plan rate times ``0.5**k``.

Tolerances. Eager runs in float64, but OneFlow casts hyperparameters to float32 (the rate:
up to 3e-8 relative) and runs Adam's moment update with float32 betas while its bias
correction stays float64 (7e-6 relative on the first step; shared/notes). For eager the
reference uses float32-rounded betas in the moment update, which leaves at most 1.4e-7
(measured); ``EAGER_RTOL = 1e-6``.

The graph cannot compile float64, so graph cases are float32 and the reference uses the
betas as written. Two float32 effects add up there: each parameter value is stored rounded to
float32, so ``delta = p1 - p0`` carries up to ``eps32/2 * (|p0| + |p1|)`` of storage error
(it matters where a tensor moves little against its size), and Adam's bias correction
``sqrt(1 - beta2**t)`` is evaluated in float32, where ``beta2**t`` (about 0.999) is rounded by
up to 6e-8, i.e. up to ``6e-5 / t`` relative on ``1 - beta2**t``, half that after the square
root. The bound per element is ``rtol * want + eps32 * (|p0| + |p1|) / |D|`` with
``GRAPH_RTOL = 5e-5``; the smallest rtol that passes was measured at 7e-6 (Adam, AdamW) and 0
(SGD). Every wrong multiplier these tolerances could hide is at least 30% off (decay 0.7 per
depth, head x10, schedule x0.5), and the negative controls below show the check flags them.
"""

from __future__ import annotations

from typing import Any

import multilr_oneflow
import numpy as np
import pytest

import multilr

OPT_IDS = ["sgd-momentum", "adam", "adamw"]
EAGER_RTOL = 1e-6
GRAPH_RTOL = 5e-5


def f32(x: float) -> float:
    return float(np.float32(x))


class Reference:
    """Update per unit of learning rate for one tensor, step by step (float64 numpy)."""

    def __init__(self, kind: str, hyper: dict[str, Any], weight_decay: float, f32_betas: bool) -> None:
        self.kind, self.hyper, self.wd = kind, hyper, weight_decay
        self.f32_betas = f32_betas
        self.t = 0
        self.buf: np.ndarray | None = None
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None

    def direction(self, grad: np.ndarray, param: np.ndarray) -> np.ndarray:
        """``D`` with this step's update ``-lr * D`` (``param``: the value before the step)."""
        self.t += 1
        if self.kind == "SGD":
            d = grad + self.wd * param
            mu = self.hyper.get("momentum", 0.0)
            if mu:
                self.buf = d.copy() if self.buf is None else mu * self.buf + d
                d = self.buf
            return d
        b1, b2 = self.hyper["betas"]
        eps = self.hyper["eps"]
        g = grad + self.wd * param if self.kind == "Adam" else grad
        # float64 eager: the moment update uses the betas as float32 (bias correction: float64)
        mb1, mb2 = (f32(b1), f32(b2)) if self.f32_betas else (b1, b2)
        self.m = (1 - mb1) * g if self.m is None else mb1 * self.m + (1 - mb1) * g
        self.v = (1 - mb2) * g * g if self.v is None else mb2 * self.v + (1 - mb2) * g * g
        d = (self.m / (1 - b1**self.t)) / (np.sqrt(self.v / (1 - b2**self.t)) + eps)
        if self.kind == "AdamW":
            d = d + self.wd * param  # decoupled: p - lr * (update + wd * p)
        return d


def measured_rates(
    cases: Any, opt_id: str, plan: multilr.Plan, steps: list[dict[str, dict[str, np.ndarray]]], *, eager: bool
) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per step, per trained tensor: (element-wise rate ``-delta / D``, storage-error term / |D|).

    ``steps[k]`` holds ``before``, ``after`` and ``grads`` (trained tensors only) as arrays.
    """
    kind, _, _, hyper = cases.OPTIMIZERS[opt_id]
    refs: dict[str, Reference] = {}
    out = []
    for rec in steps:
        rates = {}
        for name, grad in rec["grads"].items():
            ref = refs.setdefault(
                name, Reference(kind, hyper, plan.param(name).weight_decay, f32_betas=eager)
            )
            p0, p1 = rec["before"][name], rec["after"][name]
            d = ref.direction(grad, p0)
            rates[name] = (-(p1 - p0) / d, (np.abs(p0) + np.abs(p1)) / np.abs(d))
        out.append(rates)
    return out


def mismatches(
    rates: list[dict[str, tuple[np.ndarray, np.ndarray]]],
    expected: dict[str, float],
    rtol: float,
    eps: float,
    label: str,
) -> list[str]:
    """Every (step, tensor) whose rate strays from ``expected * 0.5**step`` beyond the bound."""
    bad = []
    for step, per_tensor in enumerate(rates):
        for name, (lr, storage) in per_tensor.items():
            want = expected[name] * 0.5**step
            excess = np.abs(lr - want) - (rtol * want + eps * storage)
            if np.any(excess > 0):
                i = int(np.argmax(excess))
                got = lr.flatten()[i]
                bad.append(
                    f"step {step} {name}: got {got!r}, should be {want!r} "
                    f"(rel err {abs(got - want) / want:.2e}) [{label}]"
                )
    return bad


def test_spec_gives_many_distinct_rates(cases: Any) -> None:
    """Guards the other tests against a plan so flat that any scaling would pass."""
    plan = multilr.plan(cases.make_model(), cases.make_spec("adamw"), backend="oneflow")
    trained = sorted({lr for lr in plan.rates().values() if lr > 0})
    frozen = [p.name for p in plan.params if p.frozen]
    assert len(trained) == 5, (
        f"got {len(trained)} distinct rates {trained}, should be 5 [depths 0..3 x0.7, head x10]"
    )
    assert frozen == ["blocks.1.norm.weight", "blocks.1.norm.bias"], (
        f"got frozen {frozen}, should be blocks.1.norm.weight and .bias"
    )
    assert plan.rates()["head.weight"] == pytest.approx(0.2, rel=1e-12), (
        f"got head rate {plan.rates()['head.weight']}, should be 0.2 [0.02 x10 at the top depth]"
    )
    assert plan.rates()["stem.weight"] == pytest.approx(0.02 * 0.7**4, rel=1e-12), (
        f"got stem rate {plan.rates()['stem.weight']}, should be 0.02 x 0.7^4 [depth 0 of 4]"
    )


# ---------------------------------------------------------------- eager


def run_eager(cases: Any, opt_id: str) -> tuple[Any, Any, Any, list[dict[str, Any]]]:
    flow = cases.flow
    model = cases.make_model("float64")
    names = [n for n, _ in model.named_parameters()]
    groups = multilr.build(model, cases.make_spec(opt_id), backend="oneflow")
    opt = cases.make_optimizer(opt_id, groups)
    sched = cases.make_scheduler("step", opt)
    records = []
    for step in range(cases.STEPS):
        grads = {
            n: cases.gradient(names.index(n), tuple(p.shape), step, "float64")
            for n, p in model.named_parameters()
            if p.requires_grad  # what backward does: a frozen tensor receives no gradient
        }
        for n, p in model.named_parameters():
            if n in grads:
                p.grad = flow.tensor(grads[n], dtype=flow.float64)
        in_force = {g["name"]: float(g["lr"]) for g in opt.param_groups}
        before = cases.snapshot(model)
        opt.step()
        records.append(
            {"before": before, "after": cases.snapshot(model), "grads": grads, "in_force": in_force}
        )
        sched.step()
    return model, groups, sched, records


@pytest.mark.parametrize("opt_id", OPT_IDS)
def test_eager_applied_rate_equals_plan_times_schedule(cases: Any, opt_id: str) -> None:
    _, groups, _, records = run_eager(cases, opt_id)
    plan = groups.plan
    rates = measured_rates(cases, opt_id, plan, records, eager=True)
    trained = [p.name for p in plan.params if not p.frozen]
    assert sorted(rates[0]) == sorted(trained), (
        f"got updates for {sorted(rates[0])}, should be the {len(trained)} non-frozen tensors [eager {opt_id}]"
    )
    bad = mismatches(rates, plan.rates(), EAGER_RTOL, np.finfo(np.float64).eps, f"eager {opt_id}")
    assert not bad, (
        f"applied rate != plan rate x schedule for {len(bad)} (step, tensor) pairs:\n" + "\n".join(bad[:10])
    )


@pytest.mark.parametrize("opt_id", OPT_IDS)
def test_eager_frozen_untouched_and_groups_carry_own_lr(cases: Any, opt_id: str) -> None:
    model, groups, sched, records = run_eager(cases, opt_id)
    plan = groups.plan
    for g in groups:
        assert "lr_scale" not in g, (
            f"got lr_scale={g['lr_scale']} in eager group {g['name']!r}, should be absent [applied twice in a graph]"
        )
    for g, pg in zip(plan.groups, sched.optimizer.param_groups, strict=True):
        assert "lr_scale" not in pg, f"got lr_scale in optimizer group {g.name!r}, should be absent [eager]"
    for step, rec in enumerate(records):
        for g in plan.groups:
            want = plan.lr_of(g) * 0.5**step
            assert rec["in_force"][g.name] == pytest.approx(want, rel=1e-12, abs=0), (
                f"got lr {rec['in_force'][g.name]!r} in group {g.name!r} at step {step}, should be {want!r} [eager {opt_id}]"
            )
        # rates_at (meant for graphs) agrees with the eager schedule, step by step
        at = multilr_oneflow.rates_at(plan, step, sched)
        assert at == pytest.approx(rec["in_force"], rel=1e-12, abs=0), (
            f"got rates_at {at} at step {step}, should be the eager group rates {rec['in_force']} [{opt_id}]"
        )
    for p in plan.params:
        if not p.frozen:
            continue
        tensor = dict(model.named_parameters())[p.name]
        assert not tensor.requires_grad, f"got requires_grad=True on {p.name}, should be False [frozen rule]"
        for step, rec in enumerate(records):
            assert np.array_equal(rec["after"][p.name], rec["before"][p.name]), (
                f"got {p.name} changed at step {step}, should be bit-identical [frozen, eager {opt_id}]"
            )


@pytest.mark.parametrize("opt_id", OPT_IDS)
def test_eager_frozen_untouched_by_real_training(cases: Any, opt_id: str) -> None:
    """Real forward/backward through the frozen norm: it gets no gradient and never moves."""
    flow = cases.flow
    model = cases.make_model("float64")
    groups = multilr.build(model, cases.make_spec(opt_id), backend="oneflow")
    opt = cases.make_optimizer(opt_id, groups)
    start = cases.snapshot(model)
    rng = np.random.default_rng(0)
    x = flow.tensor(rng.standard_normal((6, 3)), dtype=flow.float64)
    y = flow.tensor(rng.standard_normal((6, 2)), dtype=flow.float64)
    for _ in range(3):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    plan = groups.plan
    for name, p in model.named_parameters():
        if plan.param(name).frozen:
            assert p.grad is None, f"got a gradient on {name}, should be None [frozen, eager {opt_id}]"
            assert np.array_equal(p.numpy(), start[name]), (
                f"got {name} changed, should be bit-identical [frozen, eager {opt_id}]"
            )
    moved = sorted(n for n, p in model.named_parameters() if not np.array_equal(p.numpy(), start[n]))
    trained = sorted(n for n in start if not plan.param(n).frozen)
    assert moved == trained, f"got moved {moved}, should be the non-frozen {trained} [eager {opt_id}]"


# ---------------------------------------------------------------- graph


def graph_steps(result: dict[str, Any]) -> list[dict[str, dict[str, np.ndarray]]]:
    return [
        {
            key: {n: np.asarray(v, dtype=np.float64) for n, v in rec[key].items()}
            for key in ("before", "after", "grads")
        }
        for rec in result["steps"]
    ]


@pytest.fixture(scope="module")
def graph_results(run_case: Any) -> dict[str, dict[str, Any]]:
    """One process per optimizer: 3 graph steps under StepLR (the graph cases are float32)."""
    return {opt_id: run_case({"kind": "rates", "opt": opt_id, "sched": "step"}) for opt_id in OPT_IDS}


@pytest.mark.parametrize("opt_id", OPT_IDS)
def test_graph_applied_rate_equals_plan_times_schedule(cases: Any, graph_results: Any, opt_id: str) -> None:
    result = graph_results[opt_id]
    # the plan of the float32 model, made here, independently of the subprocess
    plan = multilr.plan(cases.make_model(), cases.make_spec(opt_id), backend="oneflow-graph")
    assert result["plan"] == plan.to_dict(), (
        f"got a different plan in the graph process, should be the same [{opt_id}]"
    )
    rates = measured_rates(cases, opt_id, plan, graph_steps(result), eager=False)
    trained = [p.name for p in plan.params if not p.frozen]
    assert sorted(rates[0]) == sorted(trained), f"got gradients for {sorted(rates[0])}, should be {trained}"
    bad = mismatches(rates, plan.rates(), GRAPH_RTOL, np.finfo(np.float32).eps, f"graph {opt_id}")
    assert not bad, (
        f"applied rate != plan rate x schedule for {len(bad)} (step, tensor) pairs:\n" + "\n".join(bad[:10])
    )
    # the same check with the rate from rates_at (what a log should show), group by group
    for step, rec in enumerate(result["steps"]):
        want = {g.name: plan.lr_of(g) * 0.5**step for g in plan.groups}
        assert rec["rates_at"] == pytest.approx(want, rel=1e-12, abs=0), (
            f"got rates_at {rec['rates_at']} at step {step}, should be {want} [graph {opt_id}]"
        )


@pytest.mark.parametrize("opt_id", OPT_IDS)
def test_graph_frozen_untouched(cases: Any, graph_results: Any, opt_id: str) -> None:
    result = graph_results[opt_id]
    frozen = [p["name"] for p in result["plan"]["params"] if p["frozen"]]
    assert frozen, f"got no frozen tensor, should have {cases.FROZEN_PREFIX}.* [{opt_id}]"
    for name in frozen:
        assert result["requires_grad"][name] is False, (
            f"got requires_grad=True on {name}, should be False [graph {opt_id}]"
        )
        for step, rec in enumerate(result["steps"]):
            assert rec["after"][name] == rec["before"][name], (
                f"got {name} changed at graph step {step}, should be bit-identical [frozen, {opt_id}]"
            )
    moved = {
        n
        for n in result["steps"][0]["before"]
        if result["steps"][-1]["after"][n] != result["steps"][0]["before"][n]
    }
    assert moved == set(result["steps"][0]["grads"]), (
        f"got moved {sorted(moved)}, should be the trained tensors [graph {opt_id}]"
    )


@pytest.mark.parametrize("opt_id", OPT_IDS)
def test_graph_groups_carry_base_lr_and_scale(graph_results: Any, opt_id: str) -> None:
    """Every group holds the base lr, its scale in lr_scale (0 when frozen): built and in the optimizer."""
    result = graph_results[opt_id]
    base = result["plan"]["base_lr"]
    scales = {g["name"]: (0.0 if g["frozen"] else g["scale"]) for g in result["plan"]["groups"]}
    for where in ("emitted", "in_optimizer"):
        got = result[where]
        assert [g["name"] for g in got] == list(scales), (
            f"got groups {[g['name'] for g in got]} [{where}], should be {list(scales)}"
        )
        for g in got:
            assert g["lr"] == base, (
                f"got lr {g['lr']} in group {g['name']!r} [{where}, {opt_id}], should be the base {base}"
            )
            assert g["lr_scale"] == scales[g["name"]], (
                f"got lr_scale {g['lr_scale']} in group {g['name']!r} [{where}, {opt_id}], should be {scales[g['name']]}"
            )


def flagged(bad: list[str]) -> set[str]:
    return {line.split()[2].rstrip(":") for line in bad}


@pytest.mark.parametrize("opt_id", ["adam", "adamw"])
def test_eager_check_catches_gradient_scaling(cases: Any, opt_id: str) -> None:
    """Negative control: one shared rate with the plan's scale put on the gradient must fail the check.

    That is what a backend that scaled gradients instead of rates would do. Adam's update
    hardly depends on the gradient's scale, so every tensor whose scale is not 1 is off. (For
    plain SGD a gradient multiplier *is* a rate multiplier, so it cannot serve here.)
    """
    flow = cases.flow
    model = cases.make_model("float64")
    groups = multilr.build(model, cases.make_spec(opt_id), backend="oneflow")
    plan = groups.plan
    base = plan.base_lr
    for g in groups:
        if g["lr"] > 0:
            g["lr"] = base  # one shared rate ...
    scale = {p.name: p.scale for p in plan.params}  # ... and the plan's scale on the gradient
    opt = cases.make_optimizer(opt_id, groups)
    sched = cases.make_scheduler("step", opt)
    names = [n for n, _ in model.named_parameters()]
    records = []
    for step in range(cases.STEPS):
        grads = {
            n: cases.gradient(names.index(n), tuple(p.shape), step, "float64") * scale[n]
            for n, p in model.named_parameters()
            if p.requires_grad
        }
        for n, p in model.named_parameters():
            if n in grads:
                p.grad = flow.tensor(grads[n], dtype=flow.float64)
        before = cases.snapshot(model)
        opt.step()
        records.append(
            {
                "before": before,
                "after": cases.snapshot(model),
                "grads": {n: g / scale[n] for n, g in grads.items()},
            }
        )
        sched.step()
    bad = mismatches(
        measured_rates(cases, opt_id, plan, records, eager=True),
        plan.rates(),
        EAGER_RTOL,
        np.finfo(np.float64).eps,
        opt_id,
    )
    should = {n for n in records[0]["grads"] if abs(scale[n] - 1) > 1e-12}
    assert should, "got no tensor with a scale other than 1, should be many [spec has decay and a head rule]"
    assert flagged(bad) == should, (
        f"got {sorted(flagged(bad))} flagged, should be every tensor with scale != 1: {sorted(should)}"
    )


def test_graph_check_catches_double_scaling(cases: Any, run_case: Any) -> None:
    """Negative control: pre-scaled lr next to lr_scale (what add_optimizer refuses) trains at lr * scale**2.

    The groups go to OneFlow's own ``graph.add_optimizer``, bypassing multilr's check; the
    check here must flag every tensor whose scale is not 1, at exactly ``scale`` times the plan.
    """
    result = run_case({"kind": "rates", "opt": "sgd", "sched": "step", "prescaled": True})
    plan = multilr.plan(cases.make_model(), cases.make_spec("sgd"), backend="oneflow-graph")
    rates = measured_rates(cases, "sgd", plan, graph_steps(result), eager=False)
    bad = mismatches(rates, plan.rates(), GRAPH_RTOL, np.finfo(np.float32).eps, "graph, pre-scaled")
    should = {p.name for p in plan.params if not p.frozen and abs(p.scale - 1) > 1e-12}
    assert flagged(bad) == should, (
        f"got {sorted(flagged(bad))} flagged, should be every tensor with scale != 1: {sorted(should)}"
    )
    for name in should:  # and the measured rate is the plan's times its scale: scaled twice
        got = float(np.median(rates[0][name][0]))
        want = plan.rates()[name] * plan.param(name).scale
        assert got == pytest.approx(want, rel=GRAPH_RTOL), (
            f"got {got!r} for {name}, should be {want!r} [lr x scale^2]"
        )


# ---------------------------------------------------------------- schedules


SCHEDULERS = list(multilr_oneflow.GRAPH_SCHEDULERS)


def make_any_scheduler(flow: Any, name: str, opt: Any) -> Any:
    sch = flow.optim.lr_scheduler
    return {
        "StepLR": lambda: sch.StepLR(opt, step_size=2, gamma=0.5),
        "MultiStepLR": lambda: sch.MultiStepLR(opt, milestones=[1, 3], gamma=0.3),
        "ExponentialLR": lambda: sch.ExponentialLR(opt, gamma=0.8),
        "CosineAnnealingLR": lambda: sch.CosineAnnealingLR(opt, T_max=4, eta_min=0.0),
        "CosineDecayLR": lambda: sch.CosineDecayLR(opt, decay_steps=4),
        "LinearLR": lambda: sch.LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=3),
        "ConstantLR": lambda: sch.ConstantLR(opt, factor=0.5, total_iters=2),
        "CosineAnnealingWarmRestarts": lambda: sch.CosineAnnealingWarmRestarts(opt, T_0=2),
        "PolynomialLR": lambda: sch.PolynomialLR(opt, decay_batch=4, end_learning_rate=1e-4, power=2.0),
        "SequentialLR": lambda: sch.SequentialLR(
            opt,
            [sch.ConstantLR(opt, factor=0.5, total_iters=2), sch.ExponentialLR(opt, gamma=0.8)],
            milestones=[2],
        ),
        "WarmupLR": lambda: sch.WarmupLR(
            sch.StepLR(opt, step_size=1, gamma=0.5), warmup_factor=0.1, warmup_iters=2, warmup_method="linear"
        ),
    }[name]()


@pytest.mark.parametrize("name", SCHEDULERS)
def test_rates_at_follows_every_accepted_scheduler(cases: Any, name: str) -> None:
    """For every scheduler add_optimizer accepts, rates_at(plan, k) is what the schedule gives at step k.

    The notes measured that these schedulers give the same sequence inside nn.Graph as in
    eager mode, so the eager sequence (stepped here) is the reference.
    """
    flow = cases.flow
    model = cases.make_model()
    groups = multilr.build(model, cases.make_spec("sgd"), backend="oneflow-graph")
    opt = flow.optim.SGD(groups)
    sched = make_any_scheduler(flow, name, opt)
    multilr_oneflow.check_scheduler(sched)  # accepted for graphs
    plan = groups.plan
    for step in range(5):
        eager = {g["name"]: float(g["lr"]) * float(g["lr_scale"]) for g in opt.param_groups}
        try:
            at = multilr_oneflow.rates_at(plan, step, sched)
        except Exception as exc:
            pytest.fail(
                f"got {type(exc).__name__}: {exc!s} from rates_at({name}, step {step}), should be the rates {eager}"
            )
        assert at == pytest.approx(eager, rel=1e-12, abs=1e-15), (
            f"got {at} at step {step}, should be {eager} [{name}]"
        )
        sched.step()


@pytest.mark.parametrize("sched", ["warmup", "sequential"])
def test_graph_composite_schedule_applied_and_reported(cases: Any, run_case: Any, sched: str) -> None:
    """A composite schedule in a graph: the applied rates follow the eager sequence, and rates_at reports them."""
    flow = cases.flow
    result = run_case({"kind": "rates", "opt": "sgd", "sched": sched})
    plan = multilr.plan(cases.make_model(), cases.make_spec("sgd"), backend="oneflow-graph")
    # the schedule's factor at each step, from the same scheduler stepped in eager mode
    opt = flow.optim.SGD([{"params": [flow.nn.Parameter(flow.zeros(1))], "lr": 1.0}])
    s = cases.make_scheduler(sched, opt)
    factors = []
    for _ in result["steps"]:
        factors.append(float(opt.param_groups[0]["lr"]))
        s.step()
    rates = measured_rates(cases, "sgd", plan, graph_steps(result), eager=False)
    for step, per_tensor in enumerate(rates):
        for name, (lr, storage) in per_tensor.items():
            want = plan.rates()[name] * factors[step]
            excess = np.abs(lr - want) - (GRAPH_RTOL * want + np.finfo(np.float32).eps * storage)
            assert not np.any(excess > 0), (
                f"got rate {lr.flatten()[int(np.argmax(excess))]!r} for {name} at step {step}, should be {want!r} [graph, {sched}]"
            )
    for step, rec in enumerate(result["steps"]):
        want = {g.name: plan.lr_of(g) * factors[step] for g in plan.groups}
        assert "error" not in rec["rates_at"], (
            f"got {rec['rates_at']['error']} from rates_at at step {step}, should be {want} [graph, {sched}]"
        )
        assert rec["rates_at"] == pytest.approx(want, rel=1e-12), (
            f"got {rec['rates_at']}, should be {want} [{sched}]"
        )
