"""The spec's ``train_bn``: norm tensors keep training through freezing by depth (fastai's ``train_bn``).

Framework-free: planned against hand-made parameter lists. The rates a real optimizer
applies under ``Controller.freeze_to`` are checked in the torch tests and, on every
backend, by the conformance cases ``*-ctl_train_bn``.
"""

from __future__ import annotations

import pytest

import multilr
from multilr import SpecError
from multilr._targets import frozen_below

from ._infos import info, resnet_like

BASE = "lr: 0.01\nweight_decay: 0.05\nno_decay: [bias, norm]\nlayer_decay: {decay: 0.8, depth: top}\n"


def planned(extra: str = "", infos: list[multilr.ParamInfo] | None = None) -> multilr.Plan:
    return multilr.plan(infos if infos is not None else resnet_like(), multilr.Spec.from_yaml(BASE + extra))


def is_norm(name: str) -> bool:
    return ".bn" in name or name.startswith("bn") or "downsample.1." in name


def test_norm_tensors_get_groups_of_their_own_and_nothing_else_changes() -> None:
    off, on = planned(), planned("train_bn: true\n")
    assert on.spec.train_bn and not off.spec.train_bn
    # same rate, weight decay and frozen state for every tensor: only the grouping differs
    for a, b in zip(off.params, on.params, strict=True):
        assert (a.name, a.lr, a.weight_decay, a.frozen) == (b.name, b.lr, b.weight_decay, b.frozen)
    kept = [g for g in on.groups if g.train_bn]
    assert {p for g in kept for p in g.params} == {p.name for p in on.params if is_norm(p.name)}
    assert all(g.name.endswith("/train_bn") for g in kept)
    assert not any(g.train_bn or g.name.endswith("train_bn") for g in on.groups if g not in kept)
    assert not any(g.train_bn for g in off.groups)
    # one norm group per depth that has norms: the stem's, 4 layers; the head has none
    assert [g.name for g in kept] == [f"depth{d}/no_decay/train_bn" for d in range(1, 6)]
    # the convs have no bias: each depth's no-decay group held only its norms, now renamed
    assert len(on.groups) == len(off.groups)


def test_freeze_to_leaves_the_norm_groups_training() -> None:
    on, off = planned("train_bn: true\n"), planned()
    frozen = frozen_below(on, -1)
    assert [g.name for g, f in zip(on.groups, frozen, strict=True) if not f] == [
        *(g.name for g in on.groups if g.train_bn),
        "depth6",
        "depth6/no_decay",
    ]
    # without train_bn the norms below the top freeze with their blocks
    assert [g.name for g, f in zip(off.groups, frozen_below(off, -1), strict=True) if not f] == [
        "depth6",
        "depth6/no_decay",
    ]
    assert not any(frozen_below(on, 0))


def test_no_stage_holds_a_norm_tensor_back() -> None:
    plan = planned("train_bn: true\nstages: [{at: 3, from_depth: 0}]\n")
    for p in plan.params:
        if is_norm(p.name):
            assert (p.frozen, p.frozen_source) == (False, ""), p.name
        else:
            assert (p.frozen, p.frozen_source) == (True, "stage0 (until step 3)"), p.name
    assert {g.stage for g in plan.groups if g.train_bn} == {None}
    # without train_bn the stage reaches the norms too
    assert all(p.frozen for p in planned("stages: [{at: 3, from_depth: 0}]\n").params)


def test_a_frozen_rule_still_freezes_a_norm_tensor() -> None:
    rules = "rules: [{prefix: bn1, frozen: true, name: stem-norm}]\nstages: [{at: 2, from_depth: 0}]\n"
    plan = planned("train_bn: true\n" + rules)
    bn1 = plan.param("bn1.weight")
    # the rule is explicit: frozen, and staged like any frozen tensor a stage reaches
    assert bn1.frozen and bn1.frozen_source == "stage0 (until step 2)"
    group = plan.group(bn1.group)
    assert not group.train_bn and not group.name.endswith("train_bn")
    assert not plan.param("layer1.0.bn1.weight").frozen
    unstaged = planned("train_bn: true\nrules: [{prefix: bn1, frozen: true, name: stem-norm}]\n")
    assert unstaged.param("bn1.weight").frozen_source == "stem-norm"
    assert unstaged.group(unstaged.param("bn1.weight").group).name == "stem-norm/depth1/no_decay/frozen"


def test_a_tied_norm_counts_through_any_of_its_names() -> None:
    infos = [
        info("emb.weight", (4, 4), "emb"),
        info("blocks.0.fc.weight"),
        info("blocks.0.gate.weight", (4,), "fc"),
        info("blocks.1.fc.weight"),
        # the same tensor registered again on a norm layer: a norm tensor, as a rule on
        # either name would reach it
        info("blocks.1.norm.weight", (4,), "ln", key="blocks.0.gate.weight"),
        info("head.weight"),
    ]
    plan = multilr.plan(infos, multilr.Spec(lr=0.1, layer_decay=multilr.LayerDecay(0.5), train_bn=True))
    assert [g.params for g in plan.groups if g.train_bn] == [("blocks.0.gate.weight",)]


def test_a_model_without_norms_plans_as_without_train_bn() -> None:
    infos = [info("a.weight"), info("b.weight"), info("b.bias", (4,))]
    spec = multilr.Spec(lr=0.1, no_decay=("bias",), train_bn=True)
    plain = multilr.plan(infos, multilr.Spec(lr=0.1, no_decay=("bias",)))
    assert multilr.plan(infos, spec).groups == plain.groups


def test_train_bn_round_trips_and_shows_in_the_plan_json() -> None:
    spec = multilr.Spec.from_yaml(BASE + "train_bn: true\n")
    assert spec.to_dict()["train_bn"] is True
    assert multilr.Spec.from_dict(spec.to_dict()) == spec
    assert "train_bn" not in multilr.Spec(lr=0.1).to_dict()
    groups = planned("train_bn: true\n").to_dict()["groups"]
    assert [g["name"] for g in groups if g.get("train_bn")] == [f"depth{d}/no_decay/train_bn" for d in range(1, 6)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "train_bn: yes please\n", "train_bn must be true or false, got 'yes please'"),
        (BASE + "train_bn: 1\n", "train_bn must be true or false, got 1"),
        (BASE + "train_bns: true\n", "did you mean 'train_bn'"),
    ],
    ids=["string", "integer", "misspelt"],
)
def test_bad_train_bn_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        multilr.Spec.from_yaml(text)
