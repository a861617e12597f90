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
