"""Checkpoints on torch: resume bit-identical to uninterrupted training, and refuse a changed spec.

A ResNet-18-shaped CNN (BatchNorm buffers included) trains under a spec with layer-wise
decay, ``no_decay``, a frozen stem, a stage that unfreezes ``layer1`` at step 3 and a
cosine schedule, driven by a :class:`~multilr.Controller`. One run goes straight to step
``N``; another saves at step ``k`` through ``torch.save`` (a real file, loaded back with
``torch.load``'s default ``weights_only=True``), and a fresh model, fresh groups from the
same spec, a new optimizer and a new Controller load it and continue to ``N``. Every
parameter, buffer, optimizer state tensor, rate and ``requires_grad`` flag must be equal
bit for bit (``torch.equal``), at every step after the resume.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from models import resnet18

import multilr
from multilr import CheckpointError, Controller, LayerDecay, MultiLRError, Prefix, Regex, Rule, Spec, Stage
from multilr.schedules import Cosine
from multilr.testing import assert_bit_identical, state_figure

N, STAGE = 7, 3
SPEC = Spec(
    lr=0.05,
    weight_decay=0.01,
    no_decay=("bias", "norm"),
    schedule=Cosine(N + 1, final=0.1),
    rules=[
        Rule(Regex(r"^(conv1|bn1)\."), frozen=True, name="stem"),  # frozen for good
        Rule("layer1.*", frozen=True, name="low"),  # frozen until its stage
    ],
    layer_decay=LayerDecay(0.8, depth="top"),
    stages=[Stage(("low",), at=STAGE, lr_mult=0.5)],
)
OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "sgd-momentum": lambda g: torch.optim.SGD(g, momentum=0.9, nesterov=True),
    "adamw": lambda g: torch.optim.AdamW(g, foreach=False),
    "adamw-fused": lambda g: torch.optim.AdamW(g, fused=True),
    "adamw-foreach": lambda g: torch.optim.AdamW(g, foreach=True),
}
SPLITS = {"before-stage": STAGE - 1, "at-stage": STAGE, "after-stage": STAGE + 2}


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same batch for a step whether or not the run was interrupted."""
    gen = torch.Generator().manual_seed(1000 + step)
    return torch.randn(4, 3, 16, 16, generator=gen), torch.randint(0, 3, (4,), generator=gen)


class Run:
    """A model, its multilr groups, an optimizer and a Controller, trained step by step.

    ``order`` builds the optimizer from the groups in another order (then there is no
    Controller: it refuses groups out of the plan's order).
    """

    def __init__(
        self,
        make_opt: Callable[[Any], torch.optim.Optimizer],
        spec: Spec = SPEC,
        seed: int = 0,
        order: list[int] | None = None,
    ) -> None:
        self.model = resnet18(num_classes=3, width=4, seed=seed)
        self.groups = multilr.build(self.model, spec)
        self.opt = make_opt(self.groups if order is None else [self.groups[i] for i in order])
        self.ctl = Controller(self.opt, self.groups) if order is None else None
        self.step = 0
        self.rates: dict[int, list[float]] = {}

    def train(self, until: int) -> None:
        while self.step < until:
            self.rates[self.step] = [g["lr"] for g in self.opt.param_groups]
            x, y = _batch(self.step)
            self.opt.zero_grad()
            torch.nn.functional.cross_entropy(self.model(x), y).backward()
            self.opt.step()
            if self.ctl is not None:
                self.ctl.step()
            self.step += 1


def _save(run: Run, path: Path) -> None:
    torch.save({"model": run.model.state_dict(), "optim": multilr.state_dict(run.opt, run.ctl)}, path)


def _resume(make_opt: Callable[[Any], torch.optim.Optimizer], path: Path) -> Run:
    ckpt = torch.load(path)  # weights_only=True: the checkpoint is plain data and tensors
    run = Run(make_opt, seed=1)  # other initial weights: everything must come from the file
    run.model.load_state_dict(ckpt["model"])
    multilr.load_state_dict(run.opt, ckpt["optim"], run.ctl)
    run.step = run.ctl.step_count if run.ctl is not None else 0
    return run


def _differences(a: Run, b: Run) -> list[str]:
    """Everything that is not bit-identical between two runs (empty: identical)."""
    out = []
    sa, sb = a.model.state_dict(), b.model.state_dict()
    out += [f"model {k}" for k in sa if not (sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]))]
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    out += [f"requires_grad of {k}" for k in pa if pa[k].requires_grad != pb[k].requires_grad]
    oa, ob = a.opt.state_dict(), b.opt.state_dict()
    if oa["state"].keys() != ob["state"].keys():
        out.append(f"optimizer state for tensors {sorted(oa['state'])} vs {sorted(ob['state'])}")
    for i in oa["state"].keys() & ob["state"].keys():
        for key, va in oa["state"][i].items():
            vb = ob["state"][i].get(key)
            if not (isinstance(vb, torch.Tensor) and va.dtype == vb.dtype and torch.equal(va, vb)):
                out.append(f"optimizer state {key} of tensor {i}")
    groups_a = [{k: v for k, v in g.items() if k != "params"} for g in oa["param_groups"]]
    groups_b = [{k: v for k, v in g.items() if k != "params"} for g in ob["param_groups"]]
    out += [f"param group {g['name']}" for g, h in zip(groups_a, groups_b, strict=True) if g != h]
    if a.ctl is not None and b.ctl is not None and a.ctl.state_dict() != b.ctl.state_dict():
        out.append(f"controller {a.ctl.state_dict()} vs {b.ctl.state_dict()}")
    return out


def _record(kind: str, item: str, total: str) -> None:
    """One figure line per test module, whichever xdist worker ran which resume.

    Each resume writes its own record to a subfolder (not printed: ``read_figures``
    globs the top level only); each then rewrites the module's line from all records.
    """
    import os

    folder = os.environ.get(multilr.testing.FIGURES_ENV)
    if not folder:
        return
    records = Path(folder) / "checkpoint-resumes" / kind
    records.mkdir(parents=True, exist_ok=True)
    (records / f"{item}.txt").write_text(item, encoding="utf-8")
    done = sorted(p.stem for p in records.glob("*.txt"))
    state_figure(
        f"checkpoints.{kind}", f"checkpoints ({kind}): {len(done)} resumes compared bit-identical {total}"
    )


@pytest.mark.parametrize("split", list(SPLITS.values()), ids=list(SPLITS))
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_resume_is_bit_identical_to_uninterrupted(opt_name: str, split: int, tmp_path: Path) -> None:
    make_opt = OPTIMIZERS[opt_name]
    straight = Run(make_opt)
    straight.train(N)

    first = Run(make_opt)
    first.train(split)
    _save(first, tmp_path / "ckpt.pt")
    del first
    resumed = _resume(make_opt, tmp_path / "ckpt.pt")
    assert resumed.ctl is not None and resumed.ctl.step_count == split
    staged = ["low/depth2/stage0", "low/depth2/no_decay/stage0"] if split < STAGE else []
    assert resumed.ctl.frozen() == ["stem/depth0/frozen", "stem/depth1/no_decay/frozen", *staged]
    resumed.train(N)

    for t in range(split, N):
        assert resumed.rates[t] == straight.rates[t], (
            f"got rates {resumed.rates[t]} at step {t}, should be {straight.rates[t]}"
        )
    diff = _differences(straight, resumed)
    assert not diff, f"resumed at step {split} ({opt_name}) differs from uninterrupted in: {diff[:8]}"
    _record(
        "torch",
        f"{opt_name}-{split}",
        "to uninterrupted training (sgd-momentum, adamw, adamw-fused, adamw-foreach x saved before/at/after "
        "the stage; every parameter, buffer, optimizer state tensor and rate, at every step)",
    )


def test_the_comparison_sees_a_resume_without_the_controller_state(tmp_path: Path) -> None:
    """The resume test can fail: dropping the Controller's state (schedule position, stage) diverges."""
    straight = Run(OPTIMIZERS["adamw"])
    straight.train(N)
    first = Run(OPTIMIZERS["adamw"])
    first.train(STAGE + 1)
    _save(first, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt")
    naive = Run(OPTIMIZERS["adamw"], seed=1)
    naive.model.load_state_dict(ckpt["model"])
    with pytest.raises(CheckpointError, match="holds a Controller's state"):
        multilr.load_state_dict(naive.opt, ckpt["optim"])  # without the Controller: refused
    naive.opt.load_state_dict(ckpt["optim"])  # what torch alone does: the rates of the checkpoint...
    naive.step = STAGE + 1
    # ... which the Controller, still at step 0, did not write: its next step refuses to go on
    with pytest.raises(MultiLRError, match=r"or optimizer\.load_state_dict without the Controller's state"):
        naive.train(N)
    naive.ctl = Controller(naive.opt, naive.groups)  # a Controller made afresh restarts at 0
    naive.train(N)
    assert _differences(straight, naive), "a resume without the Controller's state should diverge"


# -- a changed spec is refused, naming the groups ---------------------------------------

BASE = Spec(
    lr=0.1,
    weight_decay=0.01,
    no_decay=("bias", "norm"),
    rules=[
        Rule(Prefix("fc"), lr_mult=10, name="head"),
        Rule(Regex(r"^layer4\.1\.conv1\."), lr_mult=0.5, name="one"),
    ],
)


def _with_rules(*rules: Rule) -> Spec:
    return Spec.from_dict({**BASE.to_dict(), "rules": [r.to_dict() for r in rules]})


HEAD, ONE = BASE.rules
SGD = OPTIMIZERS["sgd-momentum"]
#: case -> (the run that saves, the run that loads, fragments the refusal must contain)
CHANGED: dict[str, tuple[Callable[[], Run], Callable[[], Run], list[str]]] = {
    "renamed-group": (
        lambda: Run(SGD, BASE),
        lambda: Run(SGD, _with_rules(Rule(Prefix("fc"), lr_mult=10, name="classifier"), ONE)),
        ["renamed (same position): 'head' -> 'classifier', 'head/no_decay' -> 'classifier/no_decay'"],
    ),
    "extra-group": (
        lambda: Run(SGD, BASE),
        lambda: Run(SGD, _with_rules(HEAD, ONE, Rule(Prefix("layer3"), lr_mult=0.3, name="mid"))),
        [
            "only in the optimizer: ['mid', 'mid/no_decay']",
            "group 'default': 19 tensors in the checkpoint, 14 in the optimizer",
        ],
    ),
    "removed-group": (
        lambda: Run(SGD, BASE),
        lambda: Run(SGD, _with_rules(ONE)),
        ["only in the checkpoint: ['head', 'head/no_decay']", "group 'default'"],
    ),
    "reordered-groups": (
        lambda: Run(SGD, BASE, order=[0, 1, 3, 4, 2]),  # saved from groups sorted by hand
        lambda: Run(SGD, BASE),
        ["in another order", "'one'", "'head'"],
    ),
    "same-count-other-tensors": (
        # the same group names and sizes: layer4.1's conv2 instead of its conv1 (same shape)
        lambda: Run(SGD, BASE),
        lambda: Run(SGD, _with_rules(HEAD, Rule(Regex(r"^layer4\.1\.conv2\."), lr_mult=0.5, name="one"))),
        [
            "group 'one': other tensors",
            "['layer4.1.conv1.weight']",
            "['layer4.1.conv2.weight']",
            "group 'default'",
        ],
    ),
    "same-count-other-shapes": (
        lambda: Run(SGD, BASE),
        lambda: Run(SGD, _with_rules(HEAD, Rule(Regex(r"^layer3\.1\.conv1\."), lr_mult=0.5, name="one"))),
        ["group 'one': other tensors", "layer3.1.conv1.weight"],
    ),
}


def snapshot(run: Run) -> dict[str, Any]:
    """Everything a failed load must leave alone, copied."""
    return {
        "params": {
            n: (p.detach().clone(), p.requires_grad, None if p.grad is None else p.grad.clone())
            for n, p in run.model.named_parameters()
        },
        "buffers": {n: b.clone() for n, b in run.model.named_buffers()},
        "optimizer": copy.deepcopy(run.opt.state_dict()),
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in run.opt.param_groups],
        "controller": run.ctl.state_dict() if run.ctl is not None else None,
    }


@pytest.mark.parametrize("with_controller", [True, False], ids=["with-controller", "no-controller"])
@pytest.mark.parametrize("case", list(CHANGED))
def test_a_changed_spec_is_refused_naming_the_groups(
    case: str, with_controller: bool, tmp_path: Path
) -> None:
    make_saved, make_target, expected = CHANGED[case]
    saved = make_saved()
    saved.train(2)
    ckpt = multilr.state_dict(saved.opt, saved.ctl if with_controller else None, plan=saved.groups)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    target = make_target()
    target.train(1)  # momentum buffers and gradients that a bad load would clobber
    before = snapshot(target)
    with pytest.raises(CheckpointError) as err:
        multilr.load_state_dict(
            target.opt,
            torch.load(tmp_path / "ckpt.pt"),
            target.ctl if with_controller else None,
            plan=target.groups,
        )
    for fragment in expected:
        assert fragment in str(err.value), f"got message {str(err.value)!r}, should contain {fragment!r}"
    assert_bit_identical(snapshot(target), before, "state")


def test_a_plain_torch_state_dict_is_checked_by_group_names() -> None:
    """torch's own load would accept this (same group count, same sizes) and misalign silently."""
    saved = Run(OPTIMIZERS["sgd-momentum"], BASE)
    saved.train(2)
    swapped = Run(OPTIMIZERS["sgd-momentum"], BASE)
    pgs = swapped.opt.param_groups
    pgs[0]["name"], pgs[1]["name"] = pgs[1]["name"], pgs[0]["name"]  # names that no longer say what is inside
    plain = saved.opt.state_dict()
    before = snapshot(swapped)
    with pytest.raises(CheckpointError, match=r"in another order: \['default', 'no_decay'\]"):
        multilr.load_state_dict(swapped.opt, plain)
    assert_bit_identical(snapshot(swapped), before, "state")
    ok = Run(OPTIMIZERS["sgd-momentum"], BASE)
    multilr.load_state_dict(ok.opt, plain)  # the same groups: loads
    assert ok.opt.state_dict()["state"].keys() == plain["state"].keys()


def test_a_failing_framework_load_puts_the_controller_back(tmp_path: Path) -> None:
    """The Controller loads first; if the optimizer then refuses, the Controller, rates and flags are restored."""
    saved = Run(OPTIMIZERS["adamw"])
    saved.train(STAGE + 1)
    ckpt = multilr.state_dict(saved.opt, saved.ctl)
    target = Run(OPTIMIZERS["adamw"])
    target.train(1)
    for p in target.model.parameters():  # leftover gradients, also on the stage's frozen tensors
        p.grad = torch.ones_like(p)

    def refuse(opt: Any, state: Any) -> None:
        raise RuntimeError("disk says no")

    target.opt.register_load_state_dict_pre_hook(refuse)
    target.model.fc.bias.requires_grad_(False)  # switched off by hand after build: stays off
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="optimizer state was refused, nothing changed: disk says no"):
        multilr.load_state_dict(target.opt, ckpt, target.ctl)
    assert_bit_identical(snapshot(target), before, "state")


# -- what guards a load when little is known ---------------------------------------------


class _QK(torch.nn.Module):
    def __init__(self, first: str) -> None:
        super().__init__()
        for name in (first, "k" if first == "q" else "q"):  # registration order decides the order
            self.add_module(name, torch.nn.Linear(2, 2))


def _stepped(model: torch.nn.Module) -> torch.optim.SGD:
    opt = torch.optim.SGD(multilr.build(model, Spec(lr=0.1)), momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()  # a Linear(2, n) at the input
    opt.step()
    return opt


def test_the_same_tensors_registered_in_another_order_are_refused() -> None:
    # one group, the same names and shapes: loading by position would give k q's momentum
    saved = _QK("q")
    saved_groups = multilr.build(saved, Spec(lr=0.1))
    opt = torch.optim.SGD(saved_groups, momentum=0.9)
    (saved.q(torch.ones(1, 2)).sum() * 100 + saved.k(torch.ones(1, 2)).sum()).backward()
    opt.step()
    target = _QK("k")
    groups = multilr.build(target, Spec(lr=0.1))
    target_opt = torch.optim.SGD(groups, momentum=0.9)
    with pytest.raises(CheckpointError, match="the same tensors in another order"):
        multilr.load_state_dict(target_opt, multilr.state_dict(opt, plan=saved_groups), plan=groups)
    assert target_opt.state_dict()["state"] == {}


def test_without_a_plan_the_shapes_guard_the_load() -> None:
    # no Controller, no plan: a model of other sizes must not receive these momentum buffers
    ckpt = multilr.state_dict(_stepped(torch.nn.Linear(2, 3)))
    target = torch.nn.Linear(3, 3)
    opt = torch.optim.SGD(multilr.build(target, Spec(lr=0.1)), momentum=0.9)
    with pytest.raises(CheckpointError, match=r"tensor 0 has shape \[3, 2\] in the checkpoint, \[3, 3\]"):
        multilr.load_state_dict(opt, ckpt)
    assert opt.state_dict()["state"] == {}


@pytest.mark.parametrize("key", ["step", "multipliers", "frozen", "stages_done"])
def test_a_controller_state_missing_a_key_is_refused_naming_it(key: str) -> None:
    # ("thawed" may be missing: checkpoints from before it existed load, with nothing thawed)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    spec = Spec(lr=0.1, rules=[Rule(Prefix("0"), frozen=True, name="body")], stages=[Stage(["body"], at=2)])
    groups = multilr.build(model, spec)
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups)
    ctl.step()
    ckpt = multilr.state_dict(opt, ctl)
    del ckpt["multilr"]["controller"][key]
    fresh = Controller(opt, groups)
    before = fresh.state_dict()
    with pytest.raises(CheckpointError, match=f"lacks \\['{key}'\\]"):
        multilr.load_state_dict(opt, ckpt, fresh)
    assert fresh.state_dict() == before


def test_a_framework_load_that_fails_half_written_gets_its_rates_back() -> None:
    # torch's own load writes nothing before it fails; an optimizer whose load does (a
    # subclass, another framework) still gets its rates back, Controller or not
    class HalfLoad(torch.optim.SGD):
        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            for group in self.param_groups:
                group["lr"] = 9.0
            raise RuntimeError("half-written")

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    groups = multilr.build(model, Spec(lr=0.1, rules=[Rule(Prefix("1"), lr_mult=10, name="head")]))
    opt = HalfLoad(groups)
    ckpt = multilr.state_dict(opt)
    with pytest.raises(CheckpointError, match="half-written"):
        multilr.load_state_dict(opt, ckpt)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1.0]


#: case -> (the optimizer that saves, the one that loads, names the refusal must list)
KINDS = {
    "adamw-into-sgd": ("adamw", "sgd-momentum", ["'betas'", "'momentum'"]),
    "sgd-into-adamw": ("sgd-momentum", "adamw-fused", ["'nesterov'", "'eps'"]),
}


@pytest.mark.parametrize("plain", [False, True], ids=["multilr-checkpoint", "plain-state-dict"])
@pytest.mark.parametrize("case", list(KINDS))
def test_a_checkpoint_of_another_kind_of_optimizer_is_refused(case: str, plain: bool) -> None:
    """torch loads an AdamW state into SGD (same groups, same sizes): every group takes AdamW's
    hyperparameters and loses SGD's, and the next step fails (the other way round, its load
    fails). multilr names the difference and changes nothing."""
    saved_kind, target_kind, names = KINDS[case]
    saved = Run(OPTIMIZERS[saved_kind], BASE)
    saved.train(2)
    ckpt = saved.opt.state_dict() if plain else multilr.state_dict(saved.opt, plan=saved.groups)
    target = Run(OPTIMIZERS[target_kind], BASE)
    target.train(1)
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="saved from another kind of optimizer") as err:
        multilr.load_state_dict(target.opt, copy.deepcopy(ckpt))
    for name in names:
        assert name in str(err.value)
    assert_bit_identical(snapshot(target), before, "state")
    # what the refusal prevents: torch's own load, then a step, ends in a bare KeyError
    bare = Run(OPTIMIZERS[target_kind], BASE)
    with pytest.raises(KeyError):
        bare.opt.load_state_dict({k: v for k, v in copy.deepcopy(ckpt).items() if k != "multilr"})
        bare.train(1)


def test_a_checkpoint_of_the_same_kind_loads_across_implementations_and_schedulers() -> None:
    # fused and for-loop AdamW keep the same names
    saved = Run(OPTIMIZERS["adamw"], BASE)
    saved.train(2)
    target = Run(OPTIMIZERS["adamw-fused"], BASE)
    multilr.load_state_dict(target.opt, multilr.state_dict(saved.opt, plan=saved.groups))
    assert target.opt.state_dict()["state"].keys() == saved.opt.state_dict()["state"].keys()
    # a scheduler's names on one side (OneCycleLR: initial_lr, max_lr, min_lr, and momentum
    # bounds), a name of a newer torch on the other ("fused", as if saved by an older torch):
    # the same kind of optimizer, and it loads
    torch.optim.lr_scheduler.OneCycleLR(saved.opt, max_lr=0.1, total_steps=10)
    ckpt = multilr.state_dict(saved.opt, plan=saved.groups)
    for group in ckpt["param_groups"]:
        del group["fused"]
    target = Run(OPTIMIZERS["adamw"], BASE)
    multilr.load_state_dict(target.opt, ckpt)
    assert target.opt.param_groups[0]["max_lr"] == 0.1
