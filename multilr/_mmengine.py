"""MMEngine's ``optim_wrapper`` config as a :class:`~multilr.Spec` that gives every tensor the same settings.

MMEngine users carry their discriminative rates in ``paramwise_cfg``; the natural
hand translation into rules differs silently in several places (``docs/translating.md``:
``bias_lr_mult`` skips norm biases, a custom key resets the norms' decay, MMEngine's norm
test is four classes, its "flat" test is ``ndim == 1``). :func:`from_mmengine` writes
the spec that reproduces ``DefaultOptimWrapperConstructor.add_params`` (mmengine 0.4 and
later) tensor by tensor, with MMEngine's precedence as rule priorities:

* a custom key (the longest key that is a substring of ``prefix.name``, alphabetical
  among equals) decides both the rate and the weight decay, and nothing else applies;
* otherwise ``bias_lr_mult`` multiplies the rate of every bias outside a norm layer;
* the weight decay comes from the first of: a norm layer (``_BatchNorm``,
  ``_InstanceNorm``, ``GroupNorm``, ``LayerNorm`` and subclasses), a bias, a depthwise
  ``Conv2d`` (``in_channels == groups``), a tensor with ``ndim == 1``.

``backends/torch/tests/test_mmengine.py`` checks it against a transcription of
``add_params`` on generated configs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from multilr._check import check_keys, number, shown
from multilr._rules import Rule
from multilr._select import ModuleType, Ndim, Regex
from multilr._spec import Spec
from multilr.errors import SpecError

__all__ = ["from_mmengine"]

#: ``optim_wrapper`` keys: the two that decide groups, and the wrapper's own (clipping,
#: accumulation, AMP), which change no rate and are left to the wrapper.
_WRAPPER_KEYS = ("optimizer", "paramwise_cfg", "constructor", "type", "clip_grad", "accumulative_counts",
                 "loss_scale", "dtype")  # fmt: skip
_PARAMWISE_KEYS = ("custom_keys", "bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult",
                   "flat_decay_mult", "bypass_duplicate", "dcn_offset_lr_mult")  # fmt: skip
#: What a custom key may set: MMEngine copies every key into the tensor's group, so an
#: ``lr`` or ``weight_decay`` there is absolute; ``requires_grad: False`` (older mmengine releases) freezes.
_CUSTOM_KEYS = ("lr_mult", "decay_mult", "lr", "weight_decay", "requires_grad")
#: MMEngine's norm layers: a class test, not multilr's ``norm`` family (no RMSNorm).
_NORMS = ("_BatchNorm", "_InstanceNorm", "GroupNorm", "LayerNorm")
#: torch's default weight decay, for an optimizer config that gives none (MMEngine then
#: sets none in any group, so the optimizer's own default applies).
_DEFAULT_WEIGHT_DECAY = {
    "SGD": 0.0, "Adam": 0.0, "AdamW": 0.01, "RMSprop": 0.0, "Adagrad": 0.0, "Adadelta": 0.0,
    "Adamax": 0.0, "NAdam": 0.0, "RAdam": 0.0, "ASGD": 0.0,
}  # fmt: skip


def from_mmengine(optim_wrapper: Mapping[str, Any], model: Any = None) -> Spec:
    """The spec that gives each tensor the rate and weight decay MMEngine's constructor would.

    Args:
        optim_wrapper: The config's ``optim_wrapper`` mapping: ``optimizer`` (``type``,
            ``lr``, ``weight_decay`` and the optimizer's other keys, which go to the spec's
            ``hyper``) and ``paramwise_cfg``. The wrapper's own keys (``type``,
            ``clip_grad``, ``accumulative_counts``, ``loss_scale``, ``dtype``) change no
            rate and are not read.
        model: The model; needed only for ``dwconv_decay_mult`` (which ``Conv2d`` layers are
            depthwise is not in the parameter names).

    Returns:
        The spec; ``spec.to_dict()`` is its YAML form.

    Raises:
        SpecError: An unknown key (named, with a did-you-mean), a custom key setting an
            optimizer key per group (multilr groups share ``hyper``), ``dcn_offset_lr_mult``
            (mmcv's deformable convolutions are not supported), a decay multiplier
            without the optimizer's ``weight_decay`` (MMEngine refuses it too), or
            ``dwconv_decay_mult`` without the model.

    Example:
        >>> spec = from_mmengine({
        ...     "optimizer": {"type": "AdamW", "lr": 1e-4, "weight_decay": 0.05, "betas": (0.9, 0.999)},
        ...     "paramwise_cfg": {"norm_decay_mult": 0.0, "custom_keys": {"backbone": {"lr_mult": 0.1}}},
        ... })
        >>> spec.lr, spec.weight_decay, dict(spec.hyper)
        (0.0001, 0.05, {'betas': (0.9, 0.999)})
        >>> [(r.name, r.lr_mult, r.weight_decay, r.priority) for r in spec.rules]
        [('custom_keys[backbone]', 0.1, 0.05, 11), ('norm_decay_mult', None, 0.0, 4)]
    """
    check_keys(optim_wrapper, _WRAPPER_KEYS, "optim_wrapper")
    constructor = optim_wrapper.get("constructor", "DefaultOptimWrapperConstructor")
    if constructor != "DefaultOptimWrapperConstructor":
        raise SpecError(
            "optim_wrapper.constructor: only DefaultOptimWrapperConstructor is translated, got "
            f"{shown(constructor)}; "
            "for mmpretrain's layer-wise decay constructors write layer_decay in the spec (its depths are "
            "multilr's, not the model's get_layer_depth: check them with multilr explain)"
        )
    optimizer = optim_wrapper.get("optimizer")
    if not isinstance(optimizer, Mapping) or "lr" not in optimizer:
        raise SpecError(f"optim_wrapper.optimizer must be a mapping with 'lr', got {shown(optimizer)}")
    kind = optimizer.get("type")
    base_wd = optimizer.get("weight_decay")
    if base_wd is not None:
        base_wd = number(base_wd, "optim_wrapper.optimizer.weight_decay")
    hyper = {k: v for k, v in optimizer.items() if k not in ("type", "lr", "weight_decay")}
    cfg = optim_wrapper.get("paramwise_cfg") or {}
    check_keys(cfg, _PARAMWISE_KEYS, "paramwise_cfg")
    mults = {
        k: number(cfg[k], f"paramwise_cfg.{k}") for k in _PARAMWISE_KEYS if k.endswith("_mult") and k in cfg
    }
    if "dcn_offset_lr_mult" in mults:
        raise SpecError("paramwise_cfg.dcn_offset_lr_mult: mmcv's deformable convolutions are not supported")
    decay_mults = [k for k in mults if k.endswith("decay_mult")]
    if decay_mults and base_wd is None:
        raise SpecError(
            f"paramwise_cfg.{decay_mults[0]} needs the optimizer's weight_decay (MMEngine refuses it without)"
        )
    rules = _custom_rules(cfg.get("custom_keys") or {}, base_wd)
    rules += _class_rules(mults, base_wd, model)
    lr = number(optimizer["lr"], "optim_wrapper.optimizer.lr", positive=True)
    try:
        Spec(lr=lr, hyper=hyper)  # the optimizer's other keys, checked as hyper (a misspelt one is refused)
    except SpecError as exc:  # say where the key came from: the spec's "hyper" is not in the config
        raise SpecError(f"optim_wrapper.optimizer: {exc}") from None
    return Spec(lr=lr, weight_decay=_base_weight_decay(base_wd, kind), hyper=hyper, rules=rules)


def _base_weight_decay(base_wd: float | None, kind: Any) -> float:
    """The optimizer's ``weight_decay``, or torch's default for its ``type`` when it gives none."""
    if base_wd is not None:
        return base_wd
    if kind not in _DEFAULT_WEIGHT_DECAY:
        raise SpecError(
            f"optim_wrapper.optimizer: no weight_decay, and {shown(kind)} is not an optimizer whose default "
            "multilr knows; give weight_decay (multilr writes it into every group)"
        )
    return _DEFAULT_WEIGHT_DECAY[kind]


def _substring_of_dotted(key: str) -> Regex:
    """``key in f"{prefix}.{name}"``: MMEngine writes a root tensor's name with a leading dot."""
    pattern = re.escape(key)
    # '.logit_scale' also matches the root tensor 'logit_scale' (and 'logit_scale_2'), as
    # '.logit_scale' is in '.logit_scale_2'; only a root tensor has that leading dot, and its
    # name has no other: '.neck' is not in 'neck.weight'
    if key.startswith(".") and "." not in key[1:]:
        pattern = f"{pattern}|^{re.escape(key[1:])}[^.]*$"
    return Regex(pattern)


def _custom_rules(custom_keys: Any, base_wd: float | None) -> list[Rule]:
    """One rule per custom key, the first in MMEngine's order at the highest priority.

    A custom key sets both settings (MMEngine's defaults: ``lr_mult`` and ``decay_mult``
    1), so no class rule below reaches a tensor it matches.
    """
    if not isinstance(custom_keys, Mapping):
        raise SpecError(f"paramwise_cfg.custom_keys must be a mapping, got {shown(custom_keys)}")
    ordered = sorted(sorted(custom_keys), key=len, reverse=True)  # longest first, then alphabetical
    rules = []
    for i, key in enumerate(ordered):
        where = f"paramwise_cfg.custom_keys[{key!r}]"
        if not isinstance(key, str) or not key:
            raise SpecError(f"paramwise_cfg.custom_keys: a key must be a non-empty string, got {shown(key)}")
        options = custom_keys[key]
        check_keys(options, _CUSTOM_KEYS, where)
        settings: dict[str, Any] = {}
        if "lr" in options:  # copied into the group after lr_mult's rate: absolute
            settings["lr"] = number(options["lr"], f"{where}.lr", positive=True)
        else:
            settings["lr_mult"] = number(options.get("lr_mult", 1.0), f"{where}.lr_mult")
        if base_wd is None and "decay_mult" in options:
            raise SpecError(
                f"{where}.decay_mult needs the optimizer's weight_decay (MMEngine refuses it without)"
            )
        if "weight_decay" in options:
            settings["weight_decay"] = number(options["weight_decay"], f"{where}.weight_decay")
        elif base_wd is not None:
            settings["weight_decay"] = base_wd * number(options.get("decay_mult", 1.0), f"{where}.decay_mult")
        requires_grad = options.get("requires_grad", True)
        if not isinstance(requires_grad, bool):
            raise SpecError(f"{where}.requires_grad must be true or false, got {shown(requires_grad)}")
        if not requires_grad:
            settings["frozen"] = True
        priority = 10 + len(ordered) - i  # above the class rules: a custom key decides alone
        select = _substring_of_dotted(key)
        rules.append(Rule(select, name=f"custom_keys[{key}]", priority=priority, **settings))
    return rules


def _class_rules(mults: Mapping[str, float], base_wd: float | None, model: Any) -> list[Rule]:
    """The rules of the tensor classes, their priorities MMEngine's order (norm > bias > dwconv > flat)."""
    wd = base_wd if base_wd is not None else 0.0  # no decay multiplier without a base (refused before)
    rules = []
    norm: dict[str, Any] = {}
    if "bias_lr_mult" in mults:
        norm["lr_mult"] = 1.0  # bias_lr_mult skips the norm layers' biases
    if "norm_decay_mult" in mults:
        norm["weight_decay"] = wd * mults["norm_decay_mult"]
    if norm:
        rules.append(Rule(ModuleType(*_NORMS), name="norm_decay_mult" if "weight_decay" in norm else "norm",
                          priority=4, optional=True, **norm))  # fmt: skip
    bias: dict[str, Any] = {}
    if "bias_lr_mult" in mults:
        bias["lr_mult"] = mults["bias_lr_mult"]
    if "bias_decay_mult" in mults:
        bias["weight_decay"] = wd * mults["bias_decay_mult"]
    if bias:
        name = "bias_lr_mult" if "lr_mult" in bias else "bias_decay_mult"
        rules.append(Rule(Regex(r"(^|\.)bias$"), name=name, priority=3, optional=True, **bias))
    if "dwconv_decay_mult" in mults:
        rules.append(
            Rule(_depthwise(model), name="dwconv_decay_mult", priority=2, optional=True,
                 weight_decay=wd * mults["dwconv_decay_mult"])
        )  # fmt: skip
    if "flat_decay_mult" in mults:
        rules.append(
            # MMEngine's flat test: exactly one dimension (multilr's "1d" class takes 0-d too)
            Rule(Ndim(1), name="flat_decay_mult", priority=1, optional=True,
                 weight_decay=wd * mults["flat_decay_mult"])
        )  # fmt: skip
    return rules


def _depthwise(model: Any) -> Regex:
    """The tensors of the model's depthwise ``Conv2d`` layers (``in_channels == groups``), by path."""
    if model is None or not callable(getattr(model, "named_modules", None)):
        raise SpecError(
            "paramwise_cfg.dwconv_decay_mult needs the model: from_mmengine(optim_wrapper, model), "
            "since which Conv2d layers are depthwise is not in the parameter names"
        )
    paths = [
        path
        for path, module in model.named_modules()
        if any(c.__name__ == "Conv2d" for c in type(module).__mro__)
        and getattr(module, "in_channels", None) == getattr(module, "groups", 0)
    ]
    if not paths:
        return Regex(r"(?!)")  # matches nothing: the rule is optional
    # a tensor directly on one of them (the root's path is "": its tensors have no dot)
    return Regex("^(?:" + "|".join(re.escape(p) + r"\." if p else "" for p in paths) + r")[^.]+$")
