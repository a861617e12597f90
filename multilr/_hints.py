"""What a model says about its own parameters: timm's ``no_weight_decay()`` and ``group_matcher()``.

timm models (and models written in their style) carry two hints, and timm's optimizer
factory honours both; so does multilr, as plain data handed to the planner, with a third
that a tensor carries itself:

* ``model.no_weight_decay()``: a set of parameter names (timm matches them with
  ``fnmatch``, so a name may hold wildcards) that get no weight decay: ViT's
  ``cls_token`` and ``pos_embed``. Names the model does not have are ignored, as in
  timm (ViT lists ``dist_token`` whether it has one or not). Swin's original
  ``no_weight_decay_keywords()`` (substrings of names) is read too.
* ``model.group_matcher(coarse=False)``: a dict ``{group: regex, or [(regex, suffix), ...]}``
  whose match gives each parameter its layer id, exactly as timm's
  ``group_with_matcher`` numbers them (stem 0, blocks in order, ``(99999,)`` joins the
  layer before, unmatched names last). With layer decay these ids are the depths.
* ``tensor._no_weight_decay = True``: mamba_ssm's flag on ``A_log`` and ``D`` (and
  ``dt_bias`` in Mamba-2), which training scripts of state-space and other models check
  with ``getattr(p, "_no_weight_decay", False)``. ``A_log`` is a matrix, so no shape
  class catches it. Read from the tensors of a backend's table (:func:`flagged_names`),
  not from the model.

Precedence: the hints never override the spec. A rule's ``weight_decay`` beats the
model's no-decay names and flags (which act as one more ``no_decay`` class, after the
spec's own classes), and an explicit ``layer_decay.depth`` (a map, ``"top"``,
``"tensor"``) beats the matcher, which replaces only the default inference
(``"blocks"``). A spec with ``model_hints: false`` ignores them all.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import compress
from typing import Any

from multilr.errors import PlanError

__all__ = [
    "GROUP_MATCHER",
    "NO_WEIGHT_DECAY",
    "NO_WEIGHT_DECAY_FLAG",
    "NO_WEIGHT_DECAY_KEYWORDS",
    "ModelHints",
    "flagged_names",
    "read_hints",
    "with_flags",
]

#: How a decision taken from a hint is named in plans and tables.
NO_WEIGHT_DECAY = "model.no_weight_decay()"
NO_WEIGHT_DECAY_KEYWORDS = "model.no_weight_decay_keywords()"
GROUP_MATCHER = "model.group_matcher()"
NO_WEIGHT_DECAY_FLAG = "tensor._no_weight_decay"

_ATTRIBUTES = operator.attrgetter("__dict__")

#: timm's ``MATCH_PREV_GROUP``: a matcher suffix that puts a name in the layer before.
_PREVIOUS = 99999.0

Matcher = Mapping[str, Any] | Callable[[str], Any]


@dataclass(frozen=True)
class ModelHints:
    r"""The hints a model carries, as data (see the module docstring for their meaning).

    Attributes:
        no_weight_decay: Names (``fnmatch`` patterns) with no weight decay.
        no_weight_decay_keywords: Substrings; a name holding one gets no weight decay.
        group_matcher: timm's matcher dict (or a function ``name -> ordinal``), or ``None``.
        flagged: Exact names of tensors flagged ``_no_weight_decay`` (every name of a
            tied one), from :func:`flagged_names`.

    Example:
        >>> hints = ModelHints(no_weight_decay=("cls_token", "pos_embed"),
        ...                    group_matcher={"stem": r"^cls_token|^pos_embed|^patch_embed",
        ...                                   "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]})
        >>> names = ["cls_token", "patch_embed.w", "blocks.0.w", "blocks.1.w", "norm.w", "head.w"]
        >>> hints.depths(names)
        [0, 0, 1, 2, 2, 3]
        >>> hints.no_decay(names, None)
        ['model.no_weight_decay()', '', '', '', '', '']
    """

    no_weight_decay: tuple[str, ...] = ()
    no_weight_decay_keywords: tuple[str, ...] = ()
    group_matcher: Matcher | None = field(default=None, hash=False)
    flagged: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.no_weight_decay
            or self.no_weight_decay_keywords
            or self.group_matcher is not None
            or self.flagged
        )

    def no_decay(self, names: Sequence[str], classes: list[str] | None) -> list[str] | None:
        """``classes`` (a no-decay class per name, ``""`` for none) with the hinted names added.

        A name that already has a class keeps it. Returns ``classes`` itself when no
        name is hinted (``None`` stays ``None``).
        """
        # one C-level match per test over all names, then Python only for the hits
        tests: list[tuple[str, Callable[[str], Any]]] = []
        if self.no_weight_decay:
            patterns = "|".join(fnmatch.translate(p) for p in self.no_weight_decay)
            tests.append((NO_WEIGHT_DECAY, re.compile(patterns).match))
        if self.no_weight_decay_keywords:
            words = "|".join(map(re.escape, self.no_weight_decay_keywords))
            tests.append((NO_WEIGHT_DECAY_KEYWORDS, re.compile(words).search))
        if self.flagged:
            tests.append((NO_WEIGHT_DECAY_FLAG, frozenset(self.flagged).__contains__))
        hits: dict[int, str] = {}
        for label, test in reversed(tests):  # the first test that hits a name labels it
            hits.update(dict.fromkeys(compress(range(len(names)), map(test, names)), label))
        out = classes
        for t in sorted(hits):
            if out is not None and out[t]:
                continue  # a name that already has a class keeps it
            if out is None:
                out = [""] * len(names)
            elif out is classes:
                out = list(classes)
            out[t] = hits[t]
        return out

    def depths(self, names: Sequence[str]) -> list[int] | None:
        """Each name's layer id from :attr:`group_matcher` (timm's ``group_with_matcher``), or ``None``.

        Raises:
            PlanError: The matcher is malformed (the message names the entry).
        """
        if self.group_matcher is None:
            return None
        keys = _ordinals(self.group_matcher, names)
        layer: dict[tuple[Any, ...], int] = {}
        lid = -1
        try:
            ordered = sorted(set(keys))
        except TypeError:
            raise PlanError(f"{GROUP_MATCHER}: its ordinals cannot be sorted (mixed types)") from None
        for key in ordered:
            if lid < 0 or key[-1] != _PREVIOUS:
                lid += 1
            layer[key] = lid
        return [layer[k] for k in keys]


def _ordinals(matcher: Matcher, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """Each name's sort key under a matcher: timm's ``_get_grouping``, for all names at once."""
    if callable(matcher) and not isinstance(matcher, Mapping):
        fn = matcher

        def by_function(name: str) -> tuple[Any, ...]:
            value = fn(name)
            return tuple(value) if isinstance(value, Iterable) and not isinstance(value, str) else (value,)

        return list(map(by_function, names))
    if not isinstance(matcher, Mapping):
        raise PlanError(f"{GROUP_MATCHER} must return a dict of regexes or a function, got {matcher!r}")
    compiled: list[tuple[re.Pattern[str], tuple[float, ...], tuple[float, ...]]] = []
    for i, (group, spec) in enumerate(matcher.items()):
        if spec is None:
            continue
        entries = [(spec, None)] if isinstance(spec, str) else spec
        try:
            for regex, suffix in entries:
                compiled.append((re.compile(regex), (float(i),), tuple(map(float, suffix or ()))))
        except (TypeError, ValueError, re.error) as exc:
            raise PlanError(
                f"{GROUP_MATCHER}[{group!r}]: expected a regex or a list of (regex, suffix) pairs, "
                f"got {spec!r} ({exc})"
            ) from None
    # A name takes the first regex that matches it. Each regex is tried on the names still
    # unmatched in one ``map`` (in C), and a key is made once per distinct captured
    # ``groups()`` (a ViT's 2,000 names have a few hundred): on a 2,000-tensor ViT,
    # ~2.8 ms name by name became ~2 ms, about half of it the regex engine itself.
    keys: list[tuple[Any, ...]] = [(math.inf,)] * len(names)  # unmatched: neck and head, last
    pending: Sequence[int] = range(len(names))
    for pattern, prefix, suffix in compiled:
        if not pending:
            break
        matches = list(map(pattern.match, map(names.__getitem__, pending)))
        hit = list(compress(pending, matches))
        captured = list(map(re.Match.groups, filter(None, matches)))
        made: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for groups in dict.fromkeys(captured):
            try:
                made[groups] = prefix + tuple(map(float, groups)) + suffix
            except (TypeError, ValueError):
                name = names[hit[captured.index(groups)]]
                raise PlanError(
                    f"{GROUP_MATCHER}: {pattern.pattern!r} matched {name!r} with groups {groups}, "
                    "which are not all numbers"
                ) from None
        for t, key in zip(hit, map(made.__getitem__, captured), strict=True):
            keys[t] = key
        pending = list(compress(pending, map(operator.not_, matches)))
    return keys


def read_hints(model: Any) -> ModelHints | None:
    """The hints ``model`` carries, or ``None`` when it has none (framework-free: duck typing).

    Raises:
        PlanError: A hint method exists but is not callable or returns something unusable
            (set ``model_hints: false`` in the spec to ignore the model's hints).

    Example:
        >>> class Model:
        ...     def no_weight_decay(self):
        ...         return {"pos_embed"}
        >>> read_hints(Model()).no_weight_decay
        ('pos_embed',)
        >>> read_hints(object()) is None
        True
    """
    nwd = _names(model, "no_weight_decay", NO_WEIGHT_DECAY)
    keywords = _names(model, "no_weight_decay_keywords", NO_WEIGHT_DECAY_KEYWORDS)
    matcher = None
    method = _method(model, "group_matcher", GROUP_MATCHER)
    if method is not None:
        matcher = method(coarse=False)
        if not (isinstance(matcher, Mapping) or callable(matcher)):
            raise PlanError(
                f"{GROUP_MATCHER} returned {matcher!r}, not a dict of regexes or a function; "
                "set model_hints: false in the spec to ignore the model's hints"
            )
    hints = ModelHints(nwd, keywords, matcher)
    return hints if hints else None


def flagged_names(names: Sequence[str], tensors: Sequence[Any]) -> tuple[str, ...]:
    """The names (aligned with ``tensors``) of the tensors flagged ``_no_weight_decay = True``.

    Framework-free: the flag is a plain attribute in the tensor's ``__dict__`` (where
    ``p._no_weight_decay = True`` puts it on a torch parameter; OneFlow 0.9 refuses
    the attribute). Almost every tensor's ``__dict__`` is empty, so one ``map`` finds
    that nothing is flagged: 0.09 ms on 2,000 tensors (benchmarks/RESULTS.md, 1f).

    Example:
        >>> class Tensor:  # what torch and OneFlow parameters keep
        ...     pass
        >>> a_log, weight = Tensor(), Tensor()
        >>> a_log._no_weight_decay = True
        >>> flagged_names(["mixer.A_log", "mixer.in_proj.weight"], [a_log, weight])
        ('mixer.A_log',)
    """
    attributes: list[Mapping[str, Any] | None]
    try:
        attributes = list(map(_ATTRIBUTES, tensors))  # twice as fast as map(vars, ...)
    except AttributeError:  # some have no __dict__ (OneFlow 0.9 refuses the attribute, NumPy too)
        if not any(cls.__dictoffset__ for cls in set(map(type, tensors))):
            return ()  # none can carry the flag: not a getattr per tensor for nothing
        attributes = [getattr(p, "__dict__", None) for p in tensors]
    if not any(attributes):
        return ()
    return tuple(n for n, a in zip(names, attributes, strict=True) if a and a.get("_no_weight_decay"))


def with_flags(hints: ModelHints | None, flagged: tuple[str, ...]) -> ModelHints | None:
    """``hints`` with the flagged tensor names added (``None`` when there are no hints at all).

    Example:
        >>> with_flags(None, ("mixer.A_log",)).flagged
        ('mixer.A_log',)
        >>> with_flags(None, ()) is None
        True
    """
    if not flagged:
        return hints
    return replace(hints, flagged=flagged) if hints is not None else ModelHints(flagged=flagged)


def _method(model: Any, attr: str, label: str) -> Callable[..., Any] | None:
    try:
        method: Callable[..., Any] = getattr(model, attr)
    except AttributeError:  # torch's Module.__getattr__ raises it for unknown names
        return None
    if not callable(method):
        raise PlanError(
            f"the model has an attribute {attr!r} that is not a method ({type(method).__name__}); multilr "
            f"reads {label} as timm defines it; set model_hints: false in the spec to ignore it"
        )
    return method


def _names(model: Any, attr: str, label: str) -> tuple[str, ...]:
    method = _method(model, attr, label)
    if method is None:
        return ()
    value = method()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise PlanError(f"{label} returned {value!r}, not a collection of parameter names")
    names = tuple(value)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise PlanError(f"{label} returned non-string entries {bad[:3]!r}")
    return tuple(sorted(set(names)))  # a set has no order: sorted, so plans repeat exactly
