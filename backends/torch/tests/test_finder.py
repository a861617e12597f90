"""multilr.lr_find on torch: planned ratios at every step, early stops, suggestions, exact restoration."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import multilr
from multilr import FinderJob, MultiLRError, SpecError, UnsupportedFeatureError, lr_find
from multilr.testing import assert_bit_identical

SPEC = {
    "lr": 1e-2,
    "rules": [
        {"name": "head", "prefix": "2", "lr_mult": 10},
        {"name": "stem", "prefix": "0", "frozen": True},
    ],
    "layer_decay": None,
}


def _mlp(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 1)).to(dtype)


def _spec() -> dict[str, Any]:
    return {k: v for k, v in SPEC.items() if v is not None}


def _data(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, generator=g, dtype=dtype)
    return x, x.sum(1, keepdim=True)


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def step() -> float:
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


# -- ratios ----------------------------------------------------------------------------


def test_every_group_keeps_its_planned_ratio_at_every_step() -> None:
    model = _mlp(torch.float64)
    groups = multilr.build(model, _spec())
    opt = torch.optim.SGD(groups)  # no momentum, no decay: update = -lr * grad, so lr is observable
    x, y = _data(torch.float64)
    stem = model[0].weight.detach().clone()
    seen: list[dict[str, float]] = []
    used: list[dict[str, float]] = []

    def step() -> float:
        seen.append({pg["name"]: pg["lr"] for pg in opt.param_groups})
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        before = {pg["name"]: [p.detach().clone() for p in pg["params"]] for pg in opt.param_groups}
        grads = {pg["name"]: [p.grad for p in pg["params"]] for pg in opt.param_groups}
        opt.step()
        rates = {}
        for pg in opt.param_groups:  # the rate the optimizer actually applied, from the update
            p, b, g = pg["params"][0], before[pg["name"]][0], grads[pg["name"]][0]
            rates[pg["name"]] = 0.0 if g is None else float(-((p - b) * g).sum().detach() / (g * g).sum())
        used.append(rates)
        assert torch.equal(model[0].weight, stem), "got the frozen stem moving, should stay put"
        return loss.item()

    result = lr_find(model, opt, step, plan=groups, start_lr=1e-5, end_lr=1e-1, num_it=20, diverge=None)
    assert result.ratios == {"stem/frozen": 0.0, "default": 1.0, "head": 10.0}
    assert len(seen) == len(used) == 20 == len(result.lrs)
    assert result.lrs[0] == pytest.approx(1e-5) and result.lrs[-1] == pytest.approx(1e-1)
    for i, (base, want, got) in enumerate(zip(result.lrs, seen, used, strict=True)):
        expect = {"stem/frozen": 0.0, "default": base, "head": 10 * base}
        assert want == pytest.approx(expect, rel=1e-12), f"step {i}: got groups at {want}, should be {expect}"
        assert got == pytest.approx(expect, rel=1e-9), (
            f"step {i}: optimizer applied {got}, should be {expect}"
        )
        assert result.rates.at(i) == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("absolute", ["spread", "rule-lr", "rates"])
def test_spec_with_lr_trains_every_group_at_the_rates_the_finder_measured(absolute: str) -> None:
    # absolute rates do not follow the spec's lr; the sweep scaled them, so must applying it
    spec = multilr.Spec.from_dict(
        {
            "lr": 1e-2,
            "rules": [
                {"name": "body", "prefix": "0", "frozen": False},
                {"name": "head", "prefix": "2", "frozen": False},
            ],
        }
    )
    if absolute == "spread":
        spec = dataclasses.replace(spec, spread=multilr.Spread(1e-4, 5e-3, over=("body", "head")))
    elif absolute == "rule-lr":
        spec = dataclasses.replace(spec, rules=[multilr.Rule(multilr.Prefix("2"), lr=3e-3, name="head")])
    else:
        spec = dataclasses.replace(spec, rules=(), rates={"2.weight": 5e-3})
    model = _mlp()
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups)
    result = lr_find(model, opt, _step(model, opt, *_data()), plan=groups, num_it=30)
    assert result.suggestion is not None
    applied = spec.with_lr(result.suggestion)
    rebuilt = {g["name"]: g["lr"] for g in multilr.build(_mlp(), applied)}
    assert rebuilt == pytest.approx(result.group_rates(), rel=1e-12)
    assert "apply it with spec.with_lr(" in result.summary()
    # what the plain replace gives instead: the absolute groups stay where they were
    replaced = {
        g["name"]: g["lr"] for g in multilr.build(_mlp(), dataclasses.replace(spec, lr=result.suggestion))
    }
    assert replaced != pytest.approx(result.group_rates(), rel=1e-6)


def test_summary_needs_no_with_lr_note_for_relative_rates() -> None:
    model = _mlp()
    groups = multilr.build(model, _spec())
    opt = torch.optim.SGD(groups)
    result = lr_find(model, opt, _step(model, opt, *_data()), plan=groups, num_it=30)
    assert result.suggestion is not None and "with_lr" not in result.summary()


def test_without_a_plan_the_current_ratios_are_kept() -> None:
    model = _mlp()
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.0},
            {"params": model[1].parameters(), "lr": 1e-3},
            {"params": model[2].parameters(), "lr": 4e-3},
        ]
    )
    seen = []

    def step() -> float:
        seen.append([pg["lr"] for pg in opt.param_groups])
        return 1.0

    result = lr_find(model, opt, step, num_it=5)
    assert result.ratios == {"group0": 0.0, "group1": 0.25, "group2": 1.0}
    assert [s[2] for s in seen] == pytest.approx(list(result.lrs))
    assert [s[1] for s in seen] == pytest.approx([b / 4 for b in result.lrs])
    assert [pg["lr"] for pg in opt.param_groups] == [0.0, 1e-3, 4e-3]


# -- stopping and suggestions ------------------------------------------------------------


def _quadratic(a: float = 1.0):
    """0.5 * a * |w|^2 under plain SGD: w <- (1 - lr a) w, which diverges for lr > 2 / a."""
    w = nn.Parameter(torch.ones(4, dtype=torch.float64))
    model = nn.ParameterList([w])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def step() -> float:
        opt.zero_grad()
        loss = 0.5 * a * (w * w).sum()
        loss.backward()
        opt.step()
        return loss.item()

    return model, opt, step


def test_without_a_plan_the_base_is_the_fastest_group_wherever_it_is() -> None:
    # the fastest group first: the base is the maximum, not the last group's rate
    model = _mlp()
    fast, slow = model[0].parameters(), model[1].parameters()
    opt = torch.optim.SGD([{"params": fast, "lr": 4e-3}, {"params": slow, "lr": 1e-3}])
    result = lr_find(model, opt, lambda: 1.0, num_it=5)
    assert result.ratios == {"group0": 1.0, "group1": 0.25}


def test_without_a_plan_repeated_group_names_fall_back_to_numbers() -> None:
    # two groups a user named alike still get a rate history each (its names must differ)
    model = _mlp()
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 1e-3, "name": "x"},
            {"params": model[1].parameters(), "lr": 1e-3, "name": "x"},
        ]
    )
    result = lr_find(model, opt, lambda: 1.0, num_it=5)
    assert result.rates.groups == ("group0", "group1")


def test_stops_when_the_smoothed_loss_diverges() -> None:
    model, opt, step = _quadratic(a=1.0)
    result = lr_find(model, opt, step, start_lr=1e-4, end_lr=1e3, num_it=100)
    assert result.stop == "diverged"
    assert len(result.lrs) < 100, f"got {len(result.lrs)} steps, should stop early"
    assert result.lrs[-1] > 2.0, f"got a stop at lr {result.lrs[-1]}, should be past the stability limit 2"
    best = min(result.smoothed)
    assert result.smoothed[-1] > 4 * best and all(s <= 4 * best for s in result.smoothed[:-1])
    assert torch.equal(model[0], torch.ones(4, dtype=torch.float64))  # restored


def test_stops_on_a_non_finite_loss_even_without_divergence_check() -> None:
    model, opt, _ = _quadratic()
    calls = []

    def step() -> float:
        calls.append(opt.param_groups[0]["lr"])
        return math.inf if len(calls) == 7 else 1.0

    result = lr_find(model, opt, step, num_it=50, diverge=None)
    assert (result.stop, len(result.lrs), len(calls)) == ("non-finite", 7, 7)
    assert math.isnan(result.smoothed[-1]) and result.losses[-1] == math.inf
    assert json.dumps(result.to_dict(), allow_nan=False)  # non-finite losses become null


def _scripted(losses: list[float]):
    """A model and optimizer that a step does not touch, and a step returning ``losses`` in turn."""
    model, opt, _ = _quadratic()
    it = iter(losses)
    return model, opt, lambda: next(it)


def test_smoothing_is_fastais_bias_corrected_moving_average() -> None:
    # the bias correction divides by 1 - 0.98^(i+1) at step i, so a constant loss smooths to itself
    # from the first step on (off by one, step 0 would read about half the loss)
    model, opt, step = _scripted([2.0] * 5 + [3.0])
    result = lr_find(model, opt, step, num_it=6, diverge=None)
    assert result.smoothed[:5] == pytest.approx([2.0] * 5, rel=1e-12)
    avg = 0.98 * 2.0 * (1 - 0.98**5) + 0.02 * 3.0
    assert result.smoothed[5] == pytest.approx(avg / (1 - 0.98**6), rel=1e-12)


def test_negative_losses_never_count_as_divergence() -> None:
    # "diverge x the best" means nothing for a best below 0 (a log-likelihood, a loss with an offset):
    # -1 is above 4 x -1, yet nothing diverged
    model, opt, step = _scripted([-1.0 - 0.1 * i for i in range(20)])
    result = lr_find(model, opt, step, num_it=20)
    assert (result.stop, len(result.lrs)) == ("completed", 20)


def test_the_first_tenth_of_the_steps_is_left_out_of_the_suggestions() -> None:
    # fastai's rule: the lowest rates move nothing, so a low loss there (a lucky first batch) is no minimum;
    # with 20 steps, steps 0 and 1 are skipped and the lowest smoothed loss left is at step 2
    model, opt, step = _scripted([0.5, 0.5] + [1.0] * 18)
    result = lr_find(model, opt, step, num_it=20, diverge=None)
    assert max(result.smoothed[:2]) < min(result.smoothed[2:])
    assert result.suggestions["minimum"] == pytest.approx(result.lrs[2] / 10, rel=1e-12)


def test_suggestion_is_sane_on_a_problem_with_a_known_good_rate() -> None:
    # Least squares with Hessian eigenvalues in [1, 4]: SGD is stable below 2 / 4 = 0.5, the best
    # fixed rate is 2 / (1 + 4) = 0.4, and each step draws a fresh noisy batch.
    torch.manual_seed(0)
    scales = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).sqrt()
    w_true = torch.randn(4, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(2)

    def step() -> float:
        x = torch.randn(64, 4, generator=gen, dtype=torch.float64) * scales
        y = x @ w_true + 0.1 * torch.randn(64, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        loss = 0.5 * ((model(x).squeeze(1) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    result = lr_find(model, opt, step, start_lr=1e-5, end_lr=10, num_it=100)
    assert result.stop == "diverged"
    assert set(result.suggestions) == {"valley", "steep", "minimum"}
    assert 0.01 <= result.suggestion <= 0.5, f"got {result.suggestion}, should be within [0.01, 0.5]"
    assert result.suggestion == result.suggestions["valley"]
    assert 0.001 <= result.suggestions["minimum"] <= 0.5


# -- restoration -----------------------------------------------------------------------


class Net(nn.Module):
    """BatchNorm (buffers), Dropout (train/eval flag), and a part left in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1))
        self.frozen_bn = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.frozen_bn(self.body(x)))


SPEC2 = {"lr": 1e-3, "weight_decay": 0.01, "rules": [{"prefix": "head", "lr_mult": 5}]}


def _trained_setup():
    torch.manual_seed(0)
    model = Net()
    groups = multilr.build(model, SPEC2)
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    x, y = _data()
    model.train()
    model.frozen_bn.eval()
    for _ in range(3):  # Adam moments, step counts, BN statistics, a scheduled rate and grads exist
        _step(model, opt, x, y)()
        sched.step()
    return model, groups, opt, sched, x, y


def _state(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(model.state_dict()),
        "opt": copy.deepcopy(opt.state_dict()),
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


def _check_restored(model, groups, opt, before) -> None:
    after = _state(model, opt)
    for key in ("model", "opt", "grads", "training"):
        assert_bit_identical(after[key], before[key], key)
    assert all(a is b for a, b in zip(opt.param_groups, groups, strict=True)), (
        "group dicts should be the user's own"
    )


@pytest.mark.parametrize("stop", ["completed", "diverged"])
def test_model_and_optimizer_are_restored_bit_identically(stop: str) -> None:
    model, groups, opt, _, x, y = _trained_setup()
    twin_model = copy.deepcopy(model)
    before = _state(model, opt)
    end = 1e-2 if stop == "completed" else 1e4
    result = lr_find(model, opt, _step(model, opt, x, y), plan=groups, start_lr=1e-6, end_lr=end, num_it=30)
    assert result.stop == stop
    _check_restored(model, groups, opt, before)
    # and training goes on exactly as if the finder had never run (same dropout masks for both)
    twin_opt = torch.optim.AdamW(multilr.build(twin_model, SPEC2))
    twin_opt.load_state_dict(before["opt"])
    for _ in range(2):
        rng = torch.get_rng_state()
        _step(model, opt, x, y)()
        torch.set_rng_state(rng)
        _step(twin_model, twin_opt, x, y)()
    for (n, a), b in zip(model.state_dict().items(), twin_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"got {n} diverging from a run without the finder"


def test_restored_when_the_step_raises() -> None:
    model, groups, opt, _, x, y = _trained_setup()
    before = _state(model, opt)
    inner = _step(model, opt, x, y)
    calls = []

    def step() -> float:
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("out of data")
        return inner()

    with pytest.raises(RuntimeError, match="out of data"):
        lr_find(model, opt, step, plan=groups, num_it=20)
    _check_restored(model, groups, opt, before)


def test_restored_when_the_step_returns_no_loss() -> None:
    model, groups, opt, _, x, y = _trained_setup()
    before = _state(model, opt)
    inner = _step(model, opt, x, y)

    with pytest.raises(MultiLRError, match=r"step_fn must return the batch's loss.*NoneType at step 0"):
        lr_find(model, opt, lambda: (inner(), None)[1], plan=groups)
    _check_restored(model, groups, opt, before)


def test_train_and_eval_flags_are_restored_when_the_step_switches_them() -> None:
    # a step_fn that calls model.train() (as training loops do) would leave the eval-mode BN training
    model, groups, opt, _, x, y = _trained_setup()
    before = _state(model, opt)
    inner = _step(model, opt, x, y)

    def step() -> float:
        model.train()
        return inner()

    lr_find(model, opt, step, plan=groups, start_lr=1e-6, end_lr=1e-2, num_it=10)
    assert not model.frozen_bn.training
    _check_restored(model, groups, opt, before)


def test_fresh_optimizer_state_is_restored_empty() -> None:
    model = _mlp()
    groups = multilr.build(model, _spec())
    opt = torch.optim.Adam(groups)
    x, y = _data()
    lr_find(model, opt, _step(model, opt, x, y), plan=groups, num_it=10)
    assert opt.state_dict()["state"] == {}
    assert all(p.grad is None for p in model.parameters())


# -- refusals --------------------------------------------------------------------------


def _untouched_setup():
    model = _mlp()
    groups = multilr.build(model, _spec())
    opt = torch.optim.SGD(groups)
    calls: list[int] = []

    def step() -> float:
        calls.append(1)
        return 1.0

    return model, groups, opt, step, calls


BAD = [
    pytest.param({"start_lr": 0}, "start_lr", id="start-zero"),
    pytest.param({"start_lr": -1e-3}, "start_lr", id="start-negative"),
    pytest.param({"end_lr": math.nan}, "end_lr", id="end-nan"),
    pytest.param({"start_lr": 1.0, "end_lr": 1.0}, "end_lr must be > start_lr", id="end-not-above-start"),
    pytest.param({"num_it": 1}, "num_it", id="num-it-1"),
    pytest.param({"num_it": 2.5}, "num_it", id="num-it-float"),
    pytest.param({"num_it": True}, "num_it", id="num-it-bool"),
    pytest.param({"diverge": 1.0}, "diverge", id="diverge-1"),
    pytest.param({"method": "slide"}, "method", id="method-unknown"),
    pytest.param({"plan": "groups"}, "plan", id="plan-wrong-type"),
]


@pytest.mark.parametrize(("kwargs", "named"), BAD)
def test_bad_arguments_are_refused_before_anything_runs(kwargs: dict[str, Any], named: str) -> None:
    model, groups, opt, step, calls = _untouched_setup()
    with pytest.raises(SpecError, match=named):
        lr_find(model, opt, step, **{"plan": groups, **kwargs})
    assert calls == [] and [pg["lr"] for pg in opt.param_groups] == [g["lr"] for g in groups]


def test_step_fn_must_be_callable() -> None:
    model, groups, opt, _, _ = _untouched_setup()
    with pytest.raises(SpecError, match="step_fn must be callable"):
        lr_find(model, opt, 0.5, plan=groups)  # type: ignore[arg-type]


def test_a_plan_that_does_not_match_the_optimizer_is_refused() -> None:
    model, _, opt, step, calls = _untouched_setup()
    other = multilr.build(_mlp(), {"lr": 0.1})
    with pytest.raises(MultiLRError, match="the optimizer has 3 param groups, the plan 1"):
        lr_find(model, opt, step, plan=other)
    assert calls == []


def test_a_plan_whose_groups_are_in_another_order_is_refused() -> None:
    # the same groups, reversed: each would be swept at another group's ratio
    model = _mlp()
    groups = multilr.build(model, _spec())
    opt = torch.optim.SGD(list(reversed(groups)))
    calls: list[int] = []
    message = r"optimizer group 0 is 'head', the plan's group 0 is 'stem/frozen'"
    with pytest.raises(MultiLRError, match=message):
        lr_find(model, opt, lambda: calls.append(1) or 1.0, plan=groups)
    assert calls == []


def test_graph_style_groups_are_refused_naming_eager_mode() -> None:
    model = _mlp()
    opt = torch.optim.SGD([{"params": list(model.parameters()), "lr": 0.1, "lr_scale": 1.0}])
    with pytest.raises(UnsupportedFeatureError, match="backend='oneflow'"):
        lr_find(model, opt, lambda: 1.0)


# -- the job form ----------------------------------------------------------------------


def test_finder_job_runs_with_its_options_and_overrides() -> None:
    model = _mlp()
    groups = multilr.build(model, _spec())
    opt = torch.optim.SGD(groups)
    x, y = _data()
    job = FinderJob(model, opt, _step(model, opt, x, y), plan=groups, options={"num_it": 12, "end_lr": 1.0})
    assert len(job.run().lrs) <= 12 and job.run().lrs[-1] <= 1.0
    result = job.run(num_it=8, method="minimum")
    assert result.num_it == 8 and result.suggestion == result.suggestions["minimum"]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["format"] == "multilr.lr_find/1"
    assert multilr.RateHistory.from_dict(data["rates"]) == result.rates
    assert set(result.group_rates()) == {"stem/frozen", "default", "head"}
    assert "suggested base lr" in result.summary()
