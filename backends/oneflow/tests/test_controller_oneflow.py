"""multilr.Controller on OneFlow: eager works as on torch; nn.Graph groups are refused clearly."""

from __future__ import annotations

import multilr_oneflow
import numpy as np
import pytest

import multilr
from multilr import Controller, Prefix, Rule, Spec, UnsupportedFeatureError
from multilr.schedules import Step

flow = multilr_oneflow.import_oneflow()
SPEC = Spec(lr=0.1, weight_decay=0.1, rules=[Rule(Prefix("1"), lr_mult=10, name="head")])


def _model():
    flow.manual_seed(0)
    return flow.nn.Sequential(flow.nn.Linear(3, 4), flow.nn.Linear(4, 2))


def test_eager_schedule_multiplier_and_freezing() -> None:
    model = _model()
    groups = multilr.build(model, SPEC, backend="oneflow")
    opt = flow.optim.AdamW(groups)
    ctl = Controller(opt, groups, schedule=Step(1, 0.5))
    ctl.freeze("default")
    before = model[0].weight.numpy().copy()
    for _ in range(3):
        opt.zero_grad()
        model(flow.ones(2, 3)).sum().backward()
        opt.step()
        ctl.step()
    assert np.array_equal(model[0].weight.numpy(), before)  # no update, not even AdamW's decay
    assert ctl.rates() == pytest.approx({"default": 0.0, "head": 1.0 * 0.5**3})
    ctl.unfreeze("default", multiplier=2.0)
    assert ctl.rates()["default"] == pytest.approx(0.1 * 2.0 * 0.5**3)
    assert model[0].weight.requires_grad


def test_graph_groups_are_refused_with_the_way_that_works() -> None:
    groups = multilr.build(_model(), SPEC, backend="oneflow-graph")
    with pytest.raises(UnsupportedFeatureError, match="graph_scheduler"):
        Controller(flow.optim.SGD(groups), groups)


RUNTIME_SPEC = Spec(
    lr=0.1,
    rules=[
        Rule(Prefix("0"), frozen=True, name="body"),
        Rule(Prefix("1"), lr_mult=10, name="head", schedule=Step(2, 0.5)),
    ],
    stages=[multilr.Stage(("body",), at=2, lr_mult=0.5)],
)


def test_eager_stages_and_own_schedules_as_planned() -> None:
    """Plain SGD moves a tensor by lr x grad: the applied rates are read back from the updates."""
    model = _model()
    groups = multilr.build(model, RUNTIME_SPEC, backend="oneflow")
    opt = flow.optim.SGD(groups)
    ctl = Controller(opt, groups)
    want = multilr.planned_rates(groups.plan, 5).rates
    x, y = flow.ones(2, 3), flow.tensor([[1.0, -1.0], [0.5, 2.0]])
    got: dict[str, list[float]] = {"body/stage0": [], "head": []}
    for _ in range(5):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        for name, p in (("body/stage0", model[0].weight), ("head", model[1].weight)):
            before = p.numpy().copy()
            grad = None if p.grad is None else p.grad.numpy().copy()
            got[name].append((before, grad))
        opt.step()
        for name, p in (("body/stage0", model[0].weight), ("head", model[1].weight)):
            before, grad = got[name][-1]
            if grad is None:
                assert np.array_equal(p.numpy(), before), f"got {name} moved while frozen"
                got[name][-1] = 0.0
            else:
                got[name][-1] = float(((before - p.numpy()) * grad).sum() / (grad * grad).sum())
        ctl.step()
    for name, rates in got.items():
        assert rates == pytest.approx(want[name], rel=1e-5, abs=1e-12), name
    assert want["body/stage0"][:2] == (0.0, 0.0) and want["head"] == (1.0, 1.0, 0.5, 0.5, 0.25)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        pytest.param(RUNTIME_SPEC, ("stage 'stage0'", "step 2", "requires_grad", "backend='oneflow'"), id="stage"),
        pytest.param(
            Spec(lr=0.1, rules=[Rule(Prefix("1"), name="head", schedule=Step(2, 0.5))]),
            ("'head'", "own schedule", "one scheduler", "backend='oneflow'"),
            id="own-schedule",
        ),
    ],
)
def test_graph_build_refuses_runtime_parts_and_changes_nothing(spec: Spec, words: tuple[str, ...]) -> None:
    model = _model()
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(UnsupportedFeatureError) as info:
        multilr.build(model, spec, backend="oneflow-graph")
    for word in words:
        assert word in str(info.value), f"got {info.value}, should mention {word}"
    assert [p.requires_grad for p in model.parameters()] == flags, "got the refused build freezing tensors"


def test_grad_freezing_is_refused_without_a_step_pre_hook_and_nothing_changes() -> None:
    """freeze_by='grad' needs register_step_pre_hook; OneFlow 0.9's optimizers have none."""
    model = _model()
    groups = multilr.build(model, RUNTIME_SPEC, backend="oneflow")
    opt = flow.optim.SGD(groups)
    assert not hasattr(opt, "register_step_pre_hook")  # if OneFlow gains it, the mode could work here
    rates = [g["lr"] for g in opt.param_groups]
    with pytest.raises(UnsupportedFeatureError, match="register_step_pre_hook"):
        Controller(opt, groups, freeze_by="grad")
    assert [g["lr"] for g in opt.param_groups] == rates
    assert not model[0].weight.requires_grad  # the stage's tensors were not given their flag back
    Controller(opt, groups)  # the default mode works on the same optimizer
