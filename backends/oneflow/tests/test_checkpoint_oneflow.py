"""Checkpoints on OneFlow eager: resume bit-identical to uninterrupted training, refuse a changed spec.

The torch test's set-up on a small OneFlow CNN (stem, three conv blocks with BatchNorm,
head): layer-wise decay, ``no_decay``, a frozen stem, a stage at step 3 and a cosine
schedule under a Controller; saved at step ``k`` through ``oneflow.save`` and loaded in a
fresh model, groups, optimizer and Controller. OneFlow keeps group names under
``_options`` and Adam's step count once per optimizer (``state["step"]``); both come back.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import multilr_oneflow
import numpy as np
import pytest

import multilr
from multilr import CheckpointError, Controller, LayerDecay, MultiLRError, Prefix, Regex, Rule, Spec, Stage
from multilr.schedules import Cosine
from multilr.testing import FIGURES_ENV, assert_bit_identical, state_figure

flow = multilr_oneflow.import_oneflow()

N, STAGE = 7, 3
SPEC = Spec(
    lr=0.05,
    weight_decay=0.01,
    no_decay=("bias", "norm"),
    schedule=Cosine(N + 1, final=0.1),
    rules=[
        Rule(Regex(r"^(conv1|bn1)\."), frozen=True, name="stem"),
        Rule("layer1.*", frozen=True, name="low"),
    ],
    layer_decay=LayerDecay(0.8, depth="top"),
    stages=[Stage(("low",), at=STAGE, lr_mult=0.5)],
)
OPTIMIZERS: dict[str, Callable[[Any], Any]] = {
    "sgd-momentum": lambda g: flow.optim.SGD(g, momentum=0.9, nesterov=True),
    "adamw": lambda g: flow.optim.AdamW(g),
}
SPLITS = {"before-stage": STAGE - 1, "at-stage": STAGE, "after-stage": STAGE + 2}


class Net(flow.nn.Module):
    """Stem, three conv blocks and a head, named as the torch ResNet's first parts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = flow.nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = flow.nn.BatchNorm2d(4)
        self.layer1 = self._block(4, 4)
        self.layer2 = self._block(4, 8)
        self.layer3 = self._block(8, 8)
        self.fc = flow.nn.Linear(8, 3)

    @staticmethod
    def _block(cin: int, cout: int) -> Any:
        return flow.nn.Sequential(
            flow.nn.Conv2d(cin, cout, 3, padding=1), flow.nn.BatchNorm2d(cout), flow.nn.ReLU()
        )

    def forward(self, x: Any) -> Any:
        x = flow.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _model(seed: int) -> Net:
    flow.manual_seed(seed)
    return Net()


def _batch(step: int) -> tuple[Any, Any]:
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    return flow.tensor(x), flow.tensor(rng.integers(0, 3, 4), dtype=flow.int64)


class Run:
    """A model, its groups, an optimizer and a Controller, trained step by step."""

    def __init__(self, make_opt: Callable[[Any], Any], spec: Spec = SPEC, seed: int = 0) -> None:
        self.model = _model(seed)
        self.groups = multilr.build(self.model, spec, backend="oneflow")
        self.opt = make_opt(self.groups)
        self.ctl = Controller(self.opt, self.groups)
        self.rates: dict[int, dict[str, float]] = {}

    def train(self, until: int) -> None:
        loss_fn = flow.nn.CrossEntropyLoss()
        while self.ctl.step_count < until:
            t = self.ctl.step_count
            self.rates[t] = self.ctl.rates()
            x, y = _batch(t)
            self.opt.zero_grad()
            loss_fn(self.model(x), y).backward()
            self.opt.step()
            self.ctl.step()


def _save(run: Run, path: Path) -> None:
    flow.save({"model": run.model.state_dict(), "optim": multilr.state_dict(run.opt, run.ctl)}, str(path))


def _resume(make_opt: Callable[[Any], Any], path: Path) -> Run:
    ckpt = flow.load(str(path))
    run = Run(make_opt, seed=1)  # other initial weights: everything must come from the file
    run.model.load_state_dict(ckpt["model"])
    multilr.load_state_dict(run.opt, ckpt["optim"], run.ctl)
    return run


def _equal(a: Any, b: Any) -> bool:
    return bool(a.dtype == b.dtype and np.array_equal(a.numpy(), b.numpy()))


def _differences(a: Run, b: Run) -> list[str]:
    """Everything that is not bit-identical between two runs (empty: identical)."""
    out = []
    sa, sb = a.model.state_dict(), b.model.state_dict()
    out += [f"model {k}" for k in sa if not _equal(sa[k], sb[k])]
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    out += [f"requires_grad of {k}" for k in pa if pa[k].requires_grad != pb[k].requires_grad]
    oa, ob = a.opt.state_dict(), b.opt.state_dict()
    if oa["state"].keys() != ob["state"].keys():
        out.append(f"optimizer state for {sorted(map(str, oa['state']))} vs {sorted(map(str, ob['state']))}")
    for i in oa["state"].keys() & ob["state"].keys():
        va, vb = oa["state"][i], ob["state"][i]
        if not isinstance(va, dict):
            if va != vb:
                out.append(f"optimizer state {i}: {va} vs {vb}")
            continue
        out += [f"optimizer state {k} of tensor {i}" for k in va if k not in vb or not _equal(va[k], vb[k])]
    ga = [g["_options"] for g in oa["param_groups"]]
    gb = [g["_options"] for g in ob["param_groups"]]
    out += [f"param group {g['name']}: {g} vs {h}" for g, h in zip(ga, gb, strict=True) if g != h]
    if a.ctl.state_dict() != b.ctl.state_dict():
        out.append(f"controller {a.ctl.state_dict()} vs {b.ctl.state_dict()}")
    return out


def _record(kind: str, item: str, total: str) -> None:
    """One figure line per test module, whichever process ran which resume (see the torch test)."""
    folder = os.environ.get(FIGURES_ENV)
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
    _save(first, tmp_path / "ckpt")
    del first
    resumed = _resume(make_opt, tmp_path / "ckpt")
    assert resumed.ctl.step_count == split
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
        "oneflow-eager",
        f"{opt_name}-{split}",
        "to uninterrupted training (sgd-momentum, adamw x saved before/at/after the stage; every "
        "parameter, buffer, optimizer state tensor and rate, at every step)",
    )


def test_the_comparison_sees_a_resume_without_the_controller_state(tmp_path: Path) -> None:
    """The resume test can fail: OneFlow's own load alone restarts the schedule and the stages."""
    straight = Run(OPTIMIZERS["adamw"])
    straight.train(N)
    first = Run(OPTIMIZERS["adamw"])
    first.train(STAGE + 1)
    _save(first, tmp_path / "ckpt")
    ckpt = flow.load(str(tmp_path / "ckpt"))
    naive = Run(OPTIMIZERS["adamw"], seed=1)
    naive.model.load_state_dict(ckpt["model"])
    with pytest.raises(CheckpointError, match="holds a Controller's state"):
        multilr.load_state_dict(naive.opt, ckpt["optim"])
    naive.opt.load_state_dict(ckpt["optim"])  # the checkpoint's rates, which the Controller did not write
    with pytest.raises(MultiLRError, match=r"or optimizer\.load_state_dict without the Controller's state"):
        naive.train(N - STAGE - 1)
    naive.ctl = Controller(naive.opt, naive.groups)  # a Controller made afresh restarts at 0
    naive.train(N - STAGE - 1)
    assert _differences(straight, naive), "a resume without the Controller's state should diverge"


# -- a changed spec is refused, naming the groups, and nothing changes -------------------

BASE = Spec(
    lr=0.1,
    weight_decay=0.01,
    no_decay=("bias", "norm"),
    rules=[
        Rule(Prefix("fc"), lr_mult=10, name="head"),
        Rule(Regex(r"^layer3\.0\.weight$"), lr_mult=0.5, name="one"),
    ],
)


def _with_rules(*rules: Rule) -> Spec:
    return Spec.from_dict({**BASE.to_dict(), "rules": [r.to_dict() for r in rules]})


HEAD, ONE = BASE.rules
CHANGED: dict[str, tuple[Spec, list[str]]] = {
    "renamed-group": (
        _with_rules(Rule(Prefix("fc"), lr_mult=10, name="classifier"), ONE),
        ["renamed (same position): 'head' -> 'classifier'"],
    ),
    "extra-group": (
        _with_rules(HEAD, ONE, Rule(Prefix("layer2"), lr_mult=0.3, name="mid")),
        ["only in the optimizer: ['mid', 'mid/no_decay']"],
    ),
    "removed-group": (_with_rules(ONE), ["only in the checkpoint: ['head', 'head/no_decay']"]),
    "same-count-other-tensors": (
        # layer2.0 instead of layer3.0: the same names and counts, another tensor (shape 8x4x3x3)
        _with_rules(HEAD, Rule(Regex(r"^layer2\.0\.weight$"), lr_mult=0.5, name="one")),
        ["group 'one': other tensors", "['layer3.0.weight']", "['layer2.0.weight']"],
    ),
}


def _snapshot(run: Run) -> dict[str, Any]:
    """Everything a failed load must leave alone, as NumPy copies and plain values."""

    def arr(t: Any) -> Any:
        return None if t is None else (str(t.dtype), t.numpy().copy())

    sd = run.opt.state_dict()
    return {
        "params": {n: (arr(p), p.requires_grad, arr(p.grad)) for n, p in run.model.named_parameters()},
        "buffers": {n: arr(b) for n, b in run.model.named_buffers()},
        "state": {
            k: v if not isinstance(v, dict) else {kk: arr(vv) for kk, vv in v.items()}
            for k, v in sd["state"].items()
        },
        "groups": copy.deepcopy([g["_options"] for g in sd["param_groups"]]),
        "controller": run.ctl.state_dict(),
    }


@pytest.mark.parametrize("case", list(CHANGED))
def test_a_changed_spec_is_refused_naming_the_groups(case: str, tmp_path: Path) -> None:
    spec, expected = CHANGED[case]
    saved = Run(OPTIMIZERS["adamw"], BASE)
    saved.train(2)
    flow.save(multilr.state_dict(saved.opt, saved.ctl), str(tmp_path / "ckpt"))
    target = Run(OPTIMIZERS["adamw"], spec)
    target.train(1)
    before = _snapshot(target)
    with pytest.raises(CheckpointError) as err:
        multilr.load_state_dict(target.opt, flow.load(str(tmp_path / "ckpt")), target.ctl)
    for fragment in expected:
        assert fragment in str(err.value), f"got message {str(err.value)!r}, should contain {fragment!r}"
    assert_bit_identical(_snapshot(target), before, "state")


def test_a_plain_oneflow_state_dict_is_checked_by_its_group_names() -> None:
    """OneFlow keeps the names under ``_options``: a swapped pair with equal sizes is caught."""
    saved = Run(OPTIMIZERS["adamw"], BASE)
    saved.train(2)
    plain = saved.opt.state_dict()
    target = Run(OPTIMIZERS["adamw"], _with_rules(Rule(Prefix("fc"), lr_mult=10, name="classifier"), ONE))
    before = _snapshot(target)
    with pytest.raises(CheckpointError, match="'head' -> 'classifier'"):
        multilr.load_state_dict(target.opt, plain)
    assert_bit_identical(_snapshot(target), before, "state")


@pytest.mark.parametrize("plain", [False, True], ids=["multilr-checkpoint", "plain-state-dict"])
@pytest.mark.parametrize(("saved_kind", "target_kind"), [("adamw", "sgd-momentum"), ("sgd-momentum", "adamw")])
def test_a_checkpoint_of_another_kind_of_optimizer_is_refused(saved_kind: str, target_kind: str, plain: bool) -> None:
    """OneFlow keeps the hyperparameters under ``_options``: the same comparison reads them there."""
    saved = Run(OPTIMIZERS[saved_kind], BASE)
    saved.train(2)
    ckpt = saved.opt.state_dict() if plain else multilr.state_dict(saved.opt, saved.ctl)
    target = Run(OPTIMIZERS[target_kind], BASE)
    target.train(1)
    before = _snapshot(target)
    with pytest.raises(CheckpointError, match="saved from another kind of optimizer") as err:
        multilr.load_state_dict(target.opt, ckpt, None if plain else target.ctl)
    assert "'betas'" in str(err.value) and "'momentum'" in str(err.value)
    assert_bit_identical(_snapshot(target), before, "state")


@pytest.mark.parametrize("call", ["state_dict", "load_state_dict"])
def test_graph_optimizers_are_refused_pointing_at_the_graphs_state(call: str) -> None:
    # nn.Graph keeps the optimizer state in the graph: the optimizer's own is empty
    model = flow.nn.Sequential(flow.nn.Linear(3, 3), flow.nn.Linear(3, 2))
    spec = Spec(lr=0.1, rules=[Rule(Prefix("1"), lr_mult=10, name="head")])
    opt = flow.optim.SGD(multilr.build(model, spec, backend="oneflow-graph"), momentum=0.9)
    eager = flow.optim.SGD(multilr.build(model, spec, backend="oneflow"), momentum=0.9)
    before = [dict(g.options) for g in opt.param_groups]
    with pytest.raises(
        CheckpointError, match=r"param_groups\[0\] \(default\) carries lr_scale.*graph.state_dict"
    ):
        if call == "state_dict":
            multilr.state_dict(opt)
        else:
            multilr.load_state_dict(opt, multilr.state_dict(eager))
    assert [dict(g.options) for g in opt.param_groups] == before
