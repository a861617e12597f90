"""The spec's runtime parts on real torch: stages unfreeze on time, a rule's own schedule, resume, atomic failure.

Rates are read back from what the optimizer applied: under SGD without momentum or
weight decay a tensor moves by ``-lr * grad``, so its step gives its rate.
"""

from __future__ import annotations

import models
import pytest
import torch

import multilr
from multilr import Controller, LayerDecay, Prefix, Rule, Spec, SpecError, Stage, planned_rates
from multilr.schedules import Cosine, Function, Step


def Net() -> models.TinyNet:
    """The model of these tests (examples/models.py)."""
    return models.tiny_net()


SPEC = Spec(
    lr=0.1,
    weight_decay=0.05,
    schedule=Cosine(8, final=0.1),
    rules=[
        Rule(Prefix("stem"), frozen=True, name="stem"),
        Rule(Prefix("blocks.0"), frozen=True, name="low"),
        Rule(Prefix("head"), lr_mult=10, name="head", schedule=Step(3, 0.5)),
    ],
    stages=[Stage(("low",), at=2, lr_mult=0.5), Stage(("stem",), epoch=2, lr_mult=0.1)],
)
X = torch.linspace(-1, 1, 15).reshape(5, 3)
Y = torch.linspace(1, -2, 10).reshape(5, 2)


def _loss(model: torch.nn.Module) -> torch.Tensor:
    return (model(X) - Y).square().mean()


def _train(model, opt, ctl, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
        ctl.step()


def _applied_rates(spec: Spec, steps: int) -> dict[str, list[float]]:
    """Each group's rate on each step, measured from plain SGD updates (delta = -lr * grad)."""
    model = Net()
    groups = multilr.build(model, multilr.Spec.from_dict({**spec.to_dict(), "weight_decay": 0.0}))
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups, steps_per_epoch=3)
    tensors = dict(model.named_parameters())
    first = {g.name: tensors[g.params[0]] for g in groups.plan.groups}  # a weight of each group
    seen: dict[str, list[float]] = {name: [] for name in first}
    for _ in range(steps):
        opt.zero_grad()
        _loss(model).backward()
        grads = {n: (p.grad.clone() if p.grad is not None else None) for n, p in first.items()}
        before = {n: p.detach().clone() for n, p in first.items()}
        opt.step()
        for n, p in first.items():
            g = grads[n]
            if g is None:
                assert torch.equal(p, before[n]), f"got {n} moved without a gradient"
                seen[n].append(0.0)
            else:
                seen[n].append(float(((before[n] - p.detach()) * g).sum() / (g * g).sum()))
        ctl.step()
    return seen


def test_applied_rates_follow_the_plan_schedule_stages_and_own_schedules() -> None:
    model = Net()
    groups = multilr.build(model, SPEC)
    want = planned_rates(groups.plan, 9, steps_per_epoch=3).rates
    got = _applied_rates(SPEC, 9)
    assert set(got) == set(want)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-4, abs=1e-12), name
    # the stages: blocks.0 from step 2 at half its rate, the stem from epoch 2 (step 6) at a tenth
    assert want["low/stage0"][:2] == (0.0, 0.0) and want["low/stage0"][2] > 0
    assert want["stem/stage1"][:6] == (0.0,) * 6 and want["stem/stage1"][6] > 0
    # the head's own schedule halves it every 3 steps on top of the cosine
    ratio = [h / d for h, d in zip(want["head"], want["default"], strict=True)]
    assert ratio == pytest.approx([10, 10, 10, 5, 5, 5, 2.5, 2.5, 2.5])


def test_staged_tensors_do_not_move_until_their_stage_under_adamw() -> None:
    model = Net()
    groups = multilr.build(model, SPEC)
    opt = torch.optim.AdamW(groups)
    ctl = Controller(opt, groups, steps_per_epoch=3)
    low = [model.blocks[0].weight, model.blocks[0].bias]
    start = [p.detach().clone() for p in low]
    assert not any(p.requires_grad for p in low)
    assert ctl.frozen() == ["stem/stage1", "low/stage0"]
    _train(model, opt, ctl, 2)
    assert all(torch.equal(p, s) for p, s in zip(low, start, strict=True)), "moved before its stage"
    assert all(p not in opt.state for p in low), "optimizer state made for a frozen tensor"
    assert ctl.frozen() == ["stem/stage1"], "stage0 (step 2) should have unfrozen blocks.0 by now"
    assert all(p.requires_grad for p in low)
    _train(model, opt, ctl, 1)
    assert not any(torch.equal(p, s) for p, s in zip(low, start, strict=True))
    assert len(opt.param_groups) == len(groups), "the optimizer's group list must never grow"


def test_epoch_stages_need_steps_per_epoch_and_nothing_changes() -> None:
    model = Net()
    groups = multilr.build(model, SPEC)
    opt = torch.optim.SGD(groups)
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(SpecError, match="starts at epoch 2: give steps_per_epoch"):
        Controller(opt, groups)
    assert [dict(g) for g in opt.param_groups] == before


def test_a_bad_factor_mid_run_leaves_rates_and_flags_as_they_were() -> None:
    spec = Spec(
        lr=0.1,
        rules=[
            Rule(Prefix("stem"), frozen=True, name="stem"),
            Rule(Prefix("head"), name="head", schedule=Function(lambda t: 1.0 if t < 3 else float("nan"))),
        ],
        stages=[Stage(("stem",), at=3)],
    )
    model = Net()
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups)
    _train(model, opt, ctl, 2)
    lrs = [g["lr"] for g in opt.param_groups]
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(SpecError, match="at step 3"):
        _train(model, opt, ctl, 1)  # step 3 would unfreeze the stem and apply the nan
    assert [g["lr"] for g in opt.param_groups] == lrs
    assert [p.requires_grad for p in model.parameters()] == flags
    assert ctl.step_count == 2 and ctl.frozen() == ["stem/stage0"]


def test_resume_mid_run_continues_bit_identically() -> None:
    def run(split: int | None, steps: int = 8) -> list[torch.Tensor]:
        model = Net()
        groups = multilr.build(model, SPEC)
        opt = torch.optim.AdamW(groups)
        ctl = Controller(opt, groups, steps_per_epoch=3)
        if split is None:
            _train(model, opt, ctl, steps)
            return [p.detach().clone() for p in model.parameters()]
        _train(model, opt, ctl, split)
        saved = {
            "model": {k: v.clone() for k, v in model.state_dict().items()},
            "opt": opt.state_dict(),
            "ctl": ctl.state_dict(),
        }
        model2 = Net()
        groups2 = multilr.build(model2, SPEC)
        opt2 = torch.optim.AdamW(groups2)
        ctl2 = Controller(opt2, groups2, steps_per_epoch=3)
        model2.load_state_dict(saved["model"])
        opt2.load_state_dict(saved["opt"])
        ctl2.load_state_dict(saved["ctl"])
        assert ctl2.rates() == ctl.rates() and ctl2.frozen() == ctl.frozen()
        _train(model2, opt2, ctl2, steps - split)
        return [p.detach().clone() for p in model2.parameters()]

    straight = run(None)
    for split in (1, 2, 5):  # before, at and after the first stage
        resumed = run(split)
        for a, b in zip(straight, resumed, strict=True):
            assert torch.equal(a, b), f"resumed at step {split} diverged"


def test_layer_decay_stages_are_fastai_gradual_unfreezing() -> None:
    spec = Spec(
        lr=0.1,
        layer_decay=LayerDecay(0.1),  # seed 004: each block down 10x slower
        stages=[Stage(from_depth=-1, at=0), Stage(from_depth=-2, at=2), Stage(from_depth=0, at=4)],
    )
    got = _applied_rates(spec, 5)
    want = planned_rates(multilr.build(Net(), spec).plan, 5).rates
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-4, abs=1e-12), name
    first_step = {n: next(i for i, r in enumerate(rates) if r > 0) for n, rates in want.items()}
    assert sorted(first_step.values()) == [0, 2, 4]  # stem, the blocks, the head: one depth each


def test_a_tensor_with_a_group_of_its_own_is_scaled_by_its_name() -> None:
    spec = Spec(lr=0.1, rates={"head.bias": 0.5})  # seed 001: a rate for one tensor
    model = Net()
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups)
    ctl.set_scale("head.bias", 0.2)
    assert ctl.rates()["rates[head.bias]"] == pytest.approx(0.1)
    ctl.freeze("head.bias")
    assert not model.head.bias.requires_grad
    before = [g["lr"] for g in opt.param_groups]
    with pytest.raises(multilr.MultiLRError, match=r"'head\.weight' shares group 'default' with 6 other"):
        ctl.set_scale("head.weight", 2.0)
    assert [g["lr"] for g in opt.param_groups] == before


def test_the_finder_sweeps_a_controller_as_it_is_now() -> None:
    model = Net()
    groups = multilr.build(model, SPEC)
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups, steps_per_epoch=3)
    ctl.set_scale("head", 2.0)

    def step() -> float:
        opt.zero_grad()
        loss = _loss(model)
        loss.backward()
        opt.step()
        return float(loss.detach())

    before = [g["lr"] for g in opt.param_groups]
    found = multilr.lr_find(model, opt, step, plan=ctl, num_it=10, end_lr=1.0)
    assert dict(found.ratios) == ctl.scales()
    assert found.ratios["low/stage0"] == 0.0 and found.ratios["head"] == pytest.approx(20.0)
    assert [g["lr"] for g in opt.param_groups] == before
