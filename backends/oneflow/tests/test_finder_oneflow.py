"""multilr.lr_find on OneFlow eager: ratios kept, exact restoration; nn.Graph groups refused."""

from __future__ import annotations

import copy
from typing import Any

import multilr_oneflow
import numpy as np
import pytest

import multilr
from multilr import UnsupportedFeatureError, lr_find
from multilr.testing import assert_bit_identical

flow = multilr_oneflow.import_oneflow()
SPEC = {
    "lr": 1e-3,
    "weight_decay": 0.01,
    "rules": [{"name": "head", "prefix": "2", "lr_mult": 10}, {"name": "stem", "prefix": "0", "frozen": True}],
}


def _model() -> Any:
    flow.manual_seed(0)
    return flow.nn.Sequential(
        flow.nn.Linear(3, 8), flow.nn.Sequential(flow.nn.Linear(8, 8), flow.nn.BatchNorm1d(8)), flow.nn.Linear(8, 1)
    )


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    return flow.tensor(x), flow.tensor(x.sum(1, keepdims=True))


def _step(model: Any, opt: Any, x: Any, y: Any):
    def step() -> Any:
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss  # a OneFlow scalar tensor: the finder takes float() of it

    return step


def _numpy(value: Any) -> Any:
    if isinstance(value, flow.Tensor):
        return value.numpy().copy()
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_numpy(v) for v in value)
    return copy.deepcopy(value)


def _state(model: Any, opt: Any) -> dict[str, Any]:
    return {
        "model": _numpy(dict(model.state_dict())),
        "opt": _numpy(opt.state_dict()),
        "grads": [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()],
        "training": [m.training for m in model.modules()],
    }



def _trained():
    model = _model()
    groups = multilr.build(model, SPEC, backend="oneflow")
    opt = flow.optim.AdamW(groups)
    x, y = _data()
    model.train()
    for _ in range(3):  # Adam moments, OneFlow's step count, BN statistics and gradients exist
        _step(model, opt, x, y)()
    return model, groups, opt, x, y


@pytest.mark.parametrize("end_lr", [1e-2, 1e4], ids=["completed", "diverged"])
def test_eager_state_is_restored_bit_identically(end_lr: float) -> None:
    model, groups, opt, x, y = _trained()
    before = _state(model, opt)
    result = lr_find(model, opt, _step(model, opt, x, y), plan=groups, start_lr=1e-6, end_lr=end_lr, num_it=30)
    assert result.stop == ("completed" if end_lr < 1 else "diverged")
    assert_bit_identical(_state(model, opt), before, "state")
    assert [pg["lr"] for pg in opt.param_groups] == [0.0, 1e-3, 1e-2]


def test_eager_state_is_restored_when_the_step_raises() -> None:
    model, groups, opt, x, y = _trained()
    before = _state(model, opt)
    inner, calls = _step(model, opt, x, y), []

    def step() -> Any:
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("batch failed")
        return inner()

    with pytest.raises(RuntimeError, match="batch failed"):
        lr_find(model, opt, step, plan=groups)
    assert_bit_identical(_state(model, opt), before, "state")


def test_eager_groups_keep_their_planned_ratio_at_every_step() -> None:
    model = _model()
    groups = multilr.build(model, SPEC, backend="oneflow")
    opt = flow.optim.SGD(groups)
    x, y = _data()
    inner, seen = _step(model, opt, x, y), []
    stem = model[0].weight.numpy().copy()

    def step() -> Any:
        seen.append([pg["lr"] for pg in opt.param_groups])
        return inner()

    result = lr_find(model, opt, step, plan=groups, start_lr=1e-5, end_lr=1e-1, num_it=10, diverge=None)
    assert result.ratios == {"stem/frozen": 0.0, "default": 1.0, "head": 10.0}
    for base, got in zip(result.lrs, seen, strict=True):
        assert got == pytest.approx([0.0, base, 10 * base], rel=1e-12)
    assert np.array_equal(model[0].weight.numpy(), stem)


def test_graph_groups_are_refused_naming_eager_mode() -> None:
    model = _model()
    groups = multilr.build(model, SPEC, backend="oneflow-graph")
    opt = flow.optim.SGD(groups)
    with pytest.raises(UnsupportedFeatureError, match=r"backend='oneflow'.*ratios and rates carry over"):
        lr_find(model, opt, lambda: 1.0, plan=groups)
