"""The audit recorder on OneFlow: eager reads the groups, nn.Graph records the real (not the stale) rates.

Plain SGD without momentum or weight decay moves every tensor by ``-lr * grad``, so the
rate each group trained at is read back from the update and compared with the recorder.
Graph runs happen in a fresh process (``_graph_case.py``, kind ``recorder``).
"""

from __future__ import annotations

from typing import Any

import multilr_oneflow
import numpy as np
import pytest

import multilr
from multilr import Controller, RateHistory, Recorder, UnsupportedFeatureError
from multilr.schedules import Cosine, Step, Warmup

flow = multilr_oneflow.import_oneflow()
STEPS = 5


def _applied(groups: dict[str, list[str]], delta: dict[str, Any], grads: dict[str, Any]) -> dict[str, float]:
    """Rate per group from the update: ``-<delta, g> / <g, g>`` over its trained tensors."""
    out = {}
    for name, params in groups.items():
        trained = [p for p in params if p in grads]
        if not trained:  # frozen: no gradient; it must not have moved
            assert all(not np.any(np.asarray(delta[p])) for p in params), name
            out[name] = 0.0
            continue
        num = sum(float(-(np.asarray(delta[p]) * np.asarray(grads[p])).sum()) for p in trained)
        den = sum(float((np.asarray(grads[p]) ** 2).sum()) for p in trained)
        out[name] = num / den
    return out


def _eager(cases: Any, controller: bool = False) -> tuple[RateHistory, list[dict[str, float]]]:
    model = cases.make_model("float64")  # float64: the update gives the rate back exactly
    names = [n for n, _ in model.named_parameters()]
    groups = multilr.build(model, cases.make_spec("sgd"), backend="oneflow")
    opt = cases.make_optimizer("sgd", groups)
    ctl = Controller(opt, groups, schedule=Step(1, 0.7)) if controller else None
    sched = None if controller else flow.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    rec = Recorder(opt)
    members = {g.name: list(g.params) for g in groups.plan.groups}
    params = dict(model.named_parameters())
    applied = []
    for t in range(STEPS):
        if ctl is not None and t == 1:
            ctl.freeze(ctl.groups[0])
            ctl.set_scale(ctl.groups[-1], 3.0)
        if ctl is not None and t == 3:
            ctl.unfreeze(ctl.groups[0], multiplier=0.5)
        grads = {
            n: cases.gradient(names.index(n), tuple(p.shape), t, "float64")
            for n, p in params.items()
            if p.requires_grad
        }
        opt.zero_grad()
        sum((params[n] * flow.tensor(g, dtype=flow.float64)).sum() for n, g in grads.items()).backward()
        before = {n: p.numpy().copy() for n, p in params.items()}
        opt.step()
        rec.record()  # after optimizer.step(), before the scheduler / controller
        if sched is not None:
            sched.step()
        if ctl is not None:
            ctl.step()
        delta = {n: p.numpy() - before[n] for n, p in params.items()}
        applied.append(_applied(members, delta, grads))
    return rec.history(), applied


@pytest.mark.parametrize("controller", [False, True], ids=["steplr", "controller"])
def test_eager_records_the_applied_rates(cases: Any, controller: bool) -> None:
    history, applied = _eager(cases, controller)
    assert history.steps == tuple(range(STEPS))
    for t, rates in enumerate(applied):
        assert history.at(t) == pytest.approx(rates, rel=1e-6, abs=1e-12), f"step {t}"
    assert history.meta["backend"] == "oneflow" and history.meta["optimizer"] == "SGD"
    if controller:
        first = history.groups[0]
        assert history.rates[first][1:3] == (0.0, 0.0) and history.rates[first][3] > 0


def test_eager_optimizers_have_no_step_hook(cases: Any) -> None:
    groups = multilr.build(cases.make_model(), cases.make_spec("sgd"), backend="oneflow")
    with pytest.raises(UnsupportedFeatureError, match=r"call recorder\.record"):
        Recorder(flow.optim.SGD(groups)).attach()


def test_graph_groups_need_the_graph_recorder(cases: Any) -> None:
    model = cases.make_model()
    graph_groups = multilr.build(model, cases.make_spec("sgd"), backend="oneflow-graph")
    opt = flow.optim.SGD(graph_groups)
    with pytest.raises(UnsupportedFeatureError, match=r"lr_scale.*stale.*graph_recorder"):
        Recorder(opt)
    eager = flow.optim.SGD(multilr.build(cases.make_model(), cases.make_spec("sgd"), backend="oneflow"))
    with pytest.raises(UnsupportedFeatureError, match=r"no lr_scale.*multilr.Recorder\(optimizer\)"):
        multilr_oneflow.graph_recorder(eager)
    with pytest.raises(UnsupportedFeatureError, match="needs the optimizer or the plan"):
        multilr_oneflow.graph_recorder(object())


def test_graph_recorder_from_the_plan_follows_the_compiled_schedule(cases: Any) -> None:
    """No graph needed: the plan source gives plan rate x scheduler formula, per step."""
    model = cases.make_model()
    groups = multilr.build(model, cases.make_spec("sgd"), backend="oneflow-graph")
    opt = flow.optim.SGD(groups)
    schedule = Warmup(Cosine(6, final=0.1), steps=2, start=0.25)
    sch = multilr_oneflow.graph_scheduler(opt, schedule)
    rec = multilr_oneflow.graph_recorder(groups.plan, sch, every=2)
    for _ in range(8):
        rec.record()
    h = rec.history()
    planned = multilr.planned_rates(groups.plan, 8, schedule)
    assert h.steps == (0, 2, 4, 6)
    for g in h.groups:
        assert h.rates[g] == pytest.approx(planned.rates[g][::2], rel=1e-9, abs=1e-15), g
    assert h.meta["backend"] == "oneflow-graph" and h.meta["optimizer"] == "plan"


@pytest.mark.parametrize("sched", ["step", "warmup", "multilr"])
def test_graph_records_the_rates_the_graph_applied(run_case: Any, sched: str) -> None:
    r = run_case({"kind": "recorder", "sched": sched, "steps": STEPS})
    h = RateHistory.from_dict(r["history"])
    assert h.steps == tuple(range(STEPS)) and h.meta["backend"] == "oneflow-graph"
    assert h.meta["source"] == "multilr_oneflow.rates_at" and h.meta["case"] == sched
    for t, step in enumerate(r["steps"]):
        applied = _applied(r["groups"], step["delta"], step["grads"])
        # float32 parameters: the update's rounding is ~1e-4 of the smallest updates here
        assert h.at(t) == pytest.approx(applied, rel=2e-3, abs=1e-9), f"step {t}"
    # what the optimizer's groups show inside a graph: never updated, so useless for logs
    assert all(s == r["stale"][0] for s in r["stale"])
    head = next(g for g in h.groups if g.startswith("head"))
    assert r["stale"][-1][head] != pytest.approx(h.rates[head][-1], rel=0.1)
    assert len({round(x, 12) for x in h.rates[head]}) > 2  # the real rate changed
    assert "stale" in r["refused"] and "graph_recorder" in r["refused"]
