"""``multilr.from_mmengine``: the spec gives every tensor what MMEngine's ``add_params`` gives it.

Checked on generated ``optim_wrapper`` configs against the transcription of
``add_params`` in ``_mmengine_ref.py``, on a model holding every kind of tensor MMEngine
tells apart (conv with bias, the four norm classes, RMSNorm which it does not count, a
depthwise conv, a 0-d scalar, a head), and on a real optimizer.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import multilr
from multilr import CoverageError, SpecError, from_mmengine

from ._mmengine_ref import Detector, Settings, add_params

NAMES = [n for n, _ in Detector().named_parameters()]
MULTS = st.sampled_from([0.0, 0.5, 2.0])
KEYS = st.sampled_from(["backbone", "backbone.1", "backbone.2", ".logit_scale", "logit", "neck", ".neck", "head",
                        "weight", "bias", ".bias", "ne", "1.", "nothing-matches"])  # fmt: skip
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "lr_mult": st.sampled_from([0.1, 3.0]),
        "decay_mult": st.sampled_from([0.0, 0.5]),
        "lr": st.just(0.005),
        "weight_decay": st.just(0.3),
    },
)
PARAMWISE = st.fixed_dictionaries(
    {},
    optional={
        "custom_keys": st.dictionaries(KEYS, OPTIONS, max_size=3),
        "bias_lr_mult": MULTS,
        "bias_decay_mult": MULTS,
        "norm_decay_mult": MULTS,
        "dwconv_decay_mult": MULTS,
        "flat_decay_mult": MULTS,
    },
)
OPTIMIZER = st.fixed_dictionaries(
    {"type": st.sampled_from(["SGD", "AdamW"]), "lr": st.sampled_from([0.1, 0.02])},
    optional={"weight_decay": st.sampled_from([0.0, 1e-4, 0.05])},
)


def handed(model: torch.nn.Module, spec: multilr.Spec) -> Settings:
    """Per tensor what the optimizer is handed: lr, weight decay, and whether it is frozen."""
    groups = multilr.build(model, spec)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"], not p.requires_grad) for g in groups for p in g["params"]}


def differing(got: Settings, want: Settings) -> list[str]:
    """The tensors whose settings differ (every tensor must be in both)."""
    assert set(got) == set(want)
    return [f"{n}: got {got[n]}, want {want[n]}" for n in want if got[n] != pytest.approx(want[n], rel=1e-12)]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(OPTIMIZER, PARAMWISE)
def test_from_mmengine_gives_every_tensor_what_add_params_gives(optimizer: dict[str, Any], cfg: dict[str, Any]) -> None:
    model = Detector()
    wd = optimizer.get("weight_decay")
    decay_keys = [k for k in cfg if k.endswith("decay_mult")]
    decay_keys += [k for k, o in cfg.get("custom_keys", {}).items() if "decay_mult" in o]
    unmatched = [k for k in cfg.get("custom_keys", {}) if not any(k in f".{n}" for n in NAMES)]
    wrapper = {"optimizer": optimizer, "paramwise_cfg": cfg}
    if wd is None and decay_keys:  # MMEngine refuses a decay multiplier without a base
        with pytest.raises(SpecError, match="decay_mult needs the optimizer's weight_decay"):
            from_mmengine(wrapper, model)
        return
    spec = from_mmengine(wrapper, model)
    # every converted spec has a file form (the flat rule is {ndim: 1}) that reads back the same
    assert multilr.Spec.from_json(spec.to_json()) == spec
    if unmatched:  # MMEngine would silently apply nothing: multilr names the key
        with pytest.raises(CoverageError, match=f"custom_keys\\[{unmatched[0]}\\]"):
            multilr.build(model, spec)
        return
    default_wd = {"SGD": 0.0, "AdamW": 0.01}[optimizer["type"]]
    want = add_params(model, optimizer["lr"], wd, cfg, default_wd=default_wd)
    assert differing(handed(model, spec), want) == []


def test_a_swin_config_trains_with_the_rates_mmengine_gives() -> None:
    # mmseg's Swin recipe: no decay on norms, biases, flat tensors and two named tables
    wrapper = {
        "type": "AmpOptimWrapper",
        "optimizer": {"type": "AdamW", "lr": 6e-5, "betas": (0.9, 0.999), "weight_decay": 0.01},
        "paramwise_cfg": {
            "norm_decay_mult": 0.0, "bias_decay_mult": 0.0, "flat_decay_mult": 0.0,
            "custom_keys": {".logit_scale": {"decay_mult": 0.0}, "backbone": {"lr_mult": 0.1}},
        },
        "clip_grad": {"max_norm": 1.0},
    }  # fmt: skip
    model = Detector()
    spec = from_mmengine(wrapper, model)
    assert spec.hyper == {"betas": (0.9, 0.999)}
    want = add_params(model, 6e-5, 0.01, wrapper["paramwise_cfg"])
    assert differing(handed(model, spec), want) == []
    # the root scalar is reached through MMEngine's leading dot, the backbone's norms keep the key's decay
    assert want["logit_scale"][1] == 0.0 and want["backbone.1.weight"] == (6e-6, 0.01, False)
    opt = torch.optim.AdamW(multilr.build(Detector(), spec))
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([6e-6, 6e-5])


def test_requires_grad_false_in_a_custom_key_freezes() -> None:
    model = Detector()
    spec = from_mmengine({"optimizer": {"type": "SGD", "lr": 0.1}, "paramwise_cfg": {"custom_keys": {"backbone": {"requires_grad": False}}}})
    multilr.build(model, spec)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


@pytest.mark.parametrize(
    ("wrapper", "message"),
    [
        ({"optimizer": {"lr": 0.1}, "paramwise_cfg": {"norm_decay_mul": 0.0}}, "unknown key 'norm_decay_mul'.*did you mean 'norm_decay_mult'"),
        ({"optimizer": {"lr": 0.1}, "paramwise_cfg": {"custom_keys": {"head": {"momentum": 0.5}}}}, r"custom_keys\['head'\]: unknown key 'momentum'"),
        ({"optimizer": {"lr": 0.1, "type": "SGD"}, "paramwise_cfg": {"dcn_offset_lr_mult": 0.1}}, "deformable convolutions are not supported"),
        ({"optimizer": {"lr": 0.1, "type": "SGD"}, "paramwise_cfg": {"dwconv_decay_mult": 0.0}}, "needs the optimizer's weight_decay"),
        ({"optimizer": {"lr": 0.1, "type": "SGD", "weight_decay": 0.1}, "paramwise_cfg": {"dwconv_decay_mult": 0.0}}, "dwconv_decay_mult needs the model"),
        ({"optimizer": {"lr": 0.1, "type": "Lion"}}, "no weight_decay, and 'Lion' is not an optimizer"),
        ({"optimizer": {"lr": 0.1}, "constructor": "LearningRateDecayOptimWrapperConstructor"}, "write layer_decay in the spec"),
        ({"optimizer": {"lr": -0.1, "weight_decay": 0.0}}, "optim_wrapper.optimizer.lr must be > 0"),
        ({"optimizer": {"weight_decay": 0.0}}, "optimizer must be a mapping with 'lr'"),
        ({"optimizer": {"lr": 0.1, "weight_decay": 0.0}, "optimiser": {}}, "unknown key 'optimiser'"),
        ({"optimizer": {"lr": 0.1, "weight_decay": 0.0, "momentum": 0.9, "momentun": 0.9}}, "optim_wrapper.optimizer: hyper.momentun: .*did you mean 'momentum'"),
    ],
    ids=["misspelt-mult", "per-group-optimizer-key", "dcn", "decay-without-base", "dwconv-without-model",
         "unknown-default-decay", "layer-decay-constructor", "negative-lr", "no-lr", "misspelt-wrapper-key",
         "misspelt-hyper"],
)  # fmt: skip
def test_bad_configs_are_refused_by_name(wrapper: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        from_mmengine(wrapper)


class Edges(nn.Module):
    """Tensors on the edges of MMEngine's tests, which ``Detector`` does not reach.

    A grouped conv that is not depthwise (``groups`` 2 of 8 channels), a depthwise conv ``dw``
    whose path is also the tail of a deeper, ordinary conv ``stage.dw``, a tensor whose name
    ends in ``bias`` without being one (BEiT's ``q_bias``), and ``stem.1`` next to ``stem_1``
    (a ``.`` in a custom key is a dot, not any character).
    """

    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 3, groups=8)
        self.stage = nn.Module()
        self.stage.dw = nn.Conv2d(8, 8, 3)
        self.grouped = nn.Conv2d(8, 8, 3, groups=2)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(8, 24, bias=False)
        self.attn.q_bias = nn.Parameter(torch.zeros(8))
        self.stem = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
        self.stem_1 = nn.Linear(8, 8)


@pytest.mark.parametrize(
    ("cfg", "tensor", "want"),
    [
        # in_channels == groups, not any grouped conv; and only the tensors of that module itself
        ({"dwconv_decay_mult": 0.0}, "grouped.weight", (0.1, 0.1, False)),
        ({"dwconv_decay_mult": 0.0}, "stage.dw.weight", (0.1, 0.1, False)),
        ({"dwconv_decay_mult": 0.0}, "dw.weight", (0.1, 0.0, False)),
        # the depthwise conv's bias is flat too: MMEngine asks dwconv before ndim == 1
        ({"dwconv_decay_mult": 0.5, "flat_decay_mult": 0.0}, "dw.bias", (0.1, 0.05, False)),
        # a bias is a tensor called exactly "bias"
        ({"bias_lr_mult": 2.0}, "attn.q_bias", (0.1, 0.1, False)),
        ({"bias_lr_mult": 2.0}, "stem_1.bias", (0.2, 0.1, False)),
        # a custom key is a substring, not a pattern
        ({"custom_keys": {"stem.1": {"lr_mult": 0.1}}}, "stem_1.weight", (0.1, 0.1, False)),
        # equal lengths: alphabetical, whatever the config's order ("dw" before "ge", both in "stage.dw")
        ({"custom_keys": {"ge": {"lr_mult": 3.0}, "dw": {"lr_mult": 0.5}}}, "stage.dw.weight",
         (0.05, 0.1, False)),
    ],
    ids=["grouped-conv", "deeper-same-name", "depthwise", "dwconv-before-flat", "q-bias", "bias",
         "dot-in-key", "equal-length-keys"],
)  # fmt: skip
def test_edge_tensors_get_what_add_params_gives(cfg: dict[str, Any], tensor: str, want: tuple) -> None:
    model = Edges()
    optimizer = {"type": "SGD", "lr": 0.1, "weight_decay": 0.1}
    spec = from_mmengine({"optimizer": optimizer, "paramwise_cfg": cfg}, model)
    got = handed(model, spec)
    assert got[tensor] == pytest.approx(want), f"{tensor}: got {got[tensor]}, want {want}"
    assert differing(got, add_params(model, 0.1, 0.1, cfg)) == []


def test_a_leading_dot_reaches_root_tensors_only() -> None:
    """MMEngine tests ``key in f"{prefix}.{name}"``, and only a root tensor's prefix is empty:
    ``".logit_scale"`` is in ``".logit_scale"``, ``".neck"`` in no name under the module ``neck``
    (``"neck.weight"``). Such a key matches nothing there, which multilr refuses by name."""
    optimizer = {"type": "SGD", "lr": 0.1, "weight_decay": 0.1}
    spec = from_mmengine({"optimizer": optimizer, "paramwise_cfg": {"custom_keys": {".neck": {"lr_mult": 0.1}}}})
    assert add_params(Detector(), 0.1, 0.1, {"custom_keys": {".neck": {"lr_mult": 0.1}}})["neck.weight"][0] == 0.1
    with pytest.raises(CoverageError, match=r"custom_keys\[\.neck\]"):
        multilr.plan(Detector(), spec, backend="torch")
    root = from_mmengine({"optimizer": optimizer, "paramwise_cfg": {"custom_keys": {".logit": {"lr_mult": 0.1}}}})
    assert handed(Detector(), root)["logit_scale"][0] == pytest.approx(0.01)
