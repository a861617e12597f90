"""Hypothesis strategies for the spec fuzzer: valid specs, their mutations, and garbage.

Mostly *near-valid* inputs: a valid spec mapping for one of the hand-made models of
``_infos.py`` (so most of them plan), then one to three mutations at known paths. A
mutation records its path, so a test can check that the error names the key it broke.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import strategies as st

from multilr import ParamInfo
from multilr._text import dump_yaml

from ._infos import bert_like, resnet_like, tied_lm

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Model:
    """A ParamInfo list and the selectors, names and depths that make sense for it."""

    name: str
    infos: Callable[[], list[ParamInfo]]
    prefixes: tuple[str, ...]
    globs: tuple[str, ...]
    regexes: tuple[str, ...]
    types: tuple[str, ...]

    def __repr__(self) -> str:
        return self.name


MODELS = (
    Model("resnet", resnet_like, ("fc", "conv1", "bn1", "layer1", "layer4", "layer4.1", "layer2.0.downsample"),
          ("layer*", "*.bias", "fc.*", "layer[12].*", "*bn?.weight"),
          (r"^layer[12]\.", r"\.bias$", r"bn\d", "downsample", r"^(conv1|bn1)\."),
          ("norm", "Conv2d", "Linear", "BatchNorm2d", "_ConvNd")),
    Model("bert", lambda: bert_like(2), ("bert.embeddings", "bert.encoder", "classifier", "bert.pooler",
                                         "bert.encoder.layer.0"),
          ("*.bias", "classifier.*", "bert.encoder.layer.*", "*LayerNorm*"),
          ("LayerNorm", r"layer\.[01]\.", r"query\.(weight|bias)$"),
          ("norm", "embedding", "Linear", "Embedding")),
    Model("tied", tied_lm, ("embed", "lm_head", "layers", "layers.0", "norm"),
          ("*norm*", "layers.*", "*.weight"), (r"^layers\.1\.", "attn"), ("norm", "embedding", "Linear")),
)

_OPTIONAL_KEYS = st.lists(st.sampled_from(sorted(
    ["weight_decay", "hyper", "layer_decay", "rates", "no_decay", "unmatched", "schedule", "model_hints", "train_bn"])),
    unique=True)
NUMBERS = st.sampled_from([1e-5, 1e-4, 3e-4, 1e-3, 0.01, 0.1, 0.5, 1.0, 2.0, 10.0])
UNIT = st.sampled_from([0.1, 0.5, 0.75, 0.9, 0.95, 1.0])
STEPS = st.integers(1, 50)


# -- valid specs ----------------------------------------------------------------------


@cache
def schedules(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """Valid schedule mappings of every kind (``warmup`` and ``chain`` nest up to ``depth``)."""
    leaf = st.one_of(
        st.fixed_dictionaries({"kind": st.just("constant")}, optional={"value": UNIT}),
        st.fixed_dictionaries({"kind": st.just("step"), "step_size": STEPS}, optional={"gamma": UNIT}),
        st.fixed_dictionaries({"kind": st.just("multistep"), "milestones": st.lists(STEPS, max_size=3)},
                              optional={"gamma": UNIT}),
        st.fixed_dictionaries({"kind": st.just("exponential"), "gamma": UNIT}),
        st.fixed_dictionaries({"kind": st.just("inverse")}, optional={"gamma": UNIT, "power": UNIT}),
        st.fixed_dictionaries({"kind": st.just("cosine"), "total": STEPS}, optional={"final": UNIT}),
        st.fixed_dictionaries({"kind": st.just("sgdr"), "period": STEPS},
                              optional={"period_mult": st.integers(1, 3), "cycle_mult": UNIT, "final": UNIT}),
        st.fixed_dictionaries({"kind": st.just("one_cycle"), "total": st.integers(2, 100)},
                              optional={"pct_start": UNIT, "div": st.just(25.0), "final_div": st.just(1e4),
                                        "anneal": st.sampled_from(["cos", "linear"]),
                                        "three_phase": st.booleans()}),
        st.fixed_dictionaries({"kind": st.just("cyclical"), "low": st.just(0.1), "high": st.just(1.0),
                               "step_up": STEPS},
                              optional={"step_down": STEPS, "gamma": UNIT,
                                        "mode": st.sampled_from(["triangular", "triangular2", "exp_range"])}),
        st.fixed_dictionaries({"kind": st.just("polynomial"), "total": STEPS},
                              optional={"power": UNIT, "final": UNIT}),
    )
    if depth == 0:
        return leaf
    inner = schedules(depth - 1)
    warmup = st.fixed_dictionaries({"kind": st.just("warmup"), "inner": inner, "steps": STEPS},
                                   optional={"start": st.just(0.1), "mode": st.sampled_from(["linear", "exp"])})

    @st.composite
    def chain(draw: st.DrawFn) -> dict[str, Any]:
        parts = draw(st.lists(inner, min_size=1, max_size=3))
        marks = sorted(draw(st.sets(st.integers(1, 100), min_size=len(parts) - 1, max_size=len(parts) - 1)))
        return {"kind": "chain", "parts": parts, "milestones": marks}

    return st.one_of(leaf, warmup, chain())


@cache
def selectors(model: Model) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda v: {"prefix": v}, st.sampled_from(model.prefixes)),
        st.builds(lambda v: {"glob": v}, st.sampled_from(model.globs)),
        st.builds(lambda v: {"regex": v}, st.sampled_from(model.regexes)),
        st.builds(lambda v: {"module_type": v}, st.sampled_from(model.types)),
        st.builds(lambda v: {"module_type": list(v)}, st.lists(st.sampled_from(model.types), min_size=1,
                                                                max_size=2, unique=True)),
        st.builds(lambda v: {"ndim": v}, st.sampled_from([1, 2, [0, 1], [1, 4]])),
    )


@cache
def rule(model: Model, i: int, *, rate: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """A rule ``r<i>`` for ``model`` (made once per argument: building strategies is slow)."""
    return _rule(model, i, rate=rate)


@st.composite
def _rule(draw: st.DrawFn, model: Model, i: int, *, rate: bool = True) -> dict[str, Any]:
    out = dict(draw(selectors(model)))
    out["name"] = f"r{i}"
    settings = ["weight_decay", "frozen", "schedule"] + (["lr_mult", "lr"] if rate else [])
    chosen = draw(st.lists(st.sampled_from(settings), min_size=1, max_size=3, unique=True))
    if "lr_mult" in chosen and "lr" in chosen:
        chosen.remove("lr")
    for key in chosen:
        if key == "lr_mult" or key in ("lr", "weight_decay"):
            out[key] = draw(NUMBERS)
        elif key == "frozen":
            out[key] = draw(st.booleans())
        else:
            out[key] = draw(schedules(1))
    out["optional"] = True  # most plans should succeed; a few rules are strict
    if draw(st.integers(0, 4)) == 0:
        del out["optional"]
    out["priority"] = i  # distinct priorities: no conflicts by construction
    return out


@cache
def valid_specs(model: Model) -> st.SearchStrategy[dict[str, Any]]:
    """A valid spec mapping for ``model``, using every part of the spec format."""
    return _valid_specs(model, _optional_parts(model))


@cache
def _optional_parts(model: Model) -> dict[str, st.SearchStrategy[Any]]:
    names = [p.name for p in model.infos()]
    within = st.one_of(st.sampled_from(model.globs), st.builds(lambda v: {"prefix": v}, st.sampled_from(model.prefixes)))
    decay_parts = {"depth": st.one_of(st.sampled_from(["blocks", "outer", "top", "tensor"]),
                                      st.builds(lambda d: {names[0]: 0, "*": d}, st.integers(0, 5))),
                   "place": st.dictionaries(st.sampled_from(model.globs),
                                            st.one_of(st.sampled_from(["stem", "head"]), st.integers(0, 5)),
                                            max_size=2)}
    return {
        "weight_decay": NUMBERS,
        "hyper": st.fixed_dictionaries({}, optional={"momentum": UNIT, "betas": st.just([0.9, 0.999]),
                                                     "eps": st.just(1e-8), "nesterov": st.booleans(),
                                                     "amsgrad": st.booleans()}),
        "layer_decay": st.one_of(
            st.fixed_dictionaries({"decay": UNIT}, optional={**decay_parts, "within": within}),
            # towers: each with its own within, and its own name (two may overlap: refused when planned)
            st.builds(lambda towers: [{**t, "name": f"t{k}"} for k, t in enumerate(towers)],
                      st.lists(st.fixed_dictionaries({"decay": UNIT, "within": within}, optional=decay_parts),
                               min_size=1, max_size=2))),
        "rates": st.dictionaries(st.sampled_from(names), NUMBERS, max_size=3),
        "no_decay": st.lists(st.sampled_from(["bias", "norm", "1d", "embedding"]), unique=True, max_size=3),
        "unmatched": st.sampled_from(["default", "default", "error"]),
        "schedule": schedules(),
        "model_hints": st.booleans(),
        "train_bn": st.booleans(),
    }


@cache
def _stages(rule_names: tuple[str, ...]) -> st.SearchStrategy[list[dict[str, Any]]]:
    by_rule = [st.fixed_dictionaries({"at": st.integers(0, 100),
                                      "unfreeze": st.lists(st.sampled_from(rule_names), min_size=1, unique=True)},
                                     optional={"lr_mult": UNIT, "name": st.just("thaw")})] if rule_names else []
    return st.lists(st.one_of(
        st.fixed_dictionaries({"at": st.integers(0, 100), "from_depth": st.integers(-3, 3)},
                              optional={"lr_mult": UNIT}),
        st.fixed_dictionaries({"epoch": st.integers(0, 5), "from_depth": st.integers(-3, 3)}),
        *by_rule,
    ), max_size=2)


@st.composite
def _valid_specs(draw: st.DrawFn, model: Model, optional: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"lr": draw(NUMBERS)}
    n_rules = draw(st.integers(0, 4))
    spread = n_rules >= 2 and draw(st.booleans())
    rules = [draw(rule(model, i, rate=not (spread and i < 2))) for i in range(n_rules)]
    if rules:
        spec["rules"] = rules
    if spread:
        spec["spread"] = {"lo": 1e-5, "hi": draw(NUMBERS), "over": ["r0", "r1"]}
    for key in draw(_OPTIONAL_KEYS):
        spec[key] = draw(optional[key])
    stages = draw(_stages(tuple(r["name"] for r in rules)))
    if stages:
        named = [s for s in stages if "name" in s]
        for s in named[1:]:
            del s["name"]
        spec["stages"] = stages
    return spec


# -- garbage and mutations ------------------------------------------------------------


def _nested(depth: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(depth):
        out = [out]
    return out


def _laughs(levels: int) -> list[Any]:
    """A YAML 'billion laughs' structure: 10 references to the level below, ``levels`` deep."""
    node: list[Any] = ["lol"]
    for _ in range(levels):
        node = [node] * 10
    return node


_DEEP, _LAUGHS = _nested(3000), _laughs(9)
_SPECIAL = [
    math.nan, math.inf, -math.inf, -1, -1e-300, 0, 0.0, -0.0, 1e308, 5e-324, 10**30, 2**63, 2**64, 10**400,
    10**5000, True, False, None, "", " ", "abc", "1e-3", "nan", "inf", "-1", "0x10", "\x00", "é", "😀",
    "\u202e", "a" * 300, "(", "[", "*", "a{99999999999}", "(?P<", "((((" * 300, "\\", [], {}, [1, 2], [[[]]],
    {"x": 1}, {"kind": "step"}, {"glob": "*"}, ["bias"], _DEEP, _LAUGHS, {"": None}, {1: 2},
    {None: "x"}, 1.5, -7, 3,
]

JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)

#: JSON-like values of any shape.
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

#: What a mutation puts in: the special values half of the time (they find the bugs).
GARBAGE = st.one_of(*[st.sampled_from(_SPECIAL)] * 4, JSON_VALUES, st.text(), st.integers(-(2**70), 2**70),
                    st.floats())

KEYS = st.one_of(
    st.sampled_from(["lr_mul", "rule", "decay", "Lr", "lr ", "kind", "glob", "name", "at", "momentum",
                     "weight-decay", "", "0", "__class__", "!!python/name:os.system"]),
    st.text(max_size=12),
)


_OPAQUE = {id(v) for v in _SPECIAL if isinstance(v, (list, dict))}
_HUGE = {id(_DEEP), id(_LAUGHS)}


def holds_huge(value: Any, depth: int = 0) -> bool:
    """Whether a mutation put the deep list or the laughs in ``value`` (JSON would expand them)."""
    if id(value) in _HUGE:
        return True
    if depth > 12 or id(value) in _OPAQUE:
        return False
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(holds_huge(v, depth + 1) for v in items)


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every path to a value inside nested dicts and lists (the root included).

    Garbage put in by an earlier mutation (a list 3,000 deep, a billion-laughs
    structure) is one opaque value, not 10**9 paths.
    """
    out = [prefix]
    if id(value) in _OPAQUE or len(prefix) > 12:
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


def _get(value: Any, path: Path) -> Any:
    for p in path:
        value = value[p]
    return value


@dataclass(frozen=True)
class Mutation:
    """One change made to a valid mapping: what, where, and the key an error must name."""

    kind: str  # "replace", "delete", "insert", "rename"
    path: Path
    key: str | None  # the innermost mapping key touched; None when only a list was touched

    def __str__(self) -> str:
        return f"{self.kind} at {'.'.join(map(str, self.path)) or '<root>'}"


def _innermost_key(path: Path) -> str | None:
    keys = [p for p in path if isinstance(p, str)]
    return keys[-1] if keys else None


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> tuple[Any, list[Mutation]]:
    """``base`` (a fresh copy) with one to three mutations, and what they were."""
    data: Any = json.loads(json.dumps(base))
    done: list[Mutation] = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(data)))
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "insert", "rename"]))
        if not path and (kind in ("delete", "rename") or not isinstance(data, dict)):
            data = draw(GARBAGE)
            done.append(Mutation("replace", (), None))
            continue
        parent = _get(data, path[:-1]) if path else None
        target = _get(data, path)
        if kind == "insert" and isinstance(target, dict):
            key = draw(KEYS)
            target[key] = draw(GARBAGE)
            done.append(Mutation("insert", (*path, key), key))
        elif kind == "insert" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(GARBAGE))
            done.append(Mutation("insert", path, _innermost_key(path)))
        elif kind == "delete" and parent is not None:
            del parent[path[-1]]
            done.append(Mutation("delete", path, _innermost_key(path)))
        elif kind == "rename" and isinstance(parent, dict):
            key = draw(KEYS)
            # renamed onto a key already there, the old key is gone as much as the new one is
            # changed: an error may name either (found by a long run: 'from_depth' -> 'at')
            overwrote = key in parent and key != path[-1]
            parent[key] = parent.pop(path[-1])
            done.append(Mutation("rename", (*path[:-1], key), None if overwrote else key))
        elif parent is not None:
            parent[path[-1]] = draw(GARBAGE)
            done.append(Mutation("replace", path, _innermost_key(path)))
        else:
            data = draw(GARBAGE)
            done.append(Mutation("replace", (), None))
    return data, done


# -- text -------------------------------------------------------------------------------

JSON_SNIPPETS = ["{", "}", "[", "]", '"', ",", ":", "NaN", "Infinity", "-Infinity", "1e999", "null", "true",
                 '"\\ud800"', "9" * 4400, "[" * 2000, "\\", "\x00", "é", "  ", "-", "0.", "01"]
YAML_SNIPPETS = [
    "!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!!python/object/new:dict []",
    "&a ", "*a", "<<: *a\n", "!!binary aGVsbG8=", "!!set {a: null}", "? ", "- ", "\t", "%YAML 1.1\n---\n",
    "!!float ", "!!int ", ".nan", ".inf", "~", "|", ">", "{", "[", ":", "'", '"', "\n", "  ", "2024-13-45",
    "!!timestamp x", "!!omap [a: 1]", "---\n", "...\n", "#", "!local ", "1:20:30", "0b101", "9" * 4400,
]


@st.composite
def mutated_text(draw: st.DrawFn, text: str, snippets: list[str]) -> str:
    """``text`` with one or two character-level edits: deletions, insertions, swaps."""
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["delete", "insert", "insert", "replace"]))
        if op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 6)):]
        else:
            piece = draw(st.one_of(st.sampled_from(snippets), st.text(max_size=4)))
            text = text[:at] + piece + text[at + (1 if op == "replace" else 0):]
    return text


def yaml_text(data: Any) -> str:
    """A mapping as YAML (block style, as people write specs), the way ``Spec.to_yaml`` writes it.

    ``yaml.safe_dump`` wrote a string ``"1e-3"`` bare, which multilr reads back as a
    float (YAML 1.2): the long run's find; ``dump_yaml`` quotes it.
    """
    return dump_yaml(data)
