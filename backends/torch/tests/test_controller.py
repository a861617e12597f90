"""multilr.Controller on real torch: schedule x multiplier per group, freezing that stops every update."""

from __future__ import annotations

import copy
from typing import Any

import models
import pytest
import torch

import multilr
from multilr import Controller, LayerDecay, MultiLRError, Prefix, Rule, Spec, SpecError, Stage
from multilr.schedules import Function, Step


def Net() -> models.TinyNet:
    """The model of these tests (examples/models.py)."""
    return models.tiny_net(nested=True, act="relu")


HEAD = "head/depth3"  # the head rule and its layer-decay depth name the group
SPEC = Spec(
    lr=0.1,
    weight_decay=0.1,
    rules=[Rule(Prefix("head"), lr_mult=10, name="head")],
    layer_decay=LayerDecay(0.5),
)


def _setup(schedule=None):
    model = Net()
    groups = multilr.build(model, SPEC, backend="torch")
    opt = torch.optim.AdamW(groups)
    return model, groups, opt, Controller(opt, groups, schedule=schedule)


def _train_step(model, opt, ctl) -> None:
    opt.zero_grad()
    model(torch.ones(5, 3)).square().sum().backward()
    opt.step()
    ctl.step()


def test_rates_are_plan_x_multiplier_x_schedule() -> None:
    model, groups, opt, ctl = _setup(Step(1, 0.5))
    planned = {g.name: g.lr for g in groups.plan.groups}
    assert ctl.rates() == pytest.approx(planned)
    _train_step(model, opt, ctl)
    ctl.set_scale(HEAD, 3.0)
    want = {n: lr * 0.5 * (3.0 if n == HEAD else 1.0) for n, lr in planned.items()}
    assert ctl.rates() == pytest.approx(want)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(list(want.values()))


def test_frozen_groups_do_not_move_at_all_and_unfreeze_resumes() -> None:
    model, groups, opt, ctl = _setup()
    _train_step(model, opt, ctl)  # AdamW now has moments for every tensor
    frozen = [n for n in ctl.groups if n != HEAD][:2]
    ctl.freeze(*frozen)
    tensors = {n: p for n, p in model.named_parameters()}
    members = [n for g in groups.plan.groups if g.name in frozen for n in g.params]
    before = {n: tensors[n].detach().clone() for n in members}
    for _ in range(3):  # momentum and decoupled weight decay would move them if anything did
        _train_step(model, opt, ctl)
    for n in members:
        assert torch.equal(tensors[n], before[n]), n
        assert not tensors[n].requires_grad
    assert set(ctl.frozen()) == set(frozen)
    ctl.unfreeze(*frozen, multiplier=0.1)
    _train_step(model, opt, ctl)
    assert all(not torch.equal(tensors[n], before[n]) for n in members)
    assert ctl.rates()[frozen[0]] == pytest.approx(groups.plan.group(frozen[0]).lr * 0.1)


def test_freeze_to_uses_layer_decay_depths() -> None:
    _, groups, _, ctl = _setup()
    ctl.freeze_to(-1)  # only the top depth (the head) trains
    assert ctl.frozen() == [n for n in ctl.groups if n != HEAD]
    ctl.freeze_to(1)  # the stem (depth 0) frozen, the rest trains
    stem = {g.name for g in groups.plan.groups if all(p.startswith("stem.") for p in g.params)}
    assert set(ctl.frozen()) == stem


def test_freeze_to_refuses_a_group_across_the_cut() -> None:
    model = Net()
    groups = multilr.build(model, Spec(lr=0.1), backend="torch")  # one group for everything
    ctl = Controller(torch.optim.SGD(groups), groups)
    with pytest.raises(MultiLRError, match=r"group 'default' holds depths 0\.\.3, on both sides of depth 2"):
        ctl.freeze_to(2)
    assert ctl.frozen() == []


def test_freeze_to_counts_every_tensor_when_layer_decay_has_a_within() -> None:
    # layer decay on the blocks only: stem and head have no decay factor, yet a depth
    spec = Spec(
        lr=0.1,
        rules=[Rule(Prefix("head"), lr_mult=10, name="head")],
        layer_decay=LayerDecay(0.5, within=Prefix("blocks")),
    )
    groups = multilr.build(Net(), spec, backend="torch")
    ctl = Controller(torch.optim.SGD(groups), groups)
    assert groups.plan.block_depths()["head.weight"] == 3
    ctl.freeze_to(-1)  # was a KeyError on 'stem.weight'
    assert ctl.frozen() == [n for n in ctl.groups if n != "head"]


@pytest.mark.parametrize("hints", [True, False], ids=["model-hints", "names-only"])
def test_freeze_to_follows_the_models_group_matcher(hints: bool) -> None:
    # timm's ViT matcher puts the final norm in the last block's layer; the names alone
    # put it beside the head, so "train the head only" works with the model's hints
    import models

    model = models.tiny_vit(depth=2, dim=8)
    spec = Spec(lr=0.1, rules=[Rule(Prefix("head"), lr_mult=10, name="head")], model_hints=hints)
    groups = multilr.build(model, spec, backend="torch")
    ctl = Controller(torch.optim.SGD(groups), groups)
    depths = groups.plan.block_depths()
    assert (depths["norm.weight"], depths["head.weight"]) == ((2, 3) if hints else (3, 3))
    if hints:
        ctl.freeze_to(-1)
        assert ctl.frozen() == ["default"]
        assert [p.requires_grad for p in model.head.parameters()] == [True, True]
        assert not model.norm.weight.requires_grad
    else:
        with pytest.raises(
            MultiLRError, match=r"group 'default' holds depths 0\.\.3, on both sides of depth 3"
        ):
            ctl.freeze_to(-1)


def test_unfreeze_all_is_fastais_unfreeze() -> None:
    model, groups, _, ctl = _setup()
    ctl.freeze_to(-1)  # fastai's freeze(): only the top trains
    assert ctl.frozen() == [n for n in ctl.groups if n != HEAD]
    ctl.unfreeze_all(multiplier=0.5)
    assert ctl.frozen() == [] and all(p.requires_grad for p in model.parameters())
    want = {g.name: g.lr * (1.0 if g.name == HEAD else 0.5) for g in groups.plan.groups}
    assert ctl.rates() == pytest.approx(want)
    ctl.unfreeze_all()  # nothing frozen: nothing to do
    assert ctl.rates() == pytest.approx(want)
    with pytest.raises(SpecError, match="unfreeze multiplier"):
        ctl.unfreeze_all(multiplier=-1.0)


def test_bad_calls_change_nothing() -> None:
    _, groups, opt, ctl = _setup()
    rates = ctl.rates()
    with pytest.raises(
        SpecError, match=r"unknown group or parameter 'haed/depth3' \(did you mean 'head/depth3'\?\)"
    ):
        ctl.freeze("haed/depth3")
    with pytest.raises(MultiLRError, match=r"cannot unfreeze \['head/depth3'\]: not frozen"):
        ctl.unfreeze(HEAD)
    with pytest.raises(MultiLRError, match=r"freeze\(\) needs the groups .* is ctl.freeze_to\(-1\)"):
        ctl.freeze()
    # an empty list of groups is no request to thaw everything
    with pytest.raises(MultiLRError, match=r"unfreeze\(\) needs the groups .* is ctl.unfreeze_all\(\)"):
        ctl.unfreeze(*[])
    with pytest.raises(SpecError, match="must be >= 0"):
        ctl.set_scale(HEAD, -1)
    assert ctl.rates() == rates and ctl.frozen() == []
    bad = Controller(opt, groups, schedule=Function(lambda t: 1.0 - t, name="negative at 2"))
    bad.step()
    with pytest.raises(SpecError, match=r"gives factor -1\.0 at step 2"):
        bad.step()
    assert bad.step_count == 1 and bad.rates()[HEAD] == 0.0


def test_state_dict_round_trip() -> None:
    model, groups, opt, ctl = _setup(Step(1, 0.5))
    ctl.freeze(ctl.groups[0])
    ctl.set_scale(HEAD, 2.0)
    _train_step(model, opt, ctl)
    state = ctl.state_dict()
    other = Controller(opt, groups, schedule=Step(1, 0.5))
    other.load_state_dict(state)
    assert other.rates() == ctl.rates() and other.frozen() == ctl.frozen() and other.step_count == 1
    with pytest.raises(SpecError, match=r"unknown groups \['nope'\]"):
        other.load_state_dict({**state, "frozen": ["nope"]})
    assert other.rates() == ctl.rates()


def test_groups_that_do_not_match_the_plan_are_refused() -> None:
    model = Net()
    groups = multilr.build(model, SPEC, backend="torch")
    opt = torch.optim.SGD(groups)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1})
    with pytest.raises(MultiLRError, match="no add_param_group"):
        Controller(opt, groups)


@pytest.mark.parametrize("freeze_by", ["requires_grad", "grad"])
def test_tensors_the_model_switched_off_stay_off_until_their_group_is_unfrozen(freeze_by: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].bias.requires_grad_(False)  # the model's own choice, not the spec's
    groups = multilr.build(model, {"lr": 0.1, "rules": [{"prefix": "1", "lr_mult": 10, "name": "head"}]})
    ctl = Controller(torch.optim.SGD(groups), groups, freeze_by=freeze_by)  # type: ignore[arg-type]
    assert not model[0].bias.requires_grad, "got the model's own 'off' switched on by the Controller"
    assert model[0].weight.requires_grad
    ctl.load_state_dict(ctl.state_dict())
    assert not model[0].bias.requires_grad, "got the model's own 'off' switched on by load_state_dict"
    ctl.step()
    assert not model[0].bias.requires_grad, "got the model's own 'off' switched on by step()"
    ctl.freeze("default")
    ctl.unfreeze("default")  # an explicit unfreeze of its group is the user asking for it
    assert model[0].bias.requires_grad, "an explicit unfreeze should switch the group's tensors on"
    ctl.close()


def test_a_stage_or_freeze_to_leaves_the_models_own_off_switch_alone() -> None:
    # a LoRA-style base the user froze must not start training when a gradual-unfreezing
    # stage or freeze_to reaches its depth; only an unfreeze that names its group does
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].weight.requires_grad_(False)
    spec = Spec(lr=0.1, layer_decay=LayerDecay(0.5), stages=[Stage(at=1, from_depth=0)])
    groups = multilr.build(model, spec)
    ctl = Controller(torch.optim.SGD(groups), groups)
    ctl.step()  # the stage unfreezes depth 0
    assert model[0].bias.requires_grad and not model[0].weight.requires_grad
    ctl.freeze_to(-1)
    ctl.freeze_to(0)
    assert model[0].bias.requires_grad and not model[0].weight.requires_grad
    ctl.freeze(groups.plan.groups[0].name)
    ctl.unfreeze(groups.plan.groups[0].name)
    assert model[0].weight.requires_grad, "an unfreeze naming the group should switch it on"


def _lora_like(seed: int = 0) -> tuple[torch.nn.Sequential, torch.optim.Optimizer, Controller]:
    """A base the model switched off, frozen by the spec too, and a head."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)  # the model's own choice (a LoRA base)
    spec = {"lr": 0.1, "rules": [{"prefix": "0", "frozen": True, "name": "base"}]}
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups, momentum=0.9)
    return model, opt, Controller(opt, groups)


def _lora_step(model: torch.nn.Module, opt: torch.optim.Optimizer, ctl: Controller) -> None:
    opt.zero_grad()
    model(torch.ones(5, 2)).square().sum().backward()
    opt.step()
    ctl.step()


@pytest.mark.parametrize("through", ["controller", "checkpoint"])
def test_a_resumed_run_trains_what_an_unfreeze_switched_on(through: str) -> None:
    # unfreeze("base") switched the model's own "off" on; a run resumed from a checkpoint
    # must train the same tensors, or it silently differs from the run it continues
    model, opt, ctl = _lora_like()
    ctl.unfreeze("base/frozen")
    _lora_step(model, opt, ctl)
    assert ctl.state_dict()["thawed"] == ["base/frozen"]
    # a copy, as torch.save makes: state_dict() holds the live momentum buffers
    if through == "controller":
        saved = copy.deepcopy((opt.state_dict(), ctl.state_dict()))
    else:
        saved = copy.deepcopy((multilr.state_dict(opt, ctl),))
    resumed_model, resumed_opt, resumed_ctl = _lora_like()
    resumed_model.load_state_dict(model.state_dict())
    if through == "controller":
        resumed_opt.load_state_dict(saved[0])
        resumed_ctl.load_state_dict(saved[1])
    else:
        multilr.load_state_dict(resumed_opt, saved[0], resumed_ctl)
    assert resumed_model[0].weight.requires_grad, "the resumed run left the unfrozen base off"
    for m, o, c in ((model, opt, ctl), (resumed_model, resumed_opt, resumed_ctl)):
        _lora_step(m, o, c)
    torch.testing.assert_close(resumed_model[0].weight, model[0].weight, rtol=0, atol=0)


def test_freezing_again_ends_a_thaw_and_old_checkpoints_have_none() -> None:
    model, _, ctl = _lora_like()
    ctl.unfreeze("base/frozen")
    ctl.freeze("base/frozen")
    assert ctl.state_dict()["thawed"] == [] and not model[0].weight.requires_grad
    ctl.unfreeze("base/frozen")
    state = {k: v for k, v in ctl.state_dict().items() if k != "thawed"}  # written before it existed
    _, _, fresh = _lora_like()
    fresh.load_state_dict(state)
    assert fresh.frozen() == [] and fresh.state_dict()["thawed"] == []
    with pytest.raises(SpecError, match=r"unknown groups \['nope'\]"):
        fresh.load_state_dict({**state, "thawed": ["nope"]})
    with pytest.raises(SpecError, match="thawed must be a list of names"):
        fresh.load_state_dict({**state, "thawed": "base/frozen"})


def _model_off_run(freeze_by: str) -> tuple[torch.nn.Sequential, torch.optim.Optimizer, Controller]:
    """Layer 0 switched off by the model; layer decay gives it a group of its own."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    groups = multilr.build(model, {"lr": 0.1, "layer_decay": {"decay": 0.5}})
    opt = torch.optim.SGD(groups)
    return model, opt, Controller(opt, groups, freeze_by=freeze_by)  # type: ignore[arg-type]


@pytest.mark.parametrize("freeze_by", ["requires_grad", "grad"])
def test_a_thaw_then_a_freeze_resumes_as_it_ran(freeze_by: str) -> None:
    # under "grad" freezing keeps requires_grad on, so the thaw lasts and a later
    # freeze_to(0) trains layer 0; under "requires_grad" freezing ends it
    model, opt, ctl = _model_off_run(freeze_by)
    g0 = ctl.groups[0]
    ctl.freeze(g0)
    ctl.unfreeze(g0)
    ctl.freeze(g0)
    assert ctl.state_dict()["thawed"] == ([g0] if freeze_by == "grad" else [])
    saved = copy.deepcopy(multilr.state_dict(opt, ctl))
    resumed, resumed_opt, resumed_ctl = _model_off_run(freeze_by)
    resumed.load_state_dict(model.state_dict())
    multilr.load_state_dict(resumed_opt, saved, resumed_ctl)
    for m, o, c in ((model, opt, ctl), (resumed, resumed_opt, resumed_ctl)):
        c.freeze_to(0)
        _lora_step(m, o, c)
    assert resumed[0].weight.requires_grad == model[0].weight.requires_grad == (freeze_by == "grad")
    torch.testing.assert_close(resumed[0].weight, model[0].weight, rtol=0, atol=0)


def test_loading_an_earlier_state_undoes_a_thaw() -> None:
    # rolling back in place (same model, optimizer, Controller) to a state saved before the
    # unfreeze: the model's own "off" comes back, and the Controller no longer reports the thaw
    model, opt, ctl = _model_off_run("requires_grad")
    before = copy.deepcopy(ctl.state_dict())
    ctl.freeze(ctl.groups[0])
    ctl.unfreeze(ctl.groups[0])
    assert model[0].weight.requires_grad
    ctl.load_state_dict(before)
    assert not model[0].weight.requires_grad and ctl.state_dict()["thawed"] == []
    start = model[0].weight.detach().clone()
    _lora_step(model, opt, ctl)
    assert torch.equal(model[0].weight, start), "the model-off layer trained after the rollback"


def test_a_refused_checkpoint_leaves_the_thawed_groups_as_they_were() -> None:
    _, opt, ctl = _model_off_run("requires_grad")
    ctl.freeze(ctl.groups[0])
    ctl.unfreeze(ctl.groups[0])
    saved = copy.deepcopy(multilr.state_dict(opt, ctl))
    fresh_model, fresh_opt, fresh = _model_off_run("requires_grad")

    def refuse(*_: Any) -> None:
        raise RuntimeError("disk says no")

    fresh_opt.register_load_state_dict_pre_hook(refuse)  # the optimizer refuses, after the Controller loaded
    with pytest.raises(multilr.CheckpointError, match="nothing changed"):
        multilr.load_state_dict(fresh_opt, saved, fresh)
    assert fresh.state_dict()["thawed"] == [] and not fresh_model[0].weight.requires_grad


@pytest.mark.parametrize("moved", ["steps_per_epoch", "stage_at"])
def test_a_stage_due_but_never_applied_is_applied_on_load(moved: str) -> None:
    # saved at step 6 with stage "all" due at step 8; resumed where it falls due earlier
    # (fewer steps per epoch, or the spec moved it): it is applied at load, where it was
    # silently marked done and its groups stayed frozen for good
    def run(spe: int, at_epoch: int) -> tuple[torch.optim.Optimizer, Controller]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        spec = Spec(
            lr=0.1,
            layer_decay=LayerDecay(0.5),
            stages=[Stage(from_depth=-1, at=0, name="head"), Stage(from_depth=0, epoch=at_epoch, name="all")],
        )
        groups = multilr.build(model, spec)
        opt = torch.optim.SGD(groups)
        return opt, Controller(opt, groups, steps_per_epoch=spe)

    opt, ctl = run(4, 2)
    for _ in range(6):
        opt.step()
        ctl.step()
    assert ctl.frozen() == ["depth0/all"]
    saved = copy.deepcopy(multilr.state_dict(opt, ctl))
    new_opt, new_ctl = run(3, 2) if moved == "steps_per_epoch" else run(4, 1)
    multilr.load_state_dict(new_opt, saved, new_ctl)
    assert new_ctl.frozen() == [] and new_ctl.state_dict()["stages_done"] == ["all", "head"]
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("multipliers", [1.0], "multipliers must map group names to numbers"),
        ("frozen", "default", "frozen must be a list of names"),
        ("stages_done", None, "stages_done must be a list of names"),
        ("thawed", 5, "thawed must be a list of names"),
    ],
)
def test_a_malformed_controller_state_is_a_spec_error_naming_the_key(key: str, value: Any, message: str) -> None:
    _, _, ctl = _model_off_run("requires_grad")
    with pytest.raises(SpecError, match=message):
        ctl.load_state_dict({**ctl.state_dict(), key: value})


def test_unfreezing_a_group_with_an_integer_tensor_switches_on_only_the_float_ones() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].register_parameter("count", torch.nn.Parameter(torch.zeros(3, dtype=torch.long), requires_grad=False))
    groups = multilr.build(model, {"lr": 0.1, "rules": [{"prefix": "0", "frozen": True, "name": "body"}]})
    ctl = Controller(torch.optim.SGD(groups), groups)
    ctl.unfreeze("body/frozen")  # torch cannot give an integer tensor a gradient
    assert model[0].weight.requires_grad and model[0].bias.requires_grad
    assert not model[0].count.requires_grad and ctl.frozen() == []


@pytest.mark.parametrize("call", ["set_scale", "freeze", "unfreeze", "freeze_to"])
def test_every_change_refuses_rates_another_driver_wrote(call: str) -> None:
    # OneCycleLR next to a Controller used only for freezing: set_scale or unfreeze would put
    # the group back at its planned rate for a step, and the scheduler would then undo it
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    spec = {"lr": 0.1, "layer_decay": {"decay": 0.5}, "rules": [{"prefix": "0", "frozen": True, "name": "body"}]}
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=10)
    before = (ctl.state_dict(), [g["lr"] for g in opt.param_groups], [p.requires_grad for p in model.parameters()])
    act = {
        "set_scale": lambda: ctl.set_scale("depth1", 2.0),
        "freeze": lambda: ctl.freeze("depth1"),
        "unfreeze": lambda: ctl.unfreeze("body/depth0/frozen"),
        "freeze_to": lambda: ctl.freeze_to(0),
    }[call]
    with pytest.raises(MultiLRError, match=r"has lr .* but the Controller set"):
        act()
    after = (ctl.state_dict(), [g["lr"] for g in opt.param_groups], [p.requires_grad for p in model.parameters()])
    assert after == before, "got a refused call changing something"


@pytest.mark.parametrize("step", ["3", 3.0, True], ids=["text", "float", "bool"])
def test_a_state_whose_step_is_not_an_integer_is_refused_and_changes_nothing(step: object) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    groups = multilr.build(model, {"lr": 0.1, "rules": [{"prefix": "1", "lr_mult": 10, "name": "head"}]})
    ctl = Controller(torch.optim.SGD(groups), groups)
    state = {**ctl.state_dict(), "step": step}
    before = ctl.state_dict()
    with pytest.raises(SpecError, match=rf"controller state step must be an integer, got {step!r}"):
        ctl.load_state_dict(state)
    assert ctl.state_dict() == before, "got the Controller changed by a refused state"


@pytest.mark.parametrize(
    "made", ["before", "after"], ids=["scheduler-before-controller", "scheduler-after-controller"]
)
@pytest.mark.parametrize("kind", ["lambda", "cosine", "onecycle"])
def test_a_framework_scheduler_on_the_same_optimizer_is_refused_at_the_next_step(
    made: str, kind: str
) -> None:
    # two drivers of one optimizer's rates undo each other silently (a group the Controller
    # unfreezes would stay at the scheduler's 0): the Controller's step refuses to go on
    model = Net()
    groups = multilr.build(model, SPEC, backend="torch")
    opt = torch.optim.AdamW(groups)

    def scheduler():
        if kind == "lambda":
            return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5**t)
        if kind == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=10)

    sched = scheduler() if made == "before" else None
    ctl = Controller(opt, groups)
    sched = sched or scheduler()
    opt.zero_grad()
    model(torch.ones(5, 3)).square().sum().backward()
    opt.step()
    sched.step()
    with pytest.raises(MultiLRError, match=r"has lr .* but the Controller set .*\(a framework LR scheduler"):
        ctl.step()
    assert ctl.step_count == 0


def test_a_rule_name_alone_suggests_the_group_named_after_it() -> None:
    model = Net()
    groups = multilr.build(model, Spec(lr=0.1, rules=[Rule(Prefix("stem"), frozen=True, name="stem")]))
    ctl = Controller(torch.optim.SGD(groups), groups)
    with pytest.raises(
        SpecError, match=r"unknown group or parameter 'stem' \(did you mean 'stem/frozen'\?\)"
    ):
        ctl.unfreeze("stem")


def _staged_body() -> tuple[torch.nn.Sequential, torch.optim.SGD, Controller]:
    """Layer 0 frozen until a stage at step 2 (x0.1) or 3 (see the callers)."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    spec = {
        "lr": 0.1,
        "rules": [{"prefix": "0", "name": "body", "frozen": True}],
        "stages": [{"unfreeze": ["body"], "at": 3, "lr_mult": 0.1}],
    }
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups)
    return model, opt, Controller(opt, groups)


def test_a_group_unfrozen_by_hand_before_its_stage_keeps_the_multiplier_it_was_given() -> None:
    _, _, ctl = _staged_body()
    ctl.step()
    ctl.unfreeze("body/stage0", multiplier=0.5)  # early, by hand, at half rate
    for _ in range(3):
        ctl.step()  # the stage's step (3) passes: its x0.1 is for a group it still thaws
    assert ctl.step_count == 4 and ctl.rates()["body/stage0"] == pytest.approx(0.05)


def test_a_stage_already_applied_when_an_old_state_was_saved_is_not_applied_again() -> None:
    # an old-format state (no stages_done) saved at the stage's own step, after the user
    # froze the group again: the stage counts as done, the group stays frozen
    _, _, ctl = _staged_body()
    for _ in range(3):
        ctl.step()
    assert ctl.frozen() == []
    ctl.freeze("body/stage0")
    state = {k: v for k, v in ctl.state_dict().items() if k not in ("stages_done", "thawed")}
    assert state["step"] == 3
    _, _, fresh = _staged_body()
    fresh.load_state_dict(state)
    assert fresh.frozen() == ["body/stage0"]


def test_freezing_between_backward_and_step_keeps_the_optimizer_off_the_frozen_tensors() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    groups = multilr.build(model, {"lr": 0.1, "rules": [{"prefix": "0", "name": "body", "lr_mult": 2.0}]})
    opt = torch.optim.SGD(groups, momentum=0.9)
    ctl = Controller(opt, groups)
    model(torch.ones(1, 2)).sum().backward()
    before = model[0].weight.detach().clone()
    ctl.freeze("body")
    opt.step()
    assert model[0].weight.grad is None and model[0].weight not in opt.state  # no momentum made
    assert torch.equal(model[0].weight.detach(), before)
    assert model[1].weight in opt.state  # the rest stepped


def test_an_optimizer_with_the_plans_group_names_but_other_tensors_is_refused_and_untouched() -> None:
    spec = {"lr": 0.1, "rules": [{"prefix": "0", "name": "body", "lr_mult": 2.0}]}
    planned = multilr.build(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)), spec)
    other = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2))
    opt = torch.optim.SGD(multilr.build(other, spec))
    opt.param_groups[0]["lr"] = 123.0
    with pytest.raises(MultiLRError, match="body"):
        Controller(opt, planned)  # the plan of one model, the optimizer of another
    assert [g["lr"] for g in opt.param_groups] == [123.0, 0.1]
    assert [len(g["params"]) for g in opt.param_groups] == [1, 2]  # body has no bias here


def test_a_tied_tensor_finds_its_group_by_either_name() -> None:
    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(4, 2)
            self.body = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 4, bias=False)
            self.head.weight = self.emb.weight

    groups = multilr.build(Tied(), {"lr": 0.1, "rates": {"emb.weight": 0.01}})
    ctl = Controller(torch.optim.SGD(groups), groups)
    ctl.set_scale("head.weight", 2.0)  # the second name of the tied tensor
    assert ctl.rates()["rates[emb.weight]"] == pytest.approx(0.02)
    ctl.freeze("head.weight")
    assert ctl.frozen() == ["rates[emb.weight]"]
