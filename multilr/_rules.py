"""The parts of a spec: rules, layer-wise decay, and fastai-style spreads.

All three are frozen values validated when made, so a bad value fails at the
line that wrote it, not at the first training step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Union

from multilr._check import MAX_INT, check_keys, did_you_mean, integer, number, shown
from multilr._select import (
    SELECTOR_KEYS,
    Glob,
    Prefix,
    Selector,
    is_literal,
    selector_from_dict,
    selector_to_dict,
)
from multilr.errors import SpecError
from multilr.schedules import Schedule, schedule_from_dict, schedule_to_dict

__all__ = ["DepthMode", "LayerDecay", "Place", "Rule", "Spread"]

#: How layer depth is found: ``"blocks"`` (numbered blocks, stem lowest, head highest;
#: a block holding a stack of its own is opened up), ``"outer"`` (the same, but only the
#: outermost stacks' elements are blocks: T5's ``block.i``, not its ``block.i.layer.j``),
#: ``"top"`` (top-level children in order), ``"tensor"`` (every tensor its own depth),
#: or an explicit mapping of glob pattern -> depth.
DepthMode = Union[Literal["blocks", "outer", "top", "tensor"], Mapping[str, int]]

#: The inferred depth modes, the strings :data:`DepthMode` allows.
DEPTH_MODES = ("blocks", "outer", "top", "tensor")

#: Where ``layer_decay.place`` puts the tensors of a pattern: ``"stem"`` (depth 0),
#: ``"head"`` (one above the last block) or a depth.
Place = Union[Literal["stem", "head"], int]

_RULE_KEYS = ("name", "lr_mult", "lr", "weight_decay", "frozen", "schedule", "optional", "priority")


@dataclass(frozen=True)
class Rule:
    """Settings for the parameters one selector picks.

    A rule may set the rate (``lr_mult``, a multiplier of the base rate, or ``lr``, an
    absolute rate), the ``weight_decay``, ``frozen``, or a ``schedule`` of its own that
    multiplies the spec's schedule for these parameters. Settings it leaves as ``None``
    come from other rules or the spec's defaults. When two rules set the same setting
    of one parameter, the higher ``priority`` wins; equal priorities with different
    values are a :class:`~multilr.errors.ConflictError`.

    Args:
        select: A selector, or a string taken as a glob on the full name.
        name: Label used for group names and tables; defaults to the selector's text.
        lr_mult: Multiplier of the base rate (combined with layer-wise decay).
        lr: Absolute rate; wins over layer-wise decay for these parameters.
        weight_decay: Weight decay; wins over the ``no_decay`` classes.
        frozen: ``True`` freezes the parameters (no update at all).
        schedule: A factor per step for these parameters only, on top of the spec's
            schedule (seed 002's per-group decay: ``Step(10, 0.9)``); applied by
            :class:`~multilr.Controller`. A mapping form (``{"kind": "step", ...}``) is accepted.
        optional: Allow the rule to match nothing.
        priority: Tie-breaker between rules that set the same setting.

    Example:
        >>> Rule("fc.*", lr_mult=10).name
        'glob:fc.*'
    """

    select: Selector
    name: str = ""
    lr_mult: float | None = None
    lr: float | None = None
    weight_decay: float | None = None
    frozen: bool | None = None
    schedule: Schedule | None = None
    optional: bool = False
    priority: int = 0

    if TYPE_CHECKING:
        # What a type checker sees of the generated __init__: ``select`` also takes a glob
        # string (made a Glob at once, so the attribute stays a Selector for readers).
        # Keep it in step with the fields above: a field missing here is one mypy refuses.
        def __init__(
            self,
            select: Selector | str,
            name: str = "",
            lr_mult: float | None = None,
            lr: float | None = None,
            weight_decay: float | None = None,
            frozen: bool | None = None,
            schedule: Schedule | None = None,
            optional: bool = False,
            priority: int = 0,
        ) -> None: ...

    def __post_init__(self) -> None:
        select: Any = self.select
        if isinstance(select, str):
            select = Glob(select)
            object.__setattr__(self, "select", select)
        if not hasattr(select, "matches") or not hasattr(select, "describe"):
            raise SpecError(f"rule selector must be a Selector or a glob string, got {shown(select)}")
        if not self.name:
            object.__setattr__(self, "name", select.describe())
        where = f"rule {self.name!r}"
        if self.lr_mult is not None and self.lr is not None:
            raise SpecError(f"{where}: set either lr_mult or lr, not both")
        if self.lr_mult is not None:
            object.__setattr__(self, "lr_mult", number(self.lr_mult, f"{where}: lr_mult"))
        if self.lr is not None:
            object.__setattr__(self, "lr", number(self.lr, f"{where}: lr"))
        if self.weight_decay is not None:
            wd = number(self.weight_decay, f"{where}: weight_decay")
            object.__setattr__(self, "weight_decay", wd)
        if self.frozen is not None and not isinstance(self.frozen, bool):
            raise SpecError(f"{where}: frozen must be true or false, got {shown(self.frozen)}")
        # frozen has three states (None: the rule leaves it alone); optional has two, so a
        # null there (YAML's ``optional:`` with its value forgotten) is refused, not read as false
        if not isinstance(self.optional, bool):
            raise SpecError(f"{where}: optional must be true or false, got {shown(self.optional)}")
        integer(self.priority, f"{where}: priority")
        if self.schedule is not None:
            sched: Any = self.schedule
            object.__setattr__(self, "schedule", schedule_from_dict(sched, f"{where}: schedule"))
        settings = (self.lr_mult, self.lr, self.weight_decay, self.frozen, self.schedule)
        if all(s is None for s in settings):
            raise SpecError(f"{where}: sets nothing; give lr_mult, lr, weight_decay, frozen or schedule")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "rule") -> Rule:
        """Build a rule from ``{"prefix": "fc", "lr_mult": 10, ...}``.

        Example:
            >>> Rule.from_dict({"prefix": "fc", "lr_mult": 10}).name
            'prefix:fc'
        """
        check_keys(data, (*SELECTOR_KEYS, *_RULE_KEYS), where)
        kwargs = {k: data[k] for k in _RULE_KEYS if k in data}
        name = kwargs.get("name", "")
        if not isinstance(name, str):
            raise SpecError(f"{where}: name must be a string, got {shown(name)}")
        try:
            return cls(selector_from_dict(data, where), **kwargs)
        except SpecError as exc:  # say which entry of the spec's list it is
            message = str(exc)
            raise SpecError(message if message.startswith(where) else f"{where}: {message}") from None

    def to_dict(self, *, describe_code: bool = False) -> dict[str, Any]:
        """Mapping form; ``Rule.from_dict(r.to_dict()) == r``.

        Args:
            describe_code: Describe a Python-only selector or schedule instead of raising
                (see :meth:`Spec.to_dict <multilr.Spec.to_dict>`).
        """
        out: dict[str, Any] = selector_to_dict(self.select, describe_code=describe_code)
        if self.name != self.select.describe():
            out["name"] = self.name
        for key in ("lr_mult", "lr", "weight_decay", "frozen"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.schedule is not None:
            out["schedule"] = schedule_to_dict(self.schedule, describe_code=describe_code)
        if self.optional:
            out["optional"] = True
        if self.priority:
            out["priority"] = self.priority
        return out


@dataclass(frozen=True)
class LayerDecay:
    """Layer-wise rate decay: a parameter at depth ``d`` gets ``decay ** (max_depth - d)``.

    Depth comes from the whole model's module tree, never from which parameters are
    trainable, so freezing a block does not shift the others.

    Args:
        decay: Factor per layer, in (0, 1].
        depth: ``"blocks"``, ``"outer"``, ``"top"``, ``"tensor"``, or ``{glob: depth}``
            (see :data:`DepthMode`).
        within: Only these parameters are decayed (others keep factor 1); default all.
        place: ``{glob: "stem" | "head" | depth}``: put the tensors a pattern matches
            (by any of their names) at that depth, on top of what ``depth`` gives.
            For modules the model registers out of place: OPT's ``final_layer_norm``
            (registered before the layers: the stem by inference), BART's
            ``layernorm_embedding`` (after them: the head). ``"head"`` is one above the
            last block, also when nothing follows it. A pattern that matches nothing is
            an error; two patterns that put one tensor at different depths too.
        name: The label of this decay in group names (``vision/depth3``); default none
            for one layer decay, the ``within`` prefix (or ``tower<k>``) for towers.

    Several layer decays in a spec (``Spec(layer_decay=[...])``) are *towers*: each with
    its own ``within`` (they must not share a parameter), its own depths (only its own
    stacks are blocks), its own highest depth and its own ``decay``, as EVA-CLIP decays
    CLIP's image and text encoders. A parameter in no tower keeps factor 1.

    Example:
        >>> LayerDecay(0.9, depth="top").decay
        0.9
        >>> dict(LayerDecay(0.75, place={"model.decoder.final_layer_norm.*": "head"}).place)
        {'model.decoder.final_layer_norm.*': 'head'}
    """

    decay: float
    depth: DepthMode = "blocks"
    within: Selector | None = None
    place: Mapping[str, Place] | None = None
    name: str = ""

    if TYPE_CHECKING:
        # What a type checker sees of the generated __init__: ``within`` also takes a glob
        # string (made a Glob at once, as Rule's ``select``). Keep it in step with the fields.
        def __init__(
            self,
            decay: float,
            depth: DepthMode = "blocks",
            within: Selector | str | None = None,
            place: Mapping[str, Place] | None = None,
            name: str = "",
        ) -> None: ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "decay", number(self.decay, "layer_decay.decay", positive=True, upper=1.0))
        if not isinstance(self.name, str) or "/" in self.name:
            # "/" joins the labels of a group name: a name with it would read as two labels
            raise SpecError(f"layer_decay.name must be a string without '/', got {shown(self.name)}")
        depth: Any = self.depth
        if isinstance(depth, str):
            if depth not in DEPTH_MODES:
                raise SpecError(
                    f"layer_decay.depth must be {', '.join(map(repr, DEPTH_MODES))} or a mapping, "
                    f"got {shown(depth)}{did_you_mean(depth, DEPTH_MODES)}"
                )
        elif isinstance(depth, Mapping):
            if not depth:
                raise SpecError("layer_decay.depth: an explicit depth map needs at least one entry")
            for at, d in _patterns(depth, "layer_decay.depth"):
                _check_depth(at, d, "an integer >= 0")
            object.__setattr__(self, "depth", MappingProxyType(dict(depth)))
        else:
            raise SpecError(f"layer_decay.depth must be a string or a mapping, got {shown(depth)}")
        if isinstance(self.within, str):
            object.__setattr__(self, "within", Glob(self.within))
        if self.place is not None:
            object.__setattr__(self, "place", _checked_place(self.place))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerDecay:
        """Build from ``{"decay": 0.75, "depth": "blocks", "within": {"prefix": "encoder"}}``."""
        check_keys(data, ("decay", "depth", "within", "place", "name"), "layer_decay")
        if "decay" not in data:
            raise SpecError("layer_decay: missing required key 'decay'")
        within: Any = data.get("within")
        if within is not None and not isinstance(within, str):
            check_keys(within, tuple(SELECTOR_KEYS), "layer_decay.within")
            within = selector_from_dict(within, "layer_decay.within")
        return cls(
            data["decay"],
            depth=data.get("depth", "blocks"),
            within=within,
            place=data.get("place"),
            name=data.get("name", ""),
        )

    def to_dict(self, *, describe_code: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"decay": self.decay}
        out["depth"] = self.depth if isinstance(self.depth, str) else dict(self.depth)
        if self.within is not None:
            out["within"] = selector_to_dict(self.within, describe_code=describe_code)
        if self.place is not None:
            out["place"] = dict(self.place)
        if self.name:
            out["name"] = self.name
        return out

    def label(self, k: int) -> str:
        """This decay's label in group names when it is tower ``k`` of several.

        Example:
            >>> from multilr import Prefix
            >>> LayerDecay(0.8, within=Prefix("vision_model")).label(0)
            'vision_model'
            >>> LayerDecay(0.8, within="text.*").label(1)
            'text'
            >>> LayerDecay(0.8, within="*.text.*").label(1)
            'tower1'
        """
        if self.name:
            return self.name
        if isinstance(self.within, Prefix):
            return self.within.path
        if isinstance(self.within, Glob) and self.within.pattern.endswith(".*"):
            head = self.within.pattern[:-2]
            if head and is_literal(head):  # "visual.*": the prefix visual
                return head
        return f"tower{k}"


def _checked_place(place: Any) -> Mapping[str, Place] | None:
    """``layer_decay.place`` validated, read-only; an empty mapping is no placement."""
    if not isinstance(place, Mapping):
        raise SpecError(
            f"layer_decay.place must be a mapping of glob -> 'stem', 'head' or a depth, got {shown(place)}"
        )
    expected = "'stem', 'head' or an integer depth >= 0"
    for at, where in _patterns(place, "layer_decay.place"):
        if not isinstance(where, str):
            _check_depth(at, where, expected)
        elif where not in ("stem", "head"):
            hint = did_you_mean(where, ("stem", "head"))
            raise SpecError(f"{at} must be {expected}, got {shown(where)}{hint}")
    return MappingProxyType(dict(place)) if place else None


def _patterns(mapping: Mapping[Any, Any], key: str) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` per entry of a ``{glob: ...}`` mapping, each pattern checked."""
    for pattern, value in mapping.items():
        if not isinstance(pattern, str) or not pattern:
            raise SpecError(f"{key}: pattern must be a non-empty string, got {shown(pattern)}")
        yield f"{key}[{shown(pattern)}]", value


def _check_depth(at: str, depth: Any, expected: str) -> None:
    """A depth is an int >= 0 (not a bool) that fits in 64 bits."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise SpecError(f"{at} must be {expected}, got {shown(depth)}")
    if depth > MAX_INT:
        raise SpecError(f"{at} must be <= 2**63 - 1, got {shown(depth)}")


@dataclass(frozen=True)
class Spread:
    """fastai-style geometric spread: the named rules get rates from ``lo`` to ``hi``.

    Rule ``i`` of ``n`` in ``over`` gets the absolute rate ``lo * (hi / lo) ** (i / (n - 1))``,
    as fastai's ``slice(lo, hi)``. The rules named must not set a rate themselves.

    Example:
        >>> Spread(1e-5, 1e-3, over=("body", "mid", "head")).rates()
        (1e-05, 0.0001, 0.001)
    """

    lo: float
    hi: float
    over: Sequence[str] = field(default=())

    def __post_init__(self) -> None:
        lo = number(self.lo, "spread.lo", positive=True)
        hi = number(self.hi, "spread.hi", positive=True)
        if lo > hi:
            raise SpecError(f"spread.lo ({lo}) must be <= spread.hi ({hi})")
        over = tuple(self.over)
        if len(over) < 2 or not all(isinstance(n, str) and n for n in over):
            raise SpecError(f"spread.over must name two or more rules, got {shown(self.over)}")
        if len(set(over)) != len(over):
            raise SpecError(f"spread.over names a rule twice: {shown(list(over))}")
        if not math.isfinite(hi / lo):  # the rates between them would overflow
            raise SpecError(f"spread.lo ({lo}) and spread.hi ({hi}) are too far apart: hi / lo overflows")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "over", over)

    def rates(self) -> tuple[float, ...]:
        """The absolute rate of each rule in ``over``, lowest first."""
        n = len(self.over)
        # round() strips the last-bit noise of pow so that 1e-4 prints as 1e-4.
        return tuple(float(f"{self.lo * (self.hi / self.lo) ** (i / (n - 1)):.12g}") for i in range(n))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spread:
        """Build from ``{"lo": 1e-5, "hi": 1e-3, "over": ["body", "head"]}``."""
        check_keys(data, ("lo", "hi", "over"), "spread")
        for key in ("lo", "hi", "over"):
            if key not in data:
                raise SpecError(f"spread: missing required key {key!r}")
        over = data["over"]
        if not isinstance(over, (list, tuple)):
            raise SpecError(f"spread.over must be a list of rule names, got {shown(over)}")
        return cls(data["lo"], data["hi"], over=tuple(over))

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "over": list(self.over)}
