"""multilr.Recorder on torch: the rate logged for step t is the rate step t applied.

Plain SGD without momentum or weight decay moves every tensor by ``-lr * grad``, so the
rate each group really trained at is read back from the update (``-<delta, g> / <g, g>``)
and compared with the recorder, for torch's own schedulers, multilr schedules through
``LambdaLR``, and :class:`multilr.Controller`.
"""

from __future__ import annotations

import pytest
import torch

import multilr
from multilr import Controller, LayerDecay, Prefix, Recorder, Rule, Spec
from multilr.schedules import OneCycle, Step

SPEC = Spec(lr=0.1, rules=[Rule(Prefix("2"), lr_mult=10, name="head")], layer_decay=LayerDecay(0.5))
STEPS = 6
HEAD = "head/depth1"  # the head rule and its layer-decay depth name the group


def _setup():
    torch.manual_seed(0)
    # float64: the smallest one-cycle rates (1e-6) are read back from the update exactly
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    groups = multilr.build(model, SPEC, backend="torch")
    return model, groups, torch.optim.SGD(groups, momentum=0.0, weight_decay=0.0)


def _grads(model, step: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return {n: torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5 for n, p in model.named_parameters()}


def _train_step(model, opt, step: int) -> dict[str, float]:
    """One step with known gradients; returns the rate each group applied, from the update."""
    grads = _grads(model, step)
    opt.zero_grad()
    sum((p * grads[n]).sum() for n, p in model.named_parameters() if p.requires_grad).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    out = {}
    for pg in opt.param_groups:
        names = [n for n, p in model.named_parameters() if any(p is q for q in pg["params"])]
        num = sum(float(((before[n] - dict(model.named_parameters())[n].detach()) * grads[n]).sum()) for n in names)
        den = sum(float((grads[n] * grads[n]).sum()) for n in names)
        out[pg["name"]] = num / den
    return out


def _check(history, applied: list[dict[str, float]]) -> None:
    assert history.steps == tuple(range(len(applied)))
    for t, rates in enumerate(applied):
        assert history.at(t) == pytest.approx(rates, rel=1e-5, abs=1e-9), f"step {t}"


@pytest.mark.parametrize("kind", ["lambda-onecycle", "torch-onecycle"])
def test_recorded_rates_are_the_applied_ones_under_a_scheduler(kind: str) -> None:
    model, groups, opt = _setup()
    if kind == "lambda-onecycle":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, OneCycle(STEPS, div=4, final_div=2))
    else:  # torch's OneCycleLR with one peak per group (its own rate)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in groups], total_steps=STEPS, div_factor=4, cycle_momentum=False
        )
    rec = Recorder(opt)
    applied = []
    for t in range(STEPS):
        applied.append(_train_step(model, opt, t))
        rec.record()  # after optimizer.step(), before scheduler.step()
        sched.step()
    _check(rec.history(), applied)
    h = rec.history()
    assert h.meta["backend"] == "torch" and h.meta["optimizer"] == "SGD"
    assert len(set(h.rates[HEAD])) == STEPS  # the rate changed at every step
    if kind == "lambda-onecycle":
        planned = multilr.planned_rates(groups.plan, STEPS, OneCycle(STEPS, div=4, final_div=2))
        for g in h.groups:
            assert h.rates[g] == pytest.approx(planned.rates[g], rel=1e-12), g


def test_recording_after_the_scheduler_would_log_the_next_step() -> None:
    """The comparison sees an off-by-one: what the recorder's placement rule prevents."""
    model, _, opt = _setup()
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    late = Recorder(opt)
    applied = []
    for t in range(3):
        applied.append(_train_step(model, opt, t))
        sched.step()
        late.record()  # wrong place
    with pytest.raises(AssertionError):
        _check(late.history(), applied)


def test_attach_records_inside_optimizer_step() -> None:
    model, _, opt = _setup()
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    rec = Recorder(opt).attach()
    applied = []
    for t in range(4):
        applied.append(_train_step(model, opt, t))
        sched.step()  # wherever the scheduler steps, the hook read the rates before the update
    _check(rec.history(), applied)
    assert rec.history().meta["timing"] == "step pre-hook"
    rec.detach()
    _train_step(model, opt, 4)
    assert len(rec) == 4
    with pytest.raises(multilr.MultiLRError, match="already attached"):
        rec.attach().attach()


def test_attach_reads_the_rates_before_a_scheduler_stepped_from_a_post_hook() -> None:
    # "wherever the scheduler's step() is called" includes an optimizer step post-hook: a recorder
    # reading the rates after the step would log the next step's rate there
    model, _, opt = _setup()
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    opt.register_step_post_hook(lambda *_: sched.step())
    rec = Recorder(opt).attach()
    applied = [_train_step(model, opt, t) for t in range(3)]
    _check(rec.history(), applied)


def test_a_detached_recorder_can_attach_again() -> None:
    # detach removes the hook and forgets it; the steps taken while detached are not counted
    model, _, opt = _setup()
    rec = Recorder(opt).attach()
    applied = [_train_step(model, opt, 0)]
    rec.detach()
    _train_step(model, opt, 1)
    rec.attach()
    applied.append(_train_step(model, opt, 2))
    _check(rec.history(), applied)


def test_controller_rates_freezing_and_rescaling_are_recorded_as_applied() -> None:
    model, groups, opt = _setup()
    ctl = Controller(opt, groups, schedule=Step(1, 0.7))
    rec = Recorder(opt, meta={"schedule": ctl.schedule.describe()})
    names = ctl.groups
    applied = []
    for t in range(STEPS):
        if t == 1:
            ctl.freeze(names[0])
        if t == 3:
            ctl.set_scale(HEAD, 2.0)
        if t == 4:
            ctl.unfreeze(names[0], multiplier=0.5)
        applied.append(_train_step(model, opt, t))
        rec.record()  # after optimizer.step(), before controller.step()
        ctl.step()
    h = rec.history()
    _check(h, applied)
    assert h.rates[names[0]][1:4] == (0.0, 0.0, 0.0)
    plan = {g.name: g.lr for g in groups.plan.groups}
    assert h.rates[HEAD][3] == pytest.approx(plan[HEAD] * 2.0 * 0.7**3)
    assert h.rates[names[0]][4] == pytest.approx(plan[names[0]] * 0.5 * 0.7**4)


def test_fused_and_foreach_optimizers_and_json(tmp_path) -> None:
    model, groups, _ = _setup()
    opt = torch.optim.AdamW(groups, foreach=True)
    rec = Recorder(opt, every=2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, Step(1, 0.5))
    for _ in range(5):
        opt.zero_grad()
        model(torch.ones(2, 3, dtype=torch.float64)).sum().backward()
        opt.step()
        rec.record()
        sched.step()
    loaded = multilr.RateHistory.load(rec.save(tmp_path / "r.json"))
    assert loaded == rec.history() and loaded.steps == (0, 2, 4)
    assert loaded.rates[HEAD] == pytest.approx((1.0, 0.25, 0.0625))
