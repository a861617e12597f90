"""The integrations: ``MultiLRScheduler`` and the examples under ``examples/integrations``.

Each example runs in-process with small settings, and the checks read what the trainer
really did: a ``Recorder`` attached to the optimizer logs the rate of every group on
every optimizer step (inside ``optimizer.step()``, wherever the trainer steps the
scheduler), which must equal ``multilr.planned_rates`` step for step: a double step, a
skipped step, a reset or a collapsed ratio all change that sequence. Weight snapshots
show that frozen groups did not move and staged ones moved only after their stage.
Hugging Face and Lightning run with the working directory in ``tmp_path``, which must
stay empty, and with the hub offline.
"""

from __future__ import annotations

import importlib
import math
import sys
import warnings
from pathlib import Path

import pytest
import torch
from multilr_torch import MultiLRScheduler
from torch.optim.lr_scheduler import LRScheduler

import multilr
from multilr import MultiLRError, Prefix, Rule, Spec, Stage, UnsupportedFeatureError
from multilr.schedules import OneCycle, Step

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "integrations"


def example(name: str):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def assert_rates_as_planned(history, planned, context: str) -> None:
    assert list(history.steps) == list(planned.steps), (
        f"got steps {history.steps[:3]}..{history.steps[-1:]} ({len(history.steps)}), "
        f"should be 0..{len(planned.steps) - 1} [{context}]"
    )
    assert history.groups == planned.groups
    for g in planned.groups:
        for t, (got, want) in enumerate(zip(history.rates[g], planned.rates[g], strict=True)):
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0), (
                f"group {g!r} step {t}: got rate {got}, should be {want} [{context}]"
            )


def moved(before: dict, after: dict, prefix: str) -> bool:
    names = [n for n in before if n.startswith(prefix)]
    assert names, prefix
    return any(not torch.equal(before[n], after[n]) for n in names)


@pytest.fixture
def quiet_cwd(tmp_path, monkeypatch):
    """A fresh working directory that must stay empty; no network for the hub."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield tmp_path
    assert not list(cwd.iterdir()), f"the trainer wrote {sorted(p.name for p in cwd.iterdir())} into the cwd"


# -- MultiLRScheduler on its own -------------------------------------------------------


def _setup(spec=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    spec = spec or Spec(
        lr=0.1,
        hyper={"momentum": 0.9},
        rules=[Rule(Prefix("0"), lr_mult=0.1, name="body"), Rule(Prefix("1"), lr_mult=1.0, name="head")],
        stages=[Stage(("body",), at=3, lr_mult=0.5)],
        schedule=Step(2, 0.5),
    )
    groups = multilr.build(model, spec, backend="torch")
    opt = torch.optim.SGD(groups)
    return model, groups, opt


def _train(model, opt, sched, steps):
    for _ in range(steps):
        model(torch.ones(4, 3)).square().sum().backward()
        opt.step()
        opt.zero_grad()
        sched.step()


def test_scheduler_is_a_torch_scheduler_and_takes_no_step_when_built():
    _, groups, opt = _setup()
    sched = MultiLRScheduler(opt, groups)
    assert isinstance(sched, LRScheduler)
    assert sched.last_epoch == 0 and sched.controller.step_count == 0
    planned = multilr.planned_rates(groups.plan, 1)
    assert sched.get_last_lr() == [planned.rates[g][0] for g in planned.groups]


def test_scheduler_base_lrs_are_the_planned_rates_not_the_first_steps():
    # a frozen group starts at 0 and a one-cycle schedule low; torch's schedulers read
    # base_lrs as the rates the factors multiply
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    spec = Spec(lr=0.1, rules=[Rule(Prefix("1"), lr_mult=10, name="head"), Rule(Prefix("0"), frozen=True, name="body")])
    groups = multilr.build(model, spec)
    sched = MultiLRScheduler(torch.optim.SGD(groups), groups, OneCycle(10))
    assert sched.base_lrs == [g.lr for g in groups.plan.groups] == [0.1, 1.0]
    assert sched.get_last_lr()[0] == 0.0 and sched.get_last_lr()[1] < 1.0


def test_scheduler_steps_follow_the_plan_and_stages():
    model, groups, opt = _setup()
    sched = MultiLRScheduler(opt, groups)
    rec = multilr.Recorder(opt).attach()
    _train(model, opt, sched, 8)
    assert_rates_as_planned(rec.history(), multilr.planned_rates(groups.plan, 8), "plain SGD loop")
    assert sched.last_epoch == 8 and len(opt.param_groups) == len(groups.plan.groups)


def test_runtime_changes_through_the_controller_show_in_get_last_lr():
    _, groups, opt = _setup()
    sched = MultiLRScheduler(opt, groups)
    sched.controller.freeze("head")
    assert sched.get_last_lr()[groups.plan.groups.index(groups.plan.group("head"))] == 0.0
    assert sched.rates()["head"] == 0.0


def test_state_dict_resumes_exactly_and_loads_with_weights_only(tmp_path):
    model, groups, opt = _setup()
    sched = MultiLRScheduler(opt, groups)
    _train(model, opt, sched, 4)  # past the stage at step 3
    path = tmp_path / "sched.pt"
    torch.save(sched.state_dict(), path)
    state = torch.load(path, weights_only=True)

    model2, groups2, opt2 = _setup()
    sched2 = MultiLRScheduler(opt2, groups2)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr() and sched2.last_epoch == 4
    assert [p.requires_grad for p in model2.parameters()] == [p.requires_grad for p in model.parameters()]
    _train(model, opt, sched, 3)
    _train(model2, opt2, sched2, 3)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_a_controller_can_be_given_but_not_twice_configured():
    _, groups, opt = _setup()
    ctl = multilr.Controller(opt, groups)
    assert MultiLRScheduler(opt, ctl).controller is ctl
    with pytest.raises(MultiLRError, match="brings its own schedule"):
        MultiLRScheduler(opt, ctl, Step(1, 0.5))
    *_, opt3 = _setup()
    with pytest.raises(MultiLRError, match="another optimizer"):
        MultiLRScheduler(opt3, ctl)


def test_step_with_epoch_is_refused_and_early_step_warns():
    _, groups, opt = _setup()
    sched = MultiLRScheduler(opt, groups)
    with pytest.raises(UnsupportedFeatureError, match="step\\(epoch\\)"):
        sched.step(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched.step()  # before any optimizer.step()
    assert any("before optimizer.step()" in str(w.message) for w in caught)


# -- the examples ----------------------------------------------------------------------


def test_plain_loop_example():
    ex = example("plain_loop")
    steps = 40
    r = ex.main(steps=steps, verbose=False)
    assert_rates_as_planned(r.history, multilr.planned_rates(r.plan, steps, r.schedule), "plain loop")
    assert not moved(r.initial, r.at_unfreeze, "body"), "the body moved while its stage had not come"
    assert moved(r.initial, r.at_unfreeze, "head") and moved(r.at_unfreeze, r.final, "body")
    assert sum(r.losses[-10:]) < sum(r.losses[:10]), "the loss did not go down"


def test_hf_trainer_example(quiet_cwd):
    from transformers import get_linear_schedule_with_warmup

    ex = example("hf_trainer")
    steps, warmup = 24, 6
    r = ex.main(steps=steps, warmup=warmup, output_dir=str(quiet_cwd / "out"), verbose=False)
    planned = multilr.planned_rates(r.plan, steps, r.schedule)
    assert_rates_as_planned(r.history, planned, "inside HF Trainer")
    # the spec's schedule is transformers' own linear warm-up and decay, factor by factor
    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    hf = get_linear_schedule_with_warmup(probe, warmup, steps)
    hf_factors = []
    for _ in range(steps):
        hf_factors.append(probe.param_groups[0]["lr"])
        probe.step()
        hf.step()
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
               for a, b in zip(r.schedule.factors(steps), hf_factors, strict=True))
    # layer decay ratios hold on every step: each group / the top group = its planned scale
    top = r.plan.groups[-1].name
    for g in r.plan.groups:
        for t in range(1, steps):
            want = g.lr / r.plan.group(top).lr
            assert math.isclose(r.history.rates[g.name][t] / r.history.rates[top][t], want, rel_tol=1e-9)
    # what HF logs as learning_rate is group 0's rate on the step just taken
    logged = [(row["step"], row["learning_rate"]) for row in r.log_history if "loss" in row]
    assert logged
    for step, lr in logged:
        assert math.isclose(lr, r.history.rates[r.plan.groups[0].name][step - 1], rel_tol=1e-6)
    assert r.group_count == len(r.plan.groups)
    assert all(moved(r.initial, r.final, prefix) for prefix in ("bert.embeddings", "bert.encoder", "classifier"))


def test_lightning_example(quiet_cwd):
    ex = example("lightning_module")
    epochs = 2
    r = ex.main(epochs=epochs, root=str(quiet_cwd / "root"), verbose=False)
    spe = r.steps_per_epoch
    planned = multilr.planned_rates(r.plan, epochs * spe, r.scheduler.controller.schedule, steps_per_epoch=spe)
    assert_rates_as_planned(r.history, planned, "inside Lightning, interval='step'")
    assert r.scheduler.last_epoch == epochs * spe and r.group_count == len(r.plan.groups)
    start, after_epoch0, end = r.snapshots[0], r.snapshots[1], r.snapshots[-1]
    assert not moved(start, end, "stem"), "the frozen stem moved"
    assert not moved(start, after_epoch0, "blocks"), "the blocks moved before their stage (epoch 1)"
    assert moved(start, after_epoch0, "head") and moved(after_epoch0, end, "blocks")


def test_examples_print_what_they_did(capsys):
    ex = example("plain_loop")
    ex.main(steps=12, verbose=True)
    out = capsys.readouterr().out
    assert "multilr plan:" in out and "final loss" in out and "head/no_decay" in out


def test_readme_table_lists_every_example():
    text = (EXAMPLES / "README.md").read_text()
    for name in ("plain_loop.py", "hf_trainer.py", "lightning_module.py", "oneflow_mobilenet.py"):
        assert name in text
