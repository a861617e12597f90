"""docs/translating.md: its YAML translations give what MMEngine and fastai give, tensor by tensor.

The references below follow the libraries' code (neither is installed here):

* MMEngine ``DefaultOptimWrapperConstructor.add_params``: transcribed in
  ``_mmengine_ref.py`` (custom keys > norm > bias > depthwise conv > other 1-D;
  ``bias_lr_mult`` skips norm biases);
* fastai ``Learner.freeze_to`` with ``train_bn=True`` (``optimizer.py``: ``force_train``
  for ``norm_bias_params(model, with_bias=False)``; norm types BatchNorm, InstanceNorm,
  LayerNorm), ``slice(hi)`` = ``hi / 10`` for all groups but the last, ``wd_bn_bias=False``
  (``norm_bias_params(model, with_bias=True)``: norm parameters and every bias).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import models
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

import multilr
from multilr import Spec

from ._mmengine_ref import Detector, Settings, add_params

DOC = (Path(__file__).resolve().parents[3] / "docs" / "translating.md").read_text()
YAML = re.findall(r"```yaml\n(.*?)```", DOC, re.S)
FASTAI_NORMS = (_BatchNorm, _InstanceNorm, nn.LayerNorm)


def fastai_cnn() -> nn.Sequential:
    """``create_cnn_model``'s layout: ``Sequential(body, head)``, the body a ResNet-18 without pool/fc."""
    r = models.resnet18(width=8)
    body = nn.Sequential(r.conv1, r.bn1, r.relu, nn.MaxPool2d(3), r.layer1, r.layer2, r.layer3, r.layer4)
    head = nn.Sequential(
        nn.Flatten(), nn.BatchNorm1d(64), nn.Dropout(0.25), nn.Linear(64, 32, bias=False), nn.ReLU(),
        nn.BatchNorm1d(32), nn.Dropout(0.5), nn.Linear(32, 10, bias=False),
    )  # fmt: skip
    return nn.Sequential(body, head)


def fastai(model: nn.Sequential, hi: float, wd: float) -> Settings:
    """``freeze()`` then ``fit(lr=slice(hi))`` with ``wd_bn_bias=False``, ``train_bn=True``."""
    splits = [list(model[0][:6].parameters()), list(model[0][6:].parameters()), list(model[1:].parameters())]
    rates = [hi / 10, hi / 10, hi]
    norm_params = {id(p) for m in model.modules() if isinstance(m, FASTAI_NORMS) for p in m.parameters()}
    biases = {id(m.bias) for m in model.modules() if getattr(m, "bias", None) is not None}
    names = {id(p): n for n, p in model.named_parameters()}
    out: Settings = {}
    for g, params in enumerate(splits):
        for p in params:
            frozen = g < len(splits) - 1 and id(p) not in norm_params  # freeze_to(-1), force_train
            out[names[id(p)]] = (rates[g], 0.0 if id(p) in norm_params | biases else wd, frozen)
    return out


def built(model: nn.Module, spec: Spec) -> tuple[Settings, multilr.ParamGroups]:
    """Per tensor what torch is handed: the group's lr and weight decay, and the model's flag."""
    groups = multilr.build(model, spec)
    return handed(model, groups, groups.plan), groups


def handed(model: nn.Module, groups: list[dict[str, Any]], plan: multilr.Plan) -> Settings:
    """Per tensor of ``groups`` (or an optimizer's ``param_groups``): its lr, weight decay and frozen flag."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: Settings = {}
    for g in groups:
        for p in g["params"]:
            frozen = not p.requires_grad
            # a frozen group trains at 0; its planned rate is what unfreezing gives back
            out[names[id(p)]] = (plan.param(names[id(p)]).lr if frozen else g["lr"], g["weight_decay"], frozen)
    return out


def differences(want: Settings, got: Settings) -> list[str]:
    assert set(want) == set(got)
    return [f"{n}: want {want[n]}, got {got[n]}" for n in want if want[n] != pytest.approx(got[n], rel=1e-12)]


@pytest.mark.parametrize(
    ("block", "cfg"),
    [
        (0, {"bias_lr_mult": 2.0, "bias_decay_mult": 0.0}),
        (1, {"custom_keys": {"backbone": {"lr_mult": 0.1}}, "norm_decay_mult": 0.0}),
    ],
    ids=["bias-lr-mult", "custom-key-and-norm-decay"],
)
def test_mmengine_translation_gives_mmengines_settings(block: int, cfg: dict[str, Any]) -> None:
    spec = Spec.from_yaml(YAML[block])
    model = Detector()
    got, _ = built(model, spec)
    assert differences(add_params(model, spec.lr, spec.weight_decay, cfg), got) == []


def test_the_natural_mmengine_translation_differs_as_the_doc_says() -> None:
    # the doc's first row: '*.bias' at 2x takes the norm biases too (MMEngine: 1x)
    model = Detector()
    natural = Spec.from_yaml("lr: 0.02\nweight_decay: 1.0e-4\nno_decay: [bias]\nrules: [{glob: '*.bias', lr_mult: 2}]")
    want = add_params(model, 0.02, 1e-4, {"bias_lr_mult": 2.0, "bias_decay_mult": 0.0})
    wrong = {d.split(":")[0] for d in differences(want, built(model, natural)[0])}
    assert wrong == {f"backbone.{i}.bias" for i in (1, 3, 4, 6)}  # BatchNorm, GroupNorm, LayerNorm, InstanceNorm


def test_dwconv_predicate_from_the_doc() -> None:
    model = Detector()
    code = re.findall(r"```python\n(.*?)```", DOC, re.S)
    snippet = next(c for c in code if "depthwise" in c)
    scope: dict[str, Any] = {"model": model, "nn": nn, **vars(multilr)}
    exec(snippet, scope)  # the doc's code, as written
    got, _ = built(model, scope["spec"])
    want = add_params(model, 0.02, 1e-4, {"dwconv_decay_mult": 0.0})
    assert differences(want, got) == []
    assert got["backbone.2.weight"][1] == 0.0


@pytest.mark.parametrize("train_bn", [True, False], ids=["train_bn", "without"])
def test_fastai_freeze_with_train_bn(train_bn: bool) -> None:
    spec = Spec.from_yaml(YAML[2].replace("train_bn: true", f"train_bn: {str(train_bn).lower()}"))
    model = fastai_cnn()
    groups = multilr.build(model, spec)
    opt = torch.optim.AdamW(groups)
    ctl = multilr.Controller(opt, groups)
    ctl.freeze_to(-1)  # fastai's freeze()
    wrong = {d.split(":")[0] for d in differences(fastai(model, 2e-3, 0.01), handed(model, opt.param_groups, groups.plan))}
    norms = {f"{m}.{n}" for m, mod in model.named_modules() if isinstance(mod, FASTAI_NORMS) for n, _ in mod.named_parameters()}
    # without train_bn, the body's norm layers freeze with it (the doc says so)
    assert wrong == (set() if train_bn else {n for n in norms if n.startswith("0.")})
    assert not model[0][0].weight.requires_grad and model[0][1].weight.requires_grad == train_bn
    # fastai's unfreeze(): everything trains, at the rules' rates
    ctl.unfreeze_all()
    assert all(p.requires_grad for p in model.parameters())
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr[id(model[0][0].weight)] == pytest.approx(2e-4)


@pytest.mark.parametrize(
    ("natural", "cfg", "differing"),
    [
        ("no_decay: [norm]", {"norm_decay_mult": 0.0}, {"backbone.5.weight"}),  # RMSNorm: no MMEngine norm
        ("no_decay: [1d]", {"flat_decay_mult": 0.0}, {"logit_scale"}),  # 0-d: MMEngine's test is ndim == 1
    ],
    ids=["norm-family", "1d-takes-0d"],
)
def test_the_doc_rows_on_norm_and_1d(natural: str, cfg: dict[str, Any], differing: set[str]) -> None:
    model = Detector()
    got, _ = built(model, Spec.from_yaml(f"lr: 0.02\nweight_decay: 1.0e-4\n{natural}"))
    assert {d.split(":")[0] for d in differences(add_params(model, 0.02, 1e-4, cfg), got)} == differing
