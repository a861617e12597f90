"""Selectors: which parameters a rule applies to.

A selector is a frozen value with ``matches(info)``. Patterns are compiled once
when the selector is made, so planning a 2,000-tensor model stays in
milliseconds. Every selector except :class:`Predicate` round-trips through a
plain mapping (``{"glob": "layer4.*"}``), so it can live in YAML or JSON.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import ge
from typing import Any, Protocol, runtime_checkable

from multilr._check import shown
from multilr._params import ParamInfo, ParamTable
from multilr.errors import MultiLRError, PlanError, SpecError

__all__ = [
    "MODULE_TYPE_ALIASES",
    "Glob",
    "ModuleType",
    "Ndim",
    "Predicate",
    "Prefix",
    "Regex",
    "Selector",
    "is_literal",
    "matching",
    "per_class",
    "selector_from_dict",
    "selector_to_dict",
]

def is_literal(pattern: str) -> bool:
    """Whether a glob has none of ``*``, ``?`` and ``[``: it matches the one name it spells.

    Example:
        >>> is_literal("fc.weight"), is_literal("layer*"), is_literal("a[0].w")
        (True, False, False)
    """
    return not any(c in pattern for c in "*?[")


#: Families of module types, usable as ``ModuleType("norm")``. Matched against the
#: owning module's class and all its bases, so subclasses (``LlamaRMSNorm``,
#: ``FrozenBatchNorm2d``) are found without being listed. ``norm`` also takes the gated
#: RMS norms of state-space models (``MambaRMSNormGated``) and other frameworks' spellings
#: (PaddlePaddle's ``BatchNorm2D``, Keras' ``LayerNormalization``); ``embedding`` also takes the
#: ``*Embeddings`` modules of transformers, whose own tensors are the class token and the
#: position embeddings (ViT's ``cls_token``, ``position_embeddings``), not a projection.
MODULE_TYPE_ALIASES: Mapping[str, re.Pattern[str]] = {
    "norm": re.compile(r"Norm(alization)?(\d+[dD]|Gated)?$"),
    "embedding": re.compile(r"Embedding(s|Bag)?$"),
}


@runtime_checkable
class Selector(Protocol):
    """Anything with ``matches`` and ``describe`` can select parameters."""

    def matches(self, info: ParamInfo) -> bool:
        """Whether the parameter is selected."""
        ...

    def describe(self) -> str:
        """Short text used in tables and error messages."""
        ...


def _compile(pattern: str, kind: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SpecError(f"invalid {kind} pattern {shown(pattern)}: {exc}") from None
    except (OverflowError, RecursionError) as exc:  # a{99999999999}, groups nested 1,000 deep
        raise SpecError(f"invalid {kind} pattern {shown(pattern)}: too large ({exc})") from None


@dataclass(frozen=True)
class Glob:
    """Shell-style pattern on the full dotted name; ``*`` also crosses dots.

    Example:
        >>> from multilr._params import ParamInfo
        >>> Glob("layer4.*").matches(ParamInfo("layer4.0.conv1.weight", (), "f", "", (), True, 0))
        True
    """

    pattern: str
    _re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_pattern(self.pattern, "glob")
        object.__setattr__(self, "_re", re.compile(fnmatch.translate(self.pattern)))

    def matches(self, info: ParamInfo) -> bool:
        return self._re.match(info.name) is not None

    def describe(self) -> str:
        return f"glob:{self.pattern}"

    def to_dict(self) -> dict[str, Any]:
        return {"glob": self.pattern}


@dataclass(frozen=True)
class Regex:
    r"""Regular expression searched in the full dotted name (anchor it with ``^``/``$``).

    Example:
        >>> from multilr._params import ParamInfo
        >>> Regex(r"\.bias$").matches(ParamInfo("fc.bias", (2,), "f", "fc", (), True, 0))
        True
    """

    pattern: str
    _re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_pattern(self.pattern, "regex")
        object.__setattr__(self, "_re", _compile(self.pattern, "regex"))

    def matches(self, info: ParamInfo) -> bool:
        return self._re.search(info.name) is not None

    def describe(self) -> str:
        return f"regex:{self.pattern}"

    def to_dict(self) -> dict[str, Any]:
        return {"regex": self.pattern}


@dataclass(frozen=True)
class Prefix:
    """Module path prefix on dotted boundaries.

    ``"layer1"`` selects ``layer1.0.conv1.weight`` but not ``layer10.weight``.

    Example:
        >>> from multilr._params import ParamInfo
        >>> Prefix("layer1").matches(ParamInfo("layer10.weight", (), "f", "layer10", (), True, 0))
        False
    """

    path: str

    def __post_init__(self) -> None:
        _check_pattern(self.path, "prefix")

    def matches(self, info: ParamInfo) -> bool:
        name = info.name
        return name == self.path or name.startswith(self.path + ".")

    def describe(self) -> str:
        return f"prefix:{self.path}"

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.path}


@dataclass(frozen=True)
class ModuleType:
    """The owning module's class (or any of its bases) by name.

    A family from :data:`MODULE_TYPE_ALIASES` such as ``"norm"`` also works, and in
    Python a class itself (``ModuleType(nn.LayerNorm)``) stands for its name.

    Example:
        >>> from multilr._params import ParamInfo
        >>> ModuleType("norm").matches(ParamInfo("bn1.weight", (8,), "f", "bn1", ("BatchNorm2d",), True, 0))
        True
    """

    names: tuple[str, ...]

    def __init__(self, *names: str | type) -> None:
        if len(names) == 1 and isinstance(names[0], (list, tuple)):
            names = tuple(names[0])
        # a class stands for its name: the table holds class names, the same in any framework
        names = tuple(n.__name__ if isinstance(n, type) else n for n in names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise SpecError(f"module_type needs one or more class names, got {shown(names)}")
        object.__setattr__(self, "names", tuple(names))

    def matches(self, info: ParamInfo) -> bool:
        return self._matches_types(info.module_types)

    def _matches_types(self, module_types: tuple[str, ...]) -> bool:
        """Whether a module with these class names (most derived first) is selected."""
        for want in self.names:
            alias = MODULE_TYPE_ALIASES.get(want)
            for cls in module_types:
                if (alias.search(cls) if alias is not None else cls == want):
                    return True
        return False

    def describe(self) -> str:
        return "type:" + "|".join(self.names)

    def to_dict(self) -> dict[str, Any]:
        return {"module_type": list(self.names) if len(self.names) > 1 else self.names[0]}


@dataclass(frozen=True)
class Ndim:
    """The tensor's number of dimensions: ``Ndim(1)`` (biases, norm scales), ``Ndim(0, 1)``.

    What timm's and MMEngine's weight-decay rules look at (``param.ndim <= 1``, MMEngine's
    ``flat_decay_mult`` for ``ndim == 1``), as a selector: a rule can give such tensors any
    rate or weight decay, in a spec file too (``{ndim: 1}``, ``{ndim: [0, 1]}``). For
    weight decay 0 alone, ``no_decay: [1d]`` says it shorter.

    Example:
        >>> from multilr._params import ParamInfo
        >>> Ndim(0, 1).matches(ParamInfo("fc.bias", (8,), "f", "fc", ("Linear",), True, 0))
        True
    """

    dims: tuple[int, ...]

    def __init__(self, *dims: int) -> None:
        if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
            dims = tuple(dims[0])
        if not dims or not all(type(d) is int and 0 <= d <= MAX_NDIM for d in dims):
            raise SpecError(f"ndim needs one or more whole numbers from 0 to {MAX_NDIM}, got {shown(dims)}")
        object.__setattr__(self, "dims", tuple(sorted(set(dims))))

    def matches(self, info: ParamInfo) -> bool:
        return len(info.shape) in self.dims

    def describe(self) -> str:
        return "ndim:" + "|".join(map(str, self.dims))

    def to_dict(self) -> dict[str, Any]:
        return {"ndim": list(self.dims) if len(self.dims) > 1 else self.dims[0]}


#: The most dimensions a tensor can have in torch and OneFlow (and an ``Ndim`` can name).
MAX_NDIM = 64


@dataclass(frozen=True)
class Predicate:
    """Any Python function of ``(name, info)``. Python-only: it has no mapping form.

    Example:
        >>> from multilr._params import ParamInfo
        >>> big = Predicate(lambda name, info: info.numel > 100, label="big")
        >>> big.matches(ParamInfo("w", (20, 20), "f", "", (), True, 0))
        True
    """

    fn: Callable[[str, ParamInfo], bool]
    label: str = "predicate"

    def matches(self, info: ParamInfo) -> bool:
        return bool(self.fn(info.name, info))

    def describe(self) -> str:
        return f"predicate:{self.label}"

    def to_dict(self) -> dict[str, Any]:
        raise SpecError(
            f"selector {self.describe()!r} is a Python function and has no mapping form; "
            "use glob, regex, prefix, module_type or ndim in a spec file"
        )


def matching(selector: Selector, table: ParamTable) -> list[int]:
    """Indices of the entries of ``table`` that ``selector`` selects, in order.

    The built-in selectors run over the table's columns (a regex or ``startswith`` per
    name, ``ModuleType`` once per distinct class tuple), with no :class:`ParamInfo` made;
    any other selector, subclasses included, gets ``matches(info)`` per entry.

    Example:
        >>> infos = [ParamInfo(n, (1,), "f", "", (), True, n) for n in ("a.w", "ab.w", "a")]
        >>> table = ParamTable.from_infos(infos)
        >>> matching(Prefix("a"), table), matching(Glob("a*"), table)
        ([0, 2], [0, 1, 2])
    """
    names = table.names
    everything = range(len(names))
    if type(selector) is Glob:
        return _glob_matching(selector, names)
    if type(selector) is Regex:
        return list(compress(everything, map(selector._re.search, names)))
    if type(selector) is Prefix:
        path = selector.path
        hits = list(compress(everything, map(str.startswith, names, repeat(path + "."))))
        if path in names:  # the path names a parameter itself
            hits = sorted([*hits, *(i for i, name in enumerate(names) if name == path)])
        return hits
    if type(selector) is ModuleType:
        return list(compress(everything, per_class(table.module_types, selector._matches_types)))
    if type(selector) is Ndim:
        return list(compress(everything, map(frozenset(selector.dims).__contains__, map(len, table.shapes))))
    hits = []
    for i, info in enumerate(table.infos()):
        try:
            if selector.matches(info):
                hits.append(i)
        except MultiLRError:
            raise
        except Exception as exc:  # the user's code: say which selector and which parameter
            raise PlanError(
                f"selector {selector.describe()!r} raised {type(exc).__name__} on parameter "
                f"{info.name!r} (shape {list(info.shape)}): {exc}"
            ) from exc
    return hits


def _glob_matching(glob: Glob, names: list[str]) -> list[int]:
    """:func:`matching` for a glob; ``head*tail`` (one ``*``, the usual rule) without regex.

    ``*`` matches any text, so a one-star glob matches exactly the names that start with
    its head, end with its tail and are long enough for both: three ``str`` tests in C
    instead of a backtracking regex per name.
    """
    parts = glob.pattern.split("*")
    if len(parts) != 2 or "?" in glob.pattern or "[" in glob.pattern:
        return list(compress(range(len(names)), map(glob._re.match, names)))
    head, tail = parts
    hits = list(compress(range(len(names)), map(str.startswith, names, repeat(head))))
    survivors = list(map(names.__getitem__, hits))
    hits = list(compress(hits, map(str.endswith, survivors, repeat(tail))))
    if head and tail:  # "ab*ba" must not match "aba"
        lengths = map(len, map(names.__getitem__, hits))
        hits = list(compress(hits, map(ge, lengths, repeat(len(head) + len(tail)))))
    return hits


def per_class(module_types: list[tuple[str, ...]], test: Callable[[tuple[str, ...]], bool]) -> list[bool]:
    """``test`` of each entry's class names, run once per distinct tuple.

    A model has a few dozen module classes for thousands of parameters.

    Example:
        >>> norm, linear = ("LayerNorm",), ("Linear",)
        >>> per_class([norm, linear, norm], lambda types: "LayerNorm" in types)
        [True, False, True]
    """
    verdict = {types: test(types) for types in dict.fromkeys(module_types)}
    return list(map(verdict.__getitem__, module_types))


def _check_pattern(value: object, kind: str) -> None:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{kind} must be a non-empty string, got {shown(value)}")


def selector_to_dict(selector: Selector, *, describe_code: bool = False) -> dict[str, Any]:
    """The mapping form of a selector (``{"glob": "layer4.*"}``).

    Args:
        selector: The selector.
        describe_code: Write a selector that is Python code (a :class:`Predicate`, a class
            of your own without ``to_dict``) as ``{"predicate": "<label>"}`` instead of
            raising: a report (what ``Plan.to_json`` shows), not something a spec file reads.

    Raises:
        SpecError: The selector is Python code and ``describe_code`` is false.

    Example:
        >>> selector_to_dict(Prefix("fc"))
        {'prefix': 'fc'}
        >>> selector_to_dict(Predicate(lambda name, info: True, label="all"), describe_code=True)
        {'predicate': 'all'}
    """
    if describe_code and isinstance(selector, Predicate):
        return {"predicate": selector.label}
    to_dict = getattr(selector, "to_dict", None)
    if to_dict is not None:
        out: dict[str, Any] = to_dict()
        return out
    if describe_code:
        return {"predicate": selector.describe()}
    raise SpecError(
        f"selector {selector.describe()!r} ({type(selector).__name__}) has no mapping form; "
        "use glob, regex, prefix, module_type or ndim in a spec file"
    )


#: Mapping key -> selector constructor, in the order error messages list them.
SELECTOR_KEYS: Mapping[str, Callable[[Any], Selector]] = {
    "glob": Glob,
    "regex": Regex,
    "prefix": Prefix,
    "module_type": lambda v: ModuleType(*(v if isinstance(v, (list, tuple)) else [v])),
    "ndim": lambda v: Ndim(*(v if isinstance(v, (list, tuple)) else [v])),
}


def selector_from_dict(data: Mapping[str, Any], where: str) -> Selector:
    """Build the one selector named in a rule mapping.

    Args:
        data: The rule mapping; exactly one of :data:`SELECTOR_KEYS` must be present.
        where: Location for error messages (``"rules[2]"``).

    Raises:
        SpecError: No selector key, or more than one.

    Example:
        >>> selector_from_dict({"prefix": "fc", "lr_mult": 10}, "rules[0]")
        Prefix(path='fc')
    """
    present = [k for k in SELECTOR_KEYS if k in data]
    if len(present) != 1:
        found = "none" if not present else ", ".join(present)
        raise SpecError(
            f"{where}: a rule needs exactly one selector key out of "
            f"{', '.join(SELECTOR_KEYS)}; found {found}"
        )
    key = present[0]
    return SELECTOR_KEYS[key](data[key])
