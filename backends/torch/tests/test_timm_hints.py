"""A timm-style model's hints, honoured on a real torch model (``models.tiny_vit``).

The expected groups are what timm's ``create_optimizer_v2(model, "adamw", lr,
weight_decay=0.05, layer_decay=0.75)`` builds (timm/optim/_optim_factory.py and
_param_groups.py ``param_groups_layer_decay``), worked out by hand:

* layer ids from ``group_matcher(coarse=False)`` via ``group_with_matcher``: stem
  (``cls_token``, ``pos_embed``, ``patch_embed.*``) 0, ``blocks.0`` 1, ``blocks.1`` 2,
  ``norm`` (suffix 99999) 2, ``head`` (unmatched) 3; ``lr_scale = 0.75 ** (3 - id)``;
* weight decay 0 for ``ndim <= 1`` (``weight_decay_exclude_1d``) and for the names in
  ``no_weight_decay()``, else 0.05;
* one group per (layer id, decay or not).

multilr's spec for the same thing is ``no_decay=("1d",)`` plus layer decay; the model's
hints do the rest. timm itself is not installed (it would pull torchvision).
"""

from __future__ import annotations

import math

import models
import pytest
import torch

import multilr
from multilr import LayerDecay, Rule, Spec

LR, WD, DECAY = 1e-3, 0.05, 0.75
SPEC = Spec(lr=LR, weight_decay=WD, no_decay=("1d",), layer_decay=LayerDecay(DECAY))


def timm_layer_id(name: str) -> int:
    if name.startswith(("cls_token", "pos_embed", "patch_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    if name.startswith("norm."):
        return 2  # (1, 99999): the layer of the last block
    return 3  # head: unmatched, last


def timm_expected(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    """name -> (lr_scale, weight_decay) as timm's param_groups_layer_decay gives them."""
    no_wd = model.no_weight_decay()
    return {
        n: (DECAY ** (3 - timm_layer_id(n)), 0.0 if p.ndim <= 1 or n in no_wd else WD)
        for n, p in model.named_parameters()
    }


def test_groups_match_timms_layer_decay():
    model = models.tiny_vit()
    expected = timm_expected(model)
    groups = multilr.build(model, SPEC, backend="torch")
    got = {p.name: (p.scale, p.weight_decay) for p in groups.plan.params}
    assert got.keys() == expected.keys()
    for name, (scale, wd) in expected.items():
        assert math.isclose(got[name][0], scale, rel_tol=1e-12) and got[name][1] == wd, (
            f"{name}: got (scale, wd) {got[name]}, should be {(scale, wd)} (timm)"
        )
    # the same partition as timm's "layer_{id}_{decay|no_decay}" groups
    timm_groups = {(timm_layer_id(n), wd == 0.0) for n, (_, wd) in expected.items()}
    assert len(groups) == len(timm_groups) == 8
    # and the torch groups carry the rates and decays
    by_tensor = {id(t): (g["lr"], g["weight_decay"]) for g in groups for t in g["params"]}
    for name, p in model.named_parameters():
        scale, wd = expected[name]
        assert math.isclose(by_tensor[id(p)][0], LR * scale, rel_tol=1e-12) and by_tensor[id(p)][1] == wd


def test_table_says_which_decisions_came_from_the_model():
    table = multilr.plan(models.tiny_vit(), SPEC).table()
    cls_row = next(line for line in table.splitlines() if line.startswith("cls_token"))
    assert "no_decay:model.no_weight_decay()" in cls_row
    assert "by model.group_matcher()" in cls_row


def test_model_hints_false_plans_from_the_names_alone():
    plan = multilr.plan(models.tiny_vit(), Spec(**{**SPEC.__dict__, "model_hints": False}))
    p = {q.name: q for q in plan.params}
    assert p["cls_token"].weight_decay == WD  # 3-d: no "1d" class, and the hint is ignored
    assert p["norm.weight"].depth == 3  # after the last block: the head's depth
    assert "group_matcher" not in plan.table()


def decay_only_step(model: torch.nn.Module, groups: list[dict]) -> None:
    """One AdamW step from all-ones weights and zero gradients: weight decay alone moves them."""
    opt = torch.optim.AdamW(groups)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
            p.grad = torch.zeros_like(p)
    opt.step()


def test_adamw_leaves_hinted_tensors_undecayed():
    # all weights 1 and a zero gradient: AdamW's step is then weight decay alone
    model = models.tiny_vit()
    expected = timm_expected(model)
    decay_only_step(model, multilr.build(model, SPEC, backend="torch"))
    for name, p in model.named_parameters():
        scale, wd = expected[name]
        should = 1.0 - LR * scale * wd
        assert torch.all(p.detach() == torch.tensor(should, dtype=p.dtype)), (
            f"{name}: got {p.detach().flatten()[0].item()}, should be {should} (wd {wd})"
        )


class MambaMixer(torch.nn.Module):
    """mamba_ssm's ``Mamba`` layer, its tensors only: ``A_log`` and ``D`` flag themselves."""

    def __init__(self, dim: int = 4, inner: int = 8, state: int = 3) -> None:
        super().__init__()
        self.in_proj = torch.nn.Linear(dim, 2 * inner, bias=False)
        self.conv1d = torch.nn.Conv1d(inner, inner, 4, groups=inner, padding=3)
        self.x_proj = torch.nn.Linear(inner, 2 + 2 * state, bias=False)
        self.dt_proj = torch.nn.Linear(2, inner)
        self.A_log = torch.nn.Parameter(torch.zeros(inner, state))
        self.A_log._no_weight_decay = True  # as mamba_ssm does
        self.D = torch.nn.Parameter(torch.ones(inner))
        self.D._no_weight_decay = True
        self.out_proj = torch.nn.Linear(inner, dim, bias=False)


def mamba_lm(layers: int = 2) -> torch.nn.Module:
    model = torch.nn.Module()
    model.embedding = torch.nn.Embedding(10, 4)
    model.layers = torch.nn.ModuleList(MambaMixer() for _ in range(layers))
    model.norm_f = torch.nn.LayerNorm(4)
    model.lm_head = torch.nn.Linear(4, 10, bias=False)
    model.lm_head.weight = model.embedding.weight  # tied, as MambaLMHeadModel does
    return model


def test_tensors_flagged_no_weight_decay_get_none_as_mamba_ssm_intends():
    model = mamba_lm()
    spec = Spec(lr=LR, weight_decay=0.1, no_decay=("bias", "norm"))
    groups = multilr.build(model, spec, backend="torch")
    flagged = {"layers.0.A_log", "layers.0.D", "layers.1.A_log", "layers.1.D"}
    # the matrix A_log included, which no shape or name class would catch
    assert {p.name for p in groups.plan.params if p.wd_source == "no_decay:tensor._no_weight_decay"} == flagged
    decay_only_step(model, groups)  # what AdamW applies, read from the tensors
    for name, p in model.named_parameters():
        decayed = not (name in flagged or name.endswith("bias") or "norm" in name)
        should = 1.0 - LR * 0.1 if decayed else 1.0
        assert torch.all(p.detach() == torch.tensor(should)), f"{name}: {p.detach().flatten()[0].item()}"
    # the spec's word is final: no hints, or a rule's weight decay
    off = multilr.plan(mamba_lm(), Spec(lr=LR, weight_decay=0.1, model_hints=False))
    assert {p.weight_decay for p in off.params} == {0.1}
    ruled = multilr.plan(
        mamba_lm(), Spec(lr=LR, weight_decay=0.1, rules=[Rule("*.A_log", weight_decay=0.01, name="alog")])
    )
    assert ruled.param("layers.1.A_log").weight_decay == 0.01 and ruled.param("layers.1.D").weight_decay == 0.0


def test_an_explicit_depth_mode_wins_over_the_models_matcher_with_stages_too():
    # stages read the matcher's depths for from_depth; layer decay's own mode is the spec's
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, depth="top"), stages=[multilr.Stage(from_depth=-1, at=5)])
    made = multilr.plan(models.tiny_vit(depth=2), spec)
    # "top": one depth per top-level child, so both blocks share one (the matcher gives 1 and 2)
    blocks = made.param("blocks.0.mlp.fc1.weight"), made.param("blocks.1.mlp.fc1.weight")
    assert blocks[0].depth == blocks[1].depth == 3 and made.max_depth == 5
    assert blocks[0].lr == 0.5**2


def test_a_malformed_matcher_is_refused_at_plan_time_when_only_stages_read_depths():
    # no layer decay: the stages alone need the depths, and a bad matcher must not wait
    # for the Controller's first freeze_to to show itself
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 2)

        def group_matcher(self, coarse: bool = False) -> dict[str, int]:
            return {"blocks": 3}  # not a regex

    spec = Spec(lr=0.1, rules=[Rule("body.*", frozen=True, name="body")], stages=[multilr.Stage(("body",), at=2)])
    with pytest.raises(multilr.PlanError, match=r"model.group_matcher\(\)\['blocks'\]: expected a regex"):
        multilr.plan(Net(), spec)
