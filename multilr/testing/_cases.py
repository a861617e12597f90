"""The shared conformance cases: model layout, seeded weights, fixed gradients, spec, optimizer, schedule.

Every backend runs the same cases, so one case id means the same training everywhere.
A case is data only: a harness builds the framework model from :data:`LAYOUT`, copies
in :meth:`Case.initial`, feeds :meth:`Case.gradient` at each step and reads the
parameters back. The reference plan comes from :meth:`Case.infos` without a framework.

Case ids read ``optimizer-schedule-feature`` (``adamw-cosine_restarts-layer_decay``),
with ``-float64`` appended for the double-precision cases; a backend's test ids put its
name in front (``torch-adamw-cosine_restarts-layer_decay``).

A feature is a spec shape (:data:`FEATURES`), or a run-time one (:data:`RUNTIME_FEATURES`,
ids ``ctl_*``): a spec shape trained under :class:`multilr.Controller` with Controller
calls at given steps (:class:`~multilr.testing.Event`). Such a case is *controlled*
(:attr:`Case.controlled`), as is any case whose spec declares run-time behaviour itself
(stages, per-rule schedules): the case's schedule then drives the Controller instead of
a framework scheduler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from multilr._params import ParamInfo
from multilr._rules import LayerDecay, Rule
from multilr._select import ModuleType, Prefix, Regex
from multilr._spec import Spec
from multilr._stages import Stage
from multilr.schedules import Exponential, Step
from multilr.testing._runtime import Event, spec_is_controlled
from multilr.testing._schedules import FRAMEWORK_SCHEDULES, SCHEDULES, Schedule

__all__ = [
    "FEATURES",
    "LAYOUT",
    "OPTIMIZERS",
    "RUNTIME_FEATURES",
    "SUBCLASSED_LAYOUT",
    "TIED_LAYOUT",
    "TOWERS_LAYOUT",
    "Case",
    "Module",
    "OptimizerSetup",
    "RuntimeFeature",
    "all_cases",
    "case_by_id",
]

STEPS = 6

#: The framework class of each module kind (``scale`` has none: a class of the model's own).
_FRAMEWORK_CLASSES: Mapping[str, str] = {
    "linear": "Linear",
    "layernorm": "LayerNorm",
    "embedding": "Embedding",
}


@dataclass(frozen=True)
class Module:
    """One leaf module of the case model.

    Attributes:
        path: Dotted module path (``blocks.0.fc``).
        kind: ``linear`` (``weight (out, in)``, ``bias (out,)``), ``layernorm``
            (``weight``, ``bias`` of ``(n,)``), ``embedding`` (``weight (n, dim)``) or
            ``scale`` (a module of the model's own class ``cls`` holding one ``gamma`` of
            shape ``(n,)``, as timm's ``LayerScale``).
        dims: ``(in, out)`` for linear, ``(n,)`` for layernorm and scale, ``(n, dim)`` for
            embedding.
        tied_to: The path of a module whose ``weight`` is this module's ``weight`` (an
            LM head tied to the embedding): one tensor under two names.
        trainable: ``False``: the model's own ``requires_grad`` is off before the build
            (a layer the user froze, which no spec mentions).
        cls: The class name of a class of the model's own: for ``linear``, ``layernorm``
            and ``embedding`` a subclass of the framework's class (``class
            GatedLinear(nn.Linear)``), for ``scale`` a subclass of the framework's module
            base. ``None``: the framework's class itself.
    """

    path: str
    kind: str
    dims: tuple[int, ...]
    tied_to: str | None = None
    trainable: bool = True
    cls: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "scale" and self.cls is None:
            raise ValueError(f"module {self.path!r}: kind 'scale' needs its class name (cls)")

    @property
    def base_class(self) -> str | None:
        """The framework class this module is or derives from (``None``: the module base only)."""
        return _FRAMEWORK_CLASSES.get(self.kind)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Its class and bases up to the framework's module base, most derived first.

        What a backend's ``extract`` reports as ``module_types``, so that a selector by a
        base class (``module_type: LayerNorm``, the ``norm`` family) reaches a subclass.

        Example:
            >>> Module("a", "layernorm", (4,), cls="Rescale").class_names
            ('Rescale', 'LayerNorm')
        """
        names = (self.cls,) if self.cls is not None else ()
        return names + ((self.base_class,) if self.base_class is not None else ())

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` of its parameters, in the frameworks' registration order."""
        if self.kind == "linear":
            n_in, n_out = self.dims
            return [(f"{self.path}.weight", (n_out, n_in)), (f"{self.path}.bias", (n_out,))]
        if self.kind == "layernorm":
            return [(f"{self.path}.weight", self.dims), (f"{self.path}.bias", self.dims)]
        if self.kind == "scale":
            return [(f"{self.path}.gamma", self.dims)]
        return [(f"{self.path}.weight", self.dims)]

    def key(self, name: str) -> str:
        """The canonical name of tensor ``name`` (its first name in the model)."""
        return f"{self.tied_to}.weight" if self.tied_to and name == f"{self.path}.weight" else name


#: The case model: an embedding (depth 0), a stack ``blocks.0..2`` of Linear + LayerNorm
#: (depths 1..3) and a linear head (depth 4): 15 tensors.
LAYOUT: tuple[Module, ...] = (
    Module("embed", "embedding", (6, 4)),
    *(
        m
        for i in range(3)
        for m in (Module(f"blocks.{i}.fc", "linear", (4, 4)), Module(f"blocks.{i}.norm", "layernorm", (4,)))
    ),
    Module("head", "linear", (4, 3)),
)

#: The ``tied`` feature's model: :data:`LAYOUT` with a block the user froze
#: (``blocks.1.norm``) and an LM head whose weight is the embedding's: 16 tensors, 17 names.
TIED_LAYOUT: tuple[Module, ...] = (
    *(Module(m.path, m.kind, m.dims, trainable=False) if m.path == "blocks.1.norm" else m for m in LAYOUT),
    Module("lm_head", "linear", (4, 6), tied_to="embed"),
)

_OWN_CLASSES = {"blocks.1.fc": "GatedLinear", "blocks.2.norm": "Rescale"}
_OWN = tuple(dataclasses.replace(m, cls=_OWN_CLASSES.get(m.path)) for m in LAYOUT)

#: The ``subclassed`` feature's model: :data:`LAYOUT` with classes of the model's own, as
#: real models write them: ``blocks.1.fc`` a ``GatedLinear(Linear)``, ``blocks.2.norm`` a
#: ``Rescale(LayerNorm)`` (its name says nothing of a norm: only its base does), and a
#: ``LayerScale`` module holding a ``gamma`` in ``blocks.0``: 16 tensors.
SUBCLASSED_LAYOUT: tuple[Module, ...] = (
    *_OWN[:3],
    Module("blocks.0.scale", "scale", (4,), cls="LayerScale"),
    *_OWN[3:],
)

#: The ``towers`` feature's model, CLIP-shaped: a text tower (an embedding, ``text.blocks.0..1``),
#: a vision tower (a patch projection, ``vision.blocks.0..2``) and a shared head: 23 tensors.
TOWERS_LAYOUT: tuple[Module, ...] = (
    Module("text.embed", "embedding", (6, 4)),
    *(Module(f"text.blocks.{i}.fc", "linear", (4, 4)) for i in range(2)),
    Module("text.norm", "layernorm", (4,)),
    Module("vision.patch", "linear", (4, 4)),
    *(
        m
        for i in range(3)
        for m in (
            Module(f"vision.blocks.{i}.fc", "linear", (4, 4)),
            Module(f"vision.blocks.{i}.norm", "layernorm", (4,)),
        )
    ),
    Module("head", "linear", (4, 3)),
)

#: Layouts other than :data:`LAYOUT`, by feature.
_FEATURE_LAYOUTS: Mapping[str, tuple[Module, ...]] = {
    "tied": TIED_LAYOUT,
    "subclassed": SUBCLASSED_LAYOUT,
    "towers": TOWERS_LAYOUT,
}


@dataclass(frozen=True)
class OptimizerSetup:
    """An optimizer of the cases.

    Attributes:
        kind: Reference kind and framework class: ``sgd``, ``adam``, ``adamw``, ``rmsprop``,
            ``adagrad``, ``adadelta``.
        lr: Base rate.
        weight_decay: Base weight decay (L2 for all but ``adamw``, where it is decoupled).
        hyper: The other hyperparameters, set explicitly in every group.
    """

    kind: str
    lr: float
    weight_decay: float
    hyper: Mapping[str, Any] = field(default_factory=dict)

    def spec(self, **fields: Any) -> Spec:
        """A spec on this set-up's rate, weight decay and hyperparameters, with ``fields``.

        Example:
            >>> OPTIMIZERS["adamw"].spec(no_decay=("bias",)).weight_decay
            0.05
        """
        return Spec(lr=self.lr, weight_decay=self.weight_decay, hyper=self.hyper, **fields)


_SGD = {"momentum": 0.0, "dampening": 0.0, "nesterov": False}
#: eps 1e-2 rather than 1e-8: Adam's moments are near 1 here, so 1e-8 would not show in any
#: update, and a backend that dropped or misplaced eps would pass.
_ADAM = {"betas": (0.9, 0.999), "eps": 1e-2, "amsgrad": False}

#: The optimizers, by the name used in case ids. Rates are large enough that float32
#: updates are well above rounding (the effective rate is read back from them).
OPTIMIZERS: Mapping[str, OptimizerSetup] = {
    "sgd": OptimizerSetup("sgd", 0.1, 0.0, _SGD),
    "sgd_wd": OptimizerSetup("sgd", 0.1, 0.05, _SGD),
    "momentum": OptimizerSetup("sgd", 0.05, 0.01, {**_SGD, "momentum": 0.9}),
    "nesterov": OptimizerSetup("sgd", 0.05, 0.01, {**_SGD, "momentum": 0.9, "nesterov": True}),
    "dampening": OptimizerSetup("sgd", 0.05, 0.0, {**_SGD, "momentum": 0.9, "dampening": 0.5}),
    "adam": OptimizerSetup("adam", 0.01, 0.01, _ADAM),
    "adamw": OptimizerSetup("adamw", 0.01, 0.05, _ADAM),
    # beta2 0.5: with 0.999, v only grows over six steps of gradients in [0.5, 1.5], its
    # running maximum is v itself, and AdamW without amsgrad passed every amsgrad cell
    "amsgrad": OptimizerSetup("adamw", 0.01, 0.05, {**_ADAM, "betas": (0.9, 0.5), "amsgrad": True}),
    # eps 1e-2 rather than 1e-8 so that where eps sits (inside or outside the square root) shows
    "rmsprop": OptimizerSetup(
        "rmsprop", 0.01, 0.01, {"alpha": 0.9, "eps": 1e-2, "momentum": 0.0, "centered": False}
    ),
    "adagrad": OptimizerSetup(
        "adagrad", 0.05, 0.01, {"eps": 1e-10, "lr_decay": 0.0, "initial_accumulator_value": 0.0}
    ),
    # eps 1e-3: Adadelta's first updates are about sqrt(eps) x the rate
    "adadelta": OptimizerSetup("adadelta", 1.0, 0.01, {"rho": 0.9, "eps": 1e-3}),
}


def _tensors(layout: tuple[Module, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """``(canonical name, shape)`` of each tensor, in model order (a tied name left out)."""
    return [(name, shape) for m in layout for name, shape in m.tensors() if m.key(name) == name]


def _names(layout: tuple[Module, ...] = LAYOUT) -> list[str]:
    """Each tensor's canonical name, in model order."""
    return [name for name, _ in _tensors(layout)]


def _head_backbone(o: OptimizerSetup) -> Spec:
    # seed 003: head at the base rate, the pretrained backbone at a tenth
    return o.spec(
        rules=(Rule(Regex(r"^(embed|blocks)\."), lr_mult=0.1, name="backbone"),),
    )


def _layer_decay(o: OptimizerSetup) -> Spec:
    # seed 000: the rate times 0.7 per block, counted down from the head
    return o.spec(layer_decay=LayerDecay(0.7))


def _per_tensor(o: OptimizerSetup) -> Spec:
    # seed 001: every tensor its own rate
    return o.spec(
        rates={n: o.lr * 0.85**i for i, n in enumerate(_names())},
    )


def _frozen(o: OptimizerSetup) -> Spec:
    # seed 004: freeze the early layers, train the rest, the head faster
    return o.spec(
        rules=(
            Rule(Prefix("embed"), frozen=True, name="embed"),
            Rule(Prefix("blocks.0"), frozen=True, name="first-block"),
            Rule(Prefix("head"), lr_mult=5, name="head"),
        ),
    )


def _no_decay(o: OptimizerSetup) -> Spec:
    return o.spec(
        no_decay=("bias", "norm", "embedding"),
        rules=(Rule(Prefix("head"), lr_mult=3, name="head"),),
    )


def _mixed(o: OptimizerSetup) -> Spec:
    # everything at once: what the schedule cases train
    return o.spec(
        no_decay=("bias", "norm"),
        rules=(
            Rule(Prefix("head"), lr_mult=5, name="head"),
            Rule(Prefix("blocks.1.norm"), frozen=True, name="frozen-norm"),
        ),
        layer_decay=LayerDecay(0.7),
        rates={"blocks.2.fc.bias": o.lr * 0.3},
    )


def _tied(o: OptimizerSetup) -> Spec:
    # on TIED_LAYOUT: the rule reaches the embedding through its other name (lm_head.weight),
    # and blocks.1.norm, which the user froze, stays frozen though its group trains
    return o.spec(
        no_decay=("bias", "norm"),
        rules=(Rule(Prefix("lm_head"), lr_mult=3, name="lm_head"),),
        layer_decay=LayerDecay(0.7),
    )


def _subclassed(o: OptimizerSetup) -> Spec:
    # on SUBCLASSED_LAYOUT: rules by a base class (LayerNorm, the norm family) must reach
    # Rescale, a rule by its own class GatedLinear, and one by a model's class LayerScale
    return o.spec(
        no_decay=("bias", "norm"),
        rules=(
            Rule(ModuleType("LayerNorm"), lr_mult=0.5, name="norms"),
            Rule(ModuleType("GatedLinear"), lr_mult=3, name="gated"),
            Rule(ModuleType("LayerScale"), lr_mult=2, weight_decay=0.0, name="layer-scale"),
        ),
        layer_decay=LayerDecay(0.7),
    )


def _towers(o: OptimizerSetup) -> Spec:
    # on TOWERS_LAYOUT: each tower decayed over its own depths by its own factor (CLIP,
    # EVA-CLIP), so the same block of either tower trains at two rates; the head in no tower
    return o.spec(
        no_decay=("bias", "norm"),
        rules=(Rule(Prefix("head"), lr_mult=3, name="head"),),
        layer_decay=(LayerDecay(0.6, within=Prefix("vision")), LayerDecay(0.8, within=Prefix("text"))),
    )


#: Spec shapes, by the name used in case ids (``tied`` runs on :data:`TIED_LAYOUT`,
#: ``subclassed`` on :data:`SUBCLASSED_LAYOUT`, ``towers`` on :data:`TOWERS_LAYOUT`).
FEATURES: Mapping[str, Callable[[OptimizerSetup], Spec]] = {
    "head_backbone": _head_backbone,
    "layer_decay": _layer_decay,
    "per_tensor": _per_tensor,
    "frozen": _frozen,
    "no_decay": _no_decay,
    "mixed": _mixed,
    "tied": _tied,
    "subclassed": _subclassed,
    "towers": _towers,
}


def _staged(o: OptimizerSetup) -> Spec:
    # seed 004 in the spec: _frozen's layers join at their stage, at a fraction of their rate
    stages = (Stage(("first-block",), at=2, lr_mult=0.5), Stage(("embed",), at=4, lr_mult=0.2))
    return dataclasses.replace(_frozen(o), stages=stages)


def _train_bn(o: OptimizerSetup) -> Spec:
    # fastai's freeze_to with train_bn: the norms train at their decayed rates while the
    # layers around them are frozen
    return o.spec(no_decay=("bias",), layer_decay=LayerDecay(0.7), train_bn=True)


def _rule_schedules(o: OptimizerSetup) -> Spec:
    # seed 002 in the spec: each part decays by its own factor on top of the case's schedule
    return o.spec(
        rules=(
            Rule(Prefix("head"), lr_mult=5, name="head", schedule=Step(2, 0.5)),
            Rule(Prefix("blocks"), lr_mult=0.5, name="blocks", schedule=Exponential(0.8)),
        ),
    )


@dataclass(frozen=True)
class RuntimeFeature:
    """A spec shape trained under :class:`multilr.Controller`, with Controller calls during the run.

    Attributes:
        spec: Builds the spec from the optimizer set-up (as :data:`FEATURES` do); a spec
            with stages or per-rule schedules needs no events to be controlled.
        events: Controller calls and the steps they come before.
    """

    spec: Callable[[OptimizerSetup], Spec]
    events: tuple[Event, ...] = ()


#: Run-time features, by the name used in case ids. Each changes rates or frozen groups
#: after training started: tensors whose optimizer state exists, and (``ctl_thaw``,
#: ``ctl_freeze_to``) tensors first updated mid-run, whose state starts then.
RUNTIME_FEATURES: Mapping[str, RuntimeFeature] = {
    # rescale two groups mid-run: the new ratio holds from that step on
    "ctl_scale": RuntimeFeature(
        _head_backbone, (Event(2, "set_scale", ("backbone",), 4.0), Event(4, "set_scale", ("default",), 0.5))
    ),
    # freeze trained groups, later unfreeze them (one at a new multiplier): momentum and
    # moments must resume from where they stopped, and nothing may move in between
    "ctl_freeze": RuntimeFeature(
        _no_decay,
        (
            Event(1, "freeze", ("head*",)),
            Event(2, "freeze", ("no_decay",)),
            Event(4, "unfreeze", ("head*",), 0.5),
            Event(5, "unfreeze", ("no_decay",)),
        ),
    ),
    # unfreeze groups the spec froze (their optimizer state starts at step 2), freeze the head
    "ctl_thaw": RuntimeFeature(
        _frozen, (Event(2, "unfreeze", ("embed/frozen",), 0.2), Event(4, "freeze", ("head",)))
    ),
    # fastai's gradual unfreezing by layer-decay depth: the head, then the top 3 depths, then all
    "ctl_freeze_to": RuntimeFeature(
        _layer_decay,
        (Event(0, "freeze_to", value=-1), Event(2, "freeze_to", value=2), Event(4, "freeze_to", value=0)),
    ),
    # the same with the spec's train_bn: the norms never freeze
    "ctl_train_bn": RuntimeFeature(
        _train_bn,
        (Event(0, "freeze_to", value=-1), Event(2, "freeze_to", value=2), Event(4, "freeze_to", value=0)),
    ),
    # staged unfreezing declared in the spec, with a hand call between the stages
    "ctl_stages": RuntimeFeature(_staged, (Event(3, "set_scale", ("head",), 2.0),)),
    # per-rule schedules declared in the spec (no calls: the spec alone makes it controlled)
    "ctl_rule_schedule": RuntimeFeature(_rule_schedules),
}


@dataclass(frozen=True)
class Case:
    """One conformance case.

    Attributes:
        optimizer: Key of :data:`OPTIMIZERS`.
        schedule: Key of :data:`~multilr.testing.SCHEDULES`.
        feature: Key of :data:`FEATURES`.
        dtype: ``float32`` or ``float64``.
        steps: Optimizer steps.
        seed: Seed of the initial weights and the gradients.

    Example:
        >>> case = case_by_id("adamw-cosine_restarts-mixed")
        >>> case.setup.kind, case.steps, len(case.initial())
        ('adamw', 6, 15)
    """

    optimizer: str
    schedule: str
    feature: str
    dtype: str = "float32"
    steps: int = STEPS
    seed: int = 0

    @property
    def id(self) -> str:
        """``optimizer-schedule-feature`` (``-float64`` appended for double precision)."""
        base = f"{self.optimizer}-{self.schedule}-{self.feature}"
        return base if self.dtype == "float32" else f"{base}-{self.dtype}"

    @property
    def setup(self) -> OptimizerSetup:
        """The optimizer set-up."""
        return OPTIMIZERS[self.optimizer]

    @property
    def sched(self) -> Schedule:
        """The schedule."""
        return SCHEDULES[self.schedule]

    @property
    def spec(self) -> Spec:
        """The spec (its ``hyper`` carries the optimizer's hyperparameters)."""
        if self.feature in RUNTIME_FEATURES:
            return RUNTIME_FEATURES[self.feature].spec(self.setup)
        return FEATURES[self.feature](self.setup)

    @property
    def events(self) -> tuple[Event, ...]:
        """Controller calls during the run, by step (none for a spec-only feature)."""
        feature = RUNTIME_FEATURES.get(self.feature)
        return tuple(sorted(feature.events, key=lambda e: e.at)) if feature else ()

    @property
    def controlled(self) -> bool:
        """Whether the case trains under :class:`multilr.Controller`.

        True for a run-time feature, or a spec with stages or per-rule schedules; the
        case's schedule then drives the Controller instead of a framework scheduler.
        """
        return self.feature in RUNTIME_FEATURES or spec_is_controlled(self.spec)

    @property
    def layout(self) -> tuple[Module, ...]:
        """The model's leaf modules."""
        return _FEATURE_LAYOUTS.get(self.feature, LAYOUT)

    def names(self) -> list[str]:
        """Parameter names in model order, each tensor once (under its first name)."""
        return _names(self.layout)

    def model_frozen(self) -> frozenset[str]:
        """The tensors whose ``requires_grad`` the model itself has off (no spec says so)."""
        return frozenset(m.key(n) for m in self.layout if not m.trainable for n, _ in m.tensors())

    def infos(self) -> list[ParamInfo]:
        """What a backend's ``extract`` reports for the case model (for the reference plan).

        Every name, a tied one too, keyed by its tensor's canonical name.
        """
        return [
            ParamInfo(name, shape, self.dtype, m.path, m.class_names, m.trainable, m.key(name))
            for m in self.layout
            for name, shape in m.tensors()
        ]

    def initial(self) -> dict[str, NDArray[np.float64]]:
        """Seeded initial weights, rounded to the case's dtype, as float64."""
        return _initial(self.seed, self.dtype, self.layout)

    def gradient(self, step: int) -> dict[str, NDArray[np.float64]]:
        """The fixed gradient of every tensor at ``step``, rounded to the dtype, as float64.

        Each element keeps one sign for the whole run and a size in [0.5, 1.5] that varies
        per step, so momentum and Adam's moments stay away from zero and the rate read
        back as ``-delta / direction`` is well conditioned everywhere.
        """
        return _gradient(self.seed, self.dtype, step, self.layout)


@cache
def _initial(seed: int, dtype: str, layout: tuple[Module, ...] = LAYOUT) -> dict[str, NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return {
        name: (0.5 * rng.standard_normal(shape)).astype(dtype).astype(np.float64)
        for name, shape in _tensors(layout)
    }


@cache
def _gradient(
    seed: int, dtype: str, step: int, layout: tuple[Module, ...] = LAYOUT
) -> dict[str, NDArray[np.float64]]:
    out = {}
    for i, (name, p) in enumerate(_initial(seed, dtype, layout).items()):
        sign = np.random.default_rng((seed, 1, i)).integers(0, 2, p.shape) * 2 - 1
        size = np.random.default_rng((seed, 2, i, step)).random(p.shape) + 0.5
        out[name] = (sign * size).astype(dtype).astype(np.float64)
    return out


@cache
def all_cases() -> tuple[Case, ...]:
    """Every shared case, in a fixed order.

    * every optimizer x every feature, under the ``step`` schedule;
    * every optimizer x every other framework schedule, on the ``mixed`` feature;
    * every optimizer on ``cosine_restarts``/``mixed`` in float64;
    * multilr's schedules (``ml_*``) with SGD + weight decay, momentum, Adam and AdamW on ``mixed``;
    * the run-time features (``ctl_*``: Controller calls, spec stages, rule schedules) with
      momentum and AdamW under ``step``, plus Adam
      unfreezing spec-frozen groups and momentum under a multilr warm-up + cosine.

    Example:
        >>> len(all_cases()), sum(c.controlled for c in all_cases())
        (201, 16)
    """
    out = [Case(o, "step", f) for o in OPTIMIZERS for f in FEATURES]
    out += [Case(o, s, "mixed") for o in OPTIMIZERS for s in FRAMEWORK_SCHEDULES if s != "step"]
    out += [Case(o, "cosine_restarts", "mixed", dtype="float64") for o in OPTIMIZERS]
    ml = [s for s in SCHEDULES if s not in FRAMEWORK_SCHEDULES]
    out += [Case(o, s, "mixed") for s in ml for o in ("sgd_wd", "momentum", "adam", "adamw")]
    out += [Case(o, "step", f) for o in ("momentum", "adamw") for f in RUNTIME_FEATURES]
    out += [Case("adam", "step", "ctl_thaw"), Case("momentum", "ml_warmup_cosine", "ctl_freeze_to")]
    return tuple(out)


def case_by_id(case_id: str) -> Case:
    """The shared case with this id.

    Raises:
        KeyError: No such case (the message lists a few ids).

    Example:
        >>> case = case_by_id("sgd-step-frozen")
        >>> case.optimizer, case.schedule, case.feature, case.dtype
        ('sgd', 'step', 'frozen', 'float32')
    """
    try:
        return _by_id()[case_id]
    except KeyError:
        raise KeyError(f"no conformance case {case_id!r}; e.g. {[c.id for c in all_cases()[:3]]}") from None


@cache
def _by_id() -> dict[str, Case]:
    return {c.id: c for c in all_cases()}
