"""The spec's ``train_bn`` on real torch: BatchNorm trains while the convolutions around it are frozen.

fastai's ``Learner(train_bn=True)``: ``freeze()`` / ``freeze_to(n)`` and gradual
unfreezing leave the norm layers' parameters training. Rates are read back from what
SGD applied (no momentum, no weight decay: a tensor moves by ``-lr * grad``), in float64
so that the rate read back is good to ~1e-9.
"""

from __future__ import annotations

import models
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import multilr
from multilr import Controller, Spec

SPEC = "lr: 0.05\nno_decay: [bias, norm]\nlayer_decay: {decay: 0.8, depth: top}\n"


def _norm_names(model: torch.nn.Module) -> set[str]:
    return {f"{m}.{n}" for m, mod in model.named_modules() if isinstance(mod, _BatchNorm) for n, _ in mod.named_parameters()}


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, ctl: Controller) -> dict[str, float]:
    """One SGD step; each tensor's applied rate (``0.0`` for one that did not move)."""
    x = torch.linspace(-1, 1, 2 * 3 * 16 * 16, dtype=torch.float64).reshape(2, 3, 16, 16)
    opt.zero_grad()
    model(x).square().mean().backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    ctl.step()
    rates = {}
    for n, p in model.named_parameters():
        delta = before[n] - p.detach()
        g = grads[n]
        if g is None or not delta.any():
            rates[n] = 0.0
            continue
        i = int(g.abs().argmax())  # the largest gradient element: well above rounding
        rates[n] = float(delta.flatten()[i] / g.flatten()[i])
    return rates


@pytest.mark.parametrize("train_bn", [True, False], ids=["train_bn", "norms-freeze"])
def test_freeze_to_keeps_batchnorm_training_at_its_planned_rate(train_bn: bool) -> None:
    model = models.resnet18(num_classes=4, width=8).double()
    model.train()
    groups = multilr.build(model, Spec.from_yaml(SPEC + f"train_bn: {str(train_bn).lower()}\n"))
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups)
    ctl.freeze_to(-1)  # fastai's freeze(): only the head trains
    rates = _step(model, opt, ctl)
    norms = _norm_names(model)
    plan = groups.plan
    for name, rate in rates.items():
        trains = name.startswith("fc.") or (train_bn and name in norms)
        want = plan.param(name).lr if trains else 0.0
        assert rate == pytest.approx(want, rel=1e-7), name
        assert dict(model.named_parameters())[name].requires_grad == trains, name
    assert sum(rate > 0 for rate in rates.values()) == 2 + (len(norms) if train_bn else 0)
    # fastai's unfreeze(): every tensor at its planned rate
    ctl.unfreeze_all()
    rates = _step(model, opt, ctl)
    assert rates == pytest.approx({p.name: p.lr for p in plan.params}, rel=1e-7)


def test_gradual_unfreezing_stages_leave_batchnorm_training_from_the_first_step() -> None:
    spec = Spec.from_yaml(SPEC + "train_bn: true\nstages: [{at: 2, from_depth: -3}, {at: 3, from_depth: 0}]\n")
    model = models.resnet18(num_classes=4, width=8).double()
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups)
    norms = _norm_names(model)
    depth = groups.plan.block_depths()
    top = max(depth.values())
    for step in range(4):
        rates = _step(model, opt, ctl)
        for name, rate in rates.items():
            # the head is in both stages' reach too: it joins with the top stage
            joined = step >= 3 or (step >= 2 and depth[name] >= top - 2)
            want = groups.plan.param(name).lr if name in norms or joined else 0.0
            assert rate == pytest.approx(want, rel=1e-7), (step, name)
