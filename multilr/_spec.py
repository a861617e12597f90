"""The spec: one backend-neutral description of groups and scales.

A :class:`Spec` is built from Python objects or from a plain mapping as loaded from
YAML/JSON, and ``Spec.from_dict(spec.to_dict()) == spec``. It says nothing about a
particular model; :func:`multilr.plan` resolves it against one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from multilr._check import check_keys, did_you_mean, number, shown
from multilr._hyperkeys import check_hyper_key
from multilr._rules import LayerDecay, Rule, Spread
from multilr._stages import Stage
from multilr._text import dump_yaml, parse_json, parse_yaml
from multilr.errors import SpecError
from multilr.schedules import Schedule, schedule_from_dict, schedule_to_dict

__all__ = ["NO_DECAY_CLASSES", "Spec"]

#: Weight-decay classes a spec can exempt from decay (``no_decay=("bias", "norm")``):
#: ``bias`` (attribute named ``bias``), ``norm`` (owned by a normalization layer),
#: ``1d`` (any tensor with at most one dimension), ``embedding`` (owned by an embedding).
NO_DECAY_CLASSES = ("bias", "norm", "1d", "embedding")

#: Group keys that are not the spec's to set, and why; not allowed in ``hyper`` (nor are
#: ``lr`` and ``weight_decay``, which are set at the top level).
_RESERVED_HYPER = {
    "params": "multilr writes each group's tensors itself",
    "name": "multilr names each group itself, after its rules",
    "lr_scale": "multilr writes each group's scale itself: into lr_scale for nn.Graph, inside lr "
    "elsewhere (one lr_scale for every group would undo the plan's scales)",
    "initial_lr": "schedulers set it from each group's lr (one initial_lr for every group would "
    "start them all from one rate)",
}

_SPEC_KEYS = (
    "lr", "weight_decay", "hyper", "rules", "layer_decay", "spread", "rates", "no_decay", "unmatched",
    "schedule", "stages", "model_hints", "train_bn",
)


#: How deep lists may nest in ``hyper`` and how many values one entry may hold: an
#: optimizer takes ``betas=(0.9, 0.999)``, not a YAML alias structure a billion values large.
_HYPER_DEPTH, _HYPER_SIZE = 4, 10_000


def _hyper_value(value: Any, where: str, depth: int = 0, budget: list[int] | None = None) -> Any:
    budget = [_HYPER_SIZE] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(f"{where}: more than {_HYPER_SIZE} values; hyper holds optimizer settings")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        # only 4,300-digit integers break JSON; an optimizer setting is never that large
        if abs(value) > 2**63 - 1:
            raise SpecError(f"{where} must be an integer below 2**63, got {shown(value)}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{where} must be finite, got {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        if depth >= _HYPER_DEPTH:
            raise SpecError(f"{where}: lists nested more than {_HYPER_DEPTH} deep, got {shown(value)}")
        # betas and friends: the optimizers want tuples, YAML gives lists.
        return tuple(_hyper_value(v, f"{where}[{i}]", depth + 1, budget) for i, v in enumerate(value))
    raise SpecError(
        f"{where} must be a number, bool, string or list, got {type(value).__name__} {shown(value)}"
    )


@dataclass(frozen=True)
class Spec:
    """Groups and scales for discriminative learning rates.

    Args:
        lr: Base learning rate; every scale multiplies it. Must be > 0.
        weight_decay: Base weight decay, written into every group (default 0.0, so no
            framework's own default applies silently).
        hyper: Other optimizer hyperparameters copied into every group
            (``{"momentum": 0.9}``, ``{"betas": (0.9, 0.999)}``).
        rules: Rules selecting parameters (see :class:`~multilr.Rule`).
        layer_decay: Layer-wise decay (see :class:`~multilr.LayerDecay`), or a list of
            them: towers decayed side by side (CLIP's image and text encoders), each
            with its own ``within``.
        spread: Geometric rates over named rules (see :class:`~multilr.Spread`).
        rates: Absolute rate per parameter name (seed 001's per-tensor rates).
        no_decay: Weight-decay classes set to 0: any of :data:`NO_DECAY_CLASSES`.
        unmatched: ``"default"`` puts parameters no rule, rate or decay reaches in the
            default group at the base rate; ``"error"`` refuses them.
        schedule: The factor per step that drives every group (see :mod:`multilr.schedules`);
            :class:`~multilr.Controller` uses it unless given another. A rule's own
            ``schedule`` multiplies it for that rule's parameters.
        stages: Staged unfreezing (see :class:`~multilr.Stage`): the parameters a stage
            reaches are frozen until it.
        model_hints: Honour a model's own hints, timm's ``no_weight_decay()`` and a
            tensor's ``_no_weight_decay = True`` flag (mamba_ssm's; one more no-decay
            class each) and ``group_matcher()`` (the depths for ``layer_decay`` in place
            of ``"blocks"`` inference); see :mod:`multilr._hints`. ``False`` ignores them.
        train_bn: Norm layers keep training when the layers around them are frozen by
            depth or by stage, as fastai's ``Learner(train_bn=True)``: the tensors of the
            ``norm`` family (BatchNorm, LayerNorm, GroupNorm, ...) get groups of their own
            (named ``.../train_bn``), no stage holds them back, and
            :meth:`Controller.freeze_to <multilr.Controller.freeze_to>` leaves them
            training, at their planned rates. A ``frozen`` rule still freezes them, and so
            does ``Controller.freeze`` naming their group: both are explicit.

    Precedence, per parameter and per setting:
        * rate: ``rates`` entry > a rule's ``lr`` or ``lr_mult`` (higher ``priority`` first;
          a spread gives its rules an ``lr``) > 1.0; layer decay multiplies ``lr_mult``
          and the default, never an absolute rate.
        * weight decay: a rule's ``weight_decay`` > ``no_decay`` class (0.0), then the
          model's ``no_weight_decay()`` names and ``_no_weight_decay`` tensors (0.0) >
          ``weight_decay``.
        * frozen: a stage (frozen until it, then training) > a rule's ``frozen`` > not
          frozen; ``train_bn`` keeps a norm tensor out of stages unless a ``frozen`` rule
          reaches it.

    Example:
        >>> spec = Spec(lr=1e-3, rules=[Rule("fc.*", lr_mult=10)], no_decay=("bias",))
        >>> Spec.from_dict(spec.to_dict()) == spec
        True
    """

    lr: float
    weight_decay: float = 0.0
    hyper: Mapping[str, Any] = field(default_factory=dict)
    rules: Sequence[Rule] = ()
    layer_decay: LayerDecay | Sequence[LayerDecay] | None = None
    spread: Spread | None = None
    rates: Mapping[str, float] = field(default_factory=dict)
    no_decay: Sequence[str] = ()
    unmatched: Literal["default", "error"] = "default"
    schedule: Schedule | None = None
    stages: Sequence[Stage] = ()
    model_hints: bool = True
    train_bn: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "lr", number(self.lr, "lr", positive=True))
        set_(self, "weight_decay", number(self.weight_decay, "weight_decay"))
        if not isinstance(self.hyper, Mapping):
            raise SpecError(f"hyper must be a mapping, got {shown(self.hyper)}")
        hyper = {}
        for key, value in self.hyper.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise SpecError(f"hyper: key must be an identifier, got {shown(key)}")
            if key in ("lr", "weight_decay"):
                raise SpecError(f"hyper.{key}: set {key!r} at the top level of the spec, not in hyper")
            if key in _RESERVED_HYPER:
                raise SpecError(f"hyper.{key}: not a setting of the spec: {_RESERVED_HYPER[key]}")
            check_hyper_key(key)
            hyper[key] = _hyper_value(value, f"hyper.{key}")
        set_(self, "hyper", MappingProxyType(hyper))
        rules = tuple(self.rules)
        for i, rule in enumerate(rules):
            if not isinstance(rule, Rule):
                raise SpecError(f"rules[{i}] must be a Rule, got {type(rule).__name__} {shown(rule)}")
        names = [r.name for r in rules]
        for name in names:
            if names.count(name) > 1:
                raise SpecError(f"rules: two rules are named {name!r}; give them distinct names")
        for rule in rules:
            if rule.lr_mult is not None and not math.isfinite(self.lr * rule.lr_mult):
                raise SpecError(
                    f"rule {rule.name!r}: lr_mult {rule.lr_mult!r} x lr {self.lr!r} overflows; "
                    "the rate must be a finite number"
                )
        set_(self, "rules", rules)
        if self.layer_decay is not None and not isinstance(self.layer_decay, LayerDecay):
            set_(self, "layer_decay", _towers(self.layer_decay))
        if self.spread is not None:
            if not isinstance(self.spread, Spread):
                raise SpecError(f"spread must be a Spread, got {shown(self.spread)}")
            for name in self.spread.over:
                if name not in names:
                    known = ", ".join(names) or "(none)"
                    raise SpecError(
                        f"spread.over names no rule {name!r}{did_you_mean(name, names)}; rules: {known}"
                    )
                rule = rules[names.index(name)]
                if rule.lr is not None or rule.lr_mult is not None:
                    own = "lr" if rule.lr is not None else "lr_mult"
                    raise SpecError(
                        f"rule {name!r} is in spread.over and sets its own rate ({own}); "
                        "remove one of the two"
                    )
        if not isinstance(self.rates, Mapping):
            raise SpecError(f"rates must be a mapping of parameter name -> rate, got {shown(self.rates)}")
        rates = {}
        for pname, rate in self.rates.items():
            if not isinstance(pname, str) or not pname:
                raise SpecError(f"rates: parameter name must be a non-empty string, got {shown(pname)}")
            rates[pname] = number(rate, f"rates[{pname!r}]")
        set_(self, "rates", MappingProxyType(rates))
        no_decay = (self.no_decay,) if isinstance(self.no_decay, str) else tuple(self.no_decay)
        for cls in no_decay:
            if cls not in NO_DECAY_CLASSES:
                raise SpecError(
                    f"no_decay: unknown class {shown(cls)}{did_you_mean(shown(cls), NO_DECAY_CLASSES)}; "
                    f"known: {', '.join(NO_DECAY_CLASSES)}"
                )
        set_(self, "no_decay", no_decay)
        if self.unmatched not in ("default", "error"):
            raise SpecError(f"unmatched must be 'default' or 'error', got {shown(self.unmatched)}")
        if self.schedule is not None:
            set_(self, "schedule", schedule_from_dict(self.schedule, "schedule"))
        set_(self, "stages", self._checked_stages(names))
        if not isinstance(self.model_hints, bool):
            raise SpecError(f"model_hints must be true or false, got {shown(self.model_hints)}")
        if not isinstance(self.train_bn, bool):
            raise SpecError(f"train_bn must be true or false, got {shown(self.train_bn)}")

    def _checked_stages(self, rule_names: list[str]) -> tuple[Stage, ...]:
        """Stages with their names filled in; every rule they name must exist."""
        stages = tuple(self.stages)
        out = []
        for i, stage in enumerate(stages):
            if isinstance(stage, Mapping):
                stage = Stage.from_dict(stage, f"stages[{i}]")
            if not isinstance(stage, Stage):
                raise SpecError(f"stages[{i}] must be a Stage, got {type(stage).__name__} {shown(stage)}")
            for rule in stage.unfreeze:
                if rule not in rule_names:
                    known = ", ".join(rule_names) or "(none)"
                    raise SpecError(
                        f"stages[{i}] unfreezes {rule!r}, which names no rule"
                        f"{did_you_mean(rule, rule_names)}; rules: {known}"
                    )
            if not stage.name:
                stage = dataclasses.replace(stage, name=f"stage{i}")
            out.append(stage)
        labels = [s.name for s in out]
        for label in labels:
            if labels.count(label) > 1:
                raise SpecError(f"stages: two stages are named {label!r}; give them distinct names")
        return tuple(out)

    def with_lr(self, lr: float) -> Spec:
        """This spec at base rate ``lr``, its absolute rates scaled with it.

        ``dataclasses.replace(spec, lr=x)`` moves only the rates relative to the base
        (multipliers, layer decay); a rule's ``lr``, a spread and ``rates`` are absolute
        and stay. This moves every rate by ``lr / self.lr``, so every group keeps its
        ratio to the base: what :func:`multilr.lr_find` measured at that base rate.

        Raises:
            SpecError: ``lr`` is not a positive finite number, or a scaled rate overflows.

        Example:
            >>> spec = Spec(lr=1e-3, rules=[Rule("a", lr=1e-4), Rule("b", lr_mult=2)])
            >>> fast = spec.with_lr(1e-2)
            >>> fast.lr, fast.rules[0].lr, fast.rules[1].lr_mult
            (0.01, 0.001, 2.0)
        """
        new = number(lr, "lr", positive=True)
        k = new / self.lr
        rules = [r if r.lr is None else dataclasses.replace(r, lr=r.lr * k) for r in self.rules]
        spread = self.spread
        if spread is not None:
            spread = dataclasses.replace(spread, lo=spread.lo * k, hi=spread.hi * k)
        rates = {name: rate * k for name, rate in self.rates.items()}
        return dataclasses.replace(self, lr=new, rules=rules, spread=spread, rates=rates)

    @property
    def layer_decays(self) -> tuple[LayerDecay, ...]:
        """The spec's layer decays as towers: none, one, or several side by side.

        Example:
            >>> Spec(lr=0.1, layer_decay=LayerDecay(0.8)).layer_decays
            (LayerDecay(decay=0.8, depth='blocks', within=None, place=None, name=''),)
        """
        decay = self.layer_decay
        if decay is None:
            return ()
        return (decay,) if isinstance(decay, LayerDecay) else tuple(decay)

    def rule_rates(self) -> Mapping[str, float]:
        """Absolute rate a spread gives each rule it names (empty without a spread)."""
        if self.spread is None:
            return {}
        return dict(zip(self.spread.over, self.spread.rates(), strict=True))

    # -- mapping form ---------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spec:
        """Build a spec from a plain mapping (as ``yaml.safe_load`` or ``json.load`` give).

        Raises:
            SpecError: Unknown key (with the closest known key), wrong type or bad value.

        Example:
            >>> Spec.from_dict({"lr": 0.01, "rules": [{"prefix": "fc", "lr_mult": 10}]}).rules[0].lr_mult
            10.0
        """
        check_keys(data, _SPEC_KEYS, "spec")
        if "lr" not in data:
            raise SpecError("spec: missing required key 'lr' (the base learning rate)")
        kwargs: dict[str, Any] = {
            k: data[k] for k in ("lr", "weight_decay", "unmatched", "model_hints", "train_bn") if k in data
        }
        kwargs["hyper"] = _given(data, "hyper", {})
        rules = _given(data, "rules", [])
        if not isinstance(rules, Sequence) or isinstance(rules, str):
            raise SpecError(f"rules must be a list of mappings, got {shown(rules)}")
        kwargs["rules"] = tuple(Rule.from_dict(r, f"rules[{i}]") for i, r in enumerate(rules))
        decay = data.get("layer_decay")
        if isinstance(decay, (list, tuple)):  # towers
            kwargs["layer_decay"] = tuple(_tower_from_dict(d, k) for k, d in enumerate(decay))
        elif decay is not None:
            kwargs["layer_decay"] = LayerDecay.from_dict(decay)
        if data.get("spread") is not None:
            kwargs["spread"] = Spread.from_dict(data["spread"])
        kwargs["rates"] = _given(data, "rates", {})
        no_decay = _given(data, "no_decay", ())
        if not isinstance(no_decay, (str, list, tuple)):
            raise SpecError(f"no_decay must be a list of classes, got {shown(no_decay)}")
        kwargs["no_decay"] = no_decay
        if data.get("schedule") is not None:
            kwargs["schedule"] = schedule_from_dict(data["schedule"], "schedule")
        stages = _given(data, "stages", [])
        if not isinstance(stages, Sequence) or isinstance(stages, str):
            raise SpecError(f"stages must be a list of mappings, got {shown(stages)}")
        kwargs["stages"] = tuple(Stage.from_dict(st, f"stages[{i}]") for i, st in enumerate(stages))
        return cls(**kwargs)

    def to_dict(self, *, describe_code: bool = False) -> dict[str, Any]:
        """The mapping form; plain lists, dicts, numbers and strings only.

        Args:
            describe_code: Write the parts that are Python code (a
                :class:`~multilr.Predicate` selector as ``{"predicate": "<label>"}``, a
                :class:`~multilr.schedules.Function` schedule as ``{"function": "..."}``)
                instead of raising. The result then describes the spec (``Plan.to_json``
                uses it) but cannot be read back.

        Raises:
            SpecError: The spec holds Python code and ``describe_code`` is false.

        Example:
            >>> from multilr import Predicate, Rule
            >>> spec = Spec(lr=0.1, rules=[Rule(Predicate(lambda n, i: True, label="all"), lr_mult=2)])
            >>> spec.to_dict(describe_code=True)["rules"]
            [{'predicate': 'all', 'lr_mult': 2.0}]
        """
        out: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.hyper:
            out["hyper"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.hyper.items()}
        if self.rules:
            out["rules"] = [r.to_dict(describe_code=describe_code) for r in self.rules]
        if isinstance(self.layer_decay, LayerDecay):
            out["layer_decay"] = self.layer_decay.to_dict(describe_code=describe_code)
        elif self.layer_decay is not None:
            out["layer_decay"] = [d.to_dict(describe_code=describe_code) for d in self.layer_decay]
        if self.spread is not None:
            out["spread"] = self.spread.to_dict()
        if self.rates:
            out["rates"] = dict(self.rates)
        if self.no_decay:
            out["no_decay"] = list(self.no_decay)
        if self.unmatched != "default":
            out["unmatched"] = self.unmatched
        if self.schedule is not None:
            out["schedule"] = schedule_to_dict(self.schedule, describe_code=describe_code)
        if self.stages:
            out["stages"] = [st.to_dict() for st in self.stages]
        if not self.model_hints:
            out["model_hints"] = False
        if self.train_bn:
            out["train_bn"] = True
        return out

    # -- files ----------------------------------------------------------------------

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """Parse JSON text."""
        return cls.from_dict(parse_json(text, "spec"))

    @classmethod
    def from_yaml(cls, text: str) -> Spec:
        """Parse YAML text with ``yaml.safe_load`` (nothing in it is ever run as code)."""
        return cls.from_dict(parse_yaml(text, "spec"))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Spec:
        """Read a ``.json``, ``.yaml`` or ``.yml`` file.

        Example:
            >>> import tempfile, pathlib
            >>> p = pathlib.Path(tempfile.mkdtemp()) / "spec.json"
            >>> _ = p.write_text('{"lr": 0.1}')
            >>> Spec.from_file(p).lr
            0.1
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read spec file {str(p)!r}: {exc.strerror}") from None
        if p.suffix.lower() == ".json":
            return cls.from_json(text)
        if p.suffix.lower() in (".yaml", ".yml"):
            return cls.from_yaml(text)
        raise SpecError(f"spec file {str(p)!r}: unknown extension; use .json, .yaml or .yml")

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        """YAML text of :meth:`to_dict` (needs PyYAML); ``Spec.from_yaml(s.to_yaml()) == s``.

        Written so that :meth:`from_yaml` reads every value back as it was: a string such
        as ``'1e5'`` is quoted, which ``yaml.safe_dump`` leaves bare (YAML 1.1 reads it as
        text, multilr's reader as the number, as YAML 1.2 does).

        Example:
            >>> from multilr import Rule
            >>> spec = Spec(lr=0.1, rules=[Rule("head.*", lr_mult=10)])
            >>> print(spec.to_yaml(), end="")
            lr: 0.1
            weight_decay: 0.0
            rules:
            - glob: head.*
              lr_mult: 10.0
            >>> Spec.from_yaml(spec.to_yaml()) == spec
            True
        """
        return dump_yaml(self.to_dict())


def _towers(decays: Any) -> tuple[LayerDecay, ...]:
    """``layer_decay`` given as a list: towers, each with its own ``within`` and label."""
    if not isinstance(decays, (list, tuple)):
        raise SpecError(f"layer_decay must be a LayerDecay or a list of them, got {shown(decays)}")
    if not decays:
        raise SpecError("layer_decay: an empty list of towers; leave layer_decay out for none")
    for k, decay in enumerate(decays):
        if not isinstance(decay, LayerDecay):
            raise SpecError(f"layer_decay[{k}] must be a LayerDecay, got {shown(decay)}")
        if decay.within is None and len(decays) > 1:
            # without it the tower would hold every parameter, the others' too
            raise SpecError(f"layer_decay[{k}]: a tower of several needs 'within' (the parameters it decays)")
    labels = [decay.label(k) for k, decay in enumerate(decays)]
    for k, label in enumerate(labels):
        if labels.index(label) != k:
            raise SpecError(
                f"layer_decay[{labels.index(label)}] and layer_decay[{k}] are both labelled {label!r}; "
                "give one a name"
            )
    return tuple(decays)


def _tower_from_dict(data: Any, k: int) -> LayerDecay:
    """Tower ``k`` of a ``layer_decay`` list in mapping form; its errors name its index."""
    if not isinstance(data, Mapping):
        raise SpecError(f"layer_decay[{k}] must be a mapping, got {shown(data)}")
    try:
        return LayerDecay.from_dict(data)
    except SpecError as exc:
        raise SpecError(f"layer_decay[{k}]: {exc}") from None


def _given(data: Mapping[str, Any], key: str, default: Any) -> Any:
    """``data[key]``, or ``default`` when absent or null (YAML's ``rules:`` with nothing after).

    Only null means "not given": ``rates: 0`` or ``rules: false`` is a mistake to report,
    not an empty value to accept.
    """
    value = data.get(key)
    return default if value is None else value


def as_spec(spec: Spec | Mapping[str, Any] | str | os.PathLike[str]) -> Spec:
    """Accept a Spec, a mapping, or a path to a spec file."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        return Spec.from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return Spec.from_file(spec)
    raise SpecError(f"spec must be a Spec, a mapping or a file path, got {type(spec).__name__}")
