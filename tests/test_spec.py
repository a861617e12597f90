import json
import math

import pytest

from multilr import (
    Glob,
    LayerDecay,
    ModuleType,
    Predicate,
    Prefix,
    Regex,
    Rule,
    Spec,
    SpecError,
    Spread,
)
from multilr.schedules import Function, Warmup

FULL = Spec(
    lr=1e-3,
    weight_decay=0.05,
    hyper={"betas": (0.9, 0.98), "eps": 1e-8, "amsgrad": False},
    rules=(
        Rule(Prefix("fc"), lr_mult=10.0, name="head"),
        Rule(Regex(r"^layer[12]\."), lr=1e-5, name="early", priority=1),
        Rule(ModuleType("norm"), weight_decay=0.0, name="norms"),
        Rule(Glob("conv1.*"), frozen=True, name="stem", optional=True),
    ),
    layer_decay=LayerDecay(0.75, depth="blocks", within=Prefix("layer")),
    rates={"fc.bias": 0.02},
    no_decay=("bias", "1d"),
    unmatched="error",
)

YAML = """
lr: 1e-3            # YAML 1.1 (PyYAML) reads "1e-3" as a string; multilr reads YAML 1.2's float
weight_decay: 0.05
hyper: {betas: [0.9, 0.98], eps: 1e-8, amsgrad: false}
rules:
  - {name: head, prefix: fc, lr_mult: 10}
  - {name: early, regex: '^layer[12]\\.', lr: 1e-5, priority: 1}
  - {name: norms, module_type: norm, weight_decay: 0}
  - {name: stem, glob: 'conv1.*', frozen: true, optional: true}
layer_decay: {decay: 0.75, depth: blocks, within: {prefix: layer}}
rates: {fc.bias: 0.02}
no_decay: [bias, 1d]
unmatched: error
"""


def test_round_trip_mapping_and_json():
    assert Spec.from_dict(FULL.to_dict()) == FULL
    assert Spec.from_json(FULL.to_json()) == FULL
    assert json.loads(FULL.to_json()) == FULL.to_dict()


def test_yaml_gives_the_same_spec():
    assert Spec.from_yaml(YAML) == FULL


def test_to_yaml_reads_back_equal_strings_that_look_like_numbers_included():
    assert Spec.from_yaml(FULL.to_yaml()) == FULL
    # a module named "1e5" (a ModuleDict key): yaml.safe_dump writes it bare, and the
    # YAML 1.2 reader gives back the float 100000.0 (the long fuzz run's find)
    spec = Spec(lr=0.1, rules=[Rule(Prefix("1e5"), lr_mult=2), Rule(ModuleType("1E-3"), frozen=True)])
    assert "'1e5'" in spec.to_yaml() and "'1E-3'" in spec.to_yaml()
    assert Spec.from_yaml(spec.to_yaml()) == spec


def test_files(tmp_path):
    (tmp_path / "s.yaml").write_text(YAML)
    (tmp_path / "s.json").write_text(FULL.to_json())
    assert Spec.from_file(tmp_path / "s.yaml") == Spec.from_file(tmp_path / "s.json") == FULL
    (tmp_path / "s.toml").write_text("")
    with pytest.raises(SpecError, match=r"unknown extension"):
        Spec.from_file(tmp_path / "s.toml")
    with pytest.raises(SpecError, match=r"cannot read spec file .*missing\.json"):
        Spec.from_file(tmp_path / "missing.json")


def test_spec_is_frozen():
    with pytest.raises(AttributeError):
        FULL.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        FULL.hyper["eps"] = 1.0  # type: ignore[index]


def test_hyper_lists_become_tuples():
    assert Spec.from_dict({"lr": 1, "hyper": {"betas": [0.9, 0.99]}}).hyper["betas"] == (0.9, 0.99)


def test_seed_recipes_are_one_line():
    # seed 000: x0.9 per top-level block counting back from the head; per tensor in its first version
    assert Spec(lr=1e-2, layer_decay=LayerDecay(0.9, depth="top")).layer_decay.depth == "top"
    # seed 001: an explicit rate per tensor
    rates = {"layer1.weight": 0.01, "layer1.bias": 0.1, "layer2.weight": 0.001, "layer2.bias": 1.0}
    assert dict(Spec(lr=0.01, rates=rates).rates) == rates


def test_spread_rates_are_geometric():
    assert Spread(1e-5, 1e-3, over=("a", "b", "c")).rates() == (1e-5, 1e-4, 1e-3)
    spec = Spec(lr=1e-3, rules=[Rule("a*", frozen=False, name="a"), Rule("b*", frozen=False, name="b")],
                spread=Spread(1e-4, 1e-3, over=("a", "b")))
    assert spec.rule_rates() == {"a": 1e-4, "b": 1e-3}


def test_rule_glob_shorthand_and_default_name():
    assert Rule("fc.*", lr_mult=2) == Rule(Glob("fc.*"), lr_mult=2, name="glob:fc.*")


def test_predicate_has_no_mapping_form():
    spec = Spec(lr=1, rules=[Rule(Predicate(lambda n, i: True, label="all"), lr_mult=1)])
    with pytest.raises(SpecError, match=r"predicate:all.*no mapping form"):
        spec.to_dict()


class _Mine:
    """A selector class of the user's: the Selector protocol, no ``to_dict``."""

    def matches(self, info):
        return info.name.startswith("head")

    def describe(self):
        return "mine:head"


def test_code_in_a_spec_is_described_on_request_and_refused_otherwise():
    flat = Function(lambda i: 1.0, name="flat")
    spec = Spec(
        lr=1,
        rules=[Rule(_Mine(), lr_mult=2, name="head"), Rule(Predicate(lambda n, i: True, label="all"), weight_decay=0)],
        layer_decay=LayerDecay(0.5, within=Predicate(lambda n, i: True, label="every")),
        schedule=Warmup(flat, steps=3),
    )
    described = spec.to_dict(describe_code=True)
    assert described["rules"][0] == {"predicate": "mine:head", "name": "head", "lr_mult": 2.0}
    assert described["rules"][1] == {"predicate": "all", "weight_decay": 0.0}
    assert described["layer_decay"]["within"] == {"predicate": "every"}
    assert described["schedule"]["inner"] == {"function": "Function(flat)"}
    with pytest.raises(SpecError, match=r"'mine:head' \(_Mine\) has no mapping form"):
        Spec(lr=1, rules=[Rule(_Mine(), lr_mult=2)]).to_dict()
    with pytest.raises(SpecError, match=r"Function\(flat\) is Python code"):
        Spec(lr=1, schedule=Warmup(flat, steps=3)).to_dict()


@pytest.mark.parametrize(
    ("key", "meant"),
    [("momentun", "momentum"), ("nesterove", "nesterov"), ("beta", "betas"), ("ammsgrad", "amsgrad")],
)
def test_a_misspelt_hyperparameter_is_refused(key, meant):
    # torch keeps an unknown group key and ignores it: SGD would run without momentum
    with pytest.raises(SpecError, match=rf"hyper\.{key}: .*\(did you mean '{meant}'\?\).*silently"):
        Spec.from_dict({"lr": 1, "hyper": {key: 0.9}})


def test_hyperparameters_of_other_optimizers_are_kept():
    # keys no torch or OneFlow optimizer takes, of optimizers elsewhere (Prodigy, LARS, your own)
    hyper = {"beta3": 0.9, "d_coef": 1.0, "trust_coefficient": 0.001, "my_knob": 3}
    assert dict(Spec(lr=1, hyper=hyper).hyper) == hyper


# --- bad input: every error names the key ----------------------------------------------

BAD = [
    pytest.param({"lr": 1, "rule": []}, r"unknown key 'rule' \(did you mean 'rules'\?\)", id="unknown-key"),
    pytest.param({"lr": 1, "rule": [], "weight_decy": 0.1},
                 r"spec: unknown keys 'rule' \(did you mean 'rules'\?\), 'weight_decy' \(did you mean 'weight_decay'\?\); "
                 r"known keys: ", id="two-unknown-keys"),
    pytest.param({"lr": 1, **{f"x{i}": 0 for i in range(12)}},
                 r"unknown keys 'x0', .*'x9' and 2 more; known keys", id="many-unknown-keys"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr_mul": 2}]},
                 r"rules\[0\]: unknown key 'lr_mul' \(did you mean 'lr_mult'\?\)", id="unknown-rule-key"),
    pytest.param({"weight_decay": 0.1}, r"missing required key 'lr'", id="missing-lr"),
    pytest.param({"lr": "fast"}, r"lr must be a number, got 'fast'", id="lr-not-number"),
    pytest.param({"lr": True}, r"lr must be a number", id="lr-bool"),
    pytest.param({"lr": -1}, r"lr must be > 0, got -1", id="lr-negative"),
    pytest.param({"lr": 0}, r"lr must be > 0", id="lr-zero"),
    pytest.param({"lr": math.nan}, r"lr must be finite", id="lr-nan"),
    pytest.param({"lr": math.inf}, r"lr must be finite", id="lr-inf"),
    pytest.param({"lr": ".nan"}, r"lr must be a number", id="lr-yaml-nan-string"),
    pytest.param({"lr": 1, "weight_decay": -0.1}, r"weight_decay must be >= 0", id="wd-negative"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr_mult": -2}]},
                 r"rule 'prefix:a': lr_mult must be >= 0, got -2", id="mult-negative"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr_mult": math.inf}]},
                 r"rule 'prefix:a': lr_mult must be finite", id="mult-inf"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr": math.nan}]}, r"lr must be finite", id="rule-lr-nan"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr": 1, "lr_mult": 2}]},
                 r"set either lr_mult or lr, not both", id="lr-and-mult"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a"}]}, r"rule 'prefix:a': sets nothing", id="rule-sets-nothing"),
    pytest.param({"lr": 1, "rules": [{"lr_mult": 2}]}, r"rules\[0\]: a rule needs exactly one selector",
                 id="rule-no-selector"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "glob": "b", "lr_mult": 2}]},
                 r"rules\[0\].*found glob, prefix", id="rule-two-selectors"),
    pytest.param({"lr": 1, "rules": [{"regex": "(", "lr_mult": 2}]}, r"invalid regex pattern '\('", id="bad-regex"),
    pytest.param({"lr": 1, "rules": [{"prefix": "", "lr_mult": 2}]}, r"prefix must be a non-empty string",
                 id="empty-prefix"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "frozen": "yes"}]}, r"frozen must be true or false",
                 id="frozen-not-bool"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr_mult": 1, "priority": 1.5}]},
                 r"priority must be an integer", id="priority-float"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr_mult": 1}, {"prefix": "a", "lr_mult": 2}]},
                 r"two rules are named 'prefix:a'", id="duplicate-rule-name"),
    pytest.param({"lr": 1, "rules": "fc"}, r"rules must be a list", id="rules-not-list"),
    pytest.param({"lr": 1, "layer_decay": {"decay": 0}}, r"layer_decay.decay must be > 0", id="decay-zero"),
    pytest.param({"lr": 1, "layer_decay": {"decay": 1.5}}, r"layer_decay.decay must be <= 1.0", id="decay-above-1"),
    pytest.param({"lr": 1, "layer_decay": {"decay": -0.5}}, r"layer_decay.decay must be > 0", id="decay-negative"),
    pytest.param({"lr": 1, "layer_decay": {"decay": 0.5, "depth": "block"}}, r"layer_decay.depth must be 'blocks'",
                 id="depth-mode-typo"),
    pytest.param({"lr": 1, "layer_decay": {"decay": 0.5, "depth": {"a.*": -1}}},
                 r"layer_decay.depth\['a.\*'\] must be an integer >= 0", id="depth-map-negative"),
    pytest.param({"lr": 1, "layer_decay": {"decay": 0.5, "dept": "top"}}, r"did you mean 'depth'",
                 id="layer-decay-typo"),
    pytest.param({"lr": 1, "layer_decay": {}}, r"layer_decay: missing required key 'decay'", id="decay-missing"),
    pytest.param({"lr": 1, "spread": {"lo": 1e-4, "hi": 1e-2, "over": ["a", "b"], "mode": "linear"}},
                 r"spread: unknown key 'mode'; known keys: lo, hi, over", id="spread-unknown-key"),
    pytest.param({"lr": 1, "stages": [{"at": 100, "unfreeze": ["body"], "lr_multt": 0.1}]},
                 r"stages\[0\]: unknown key 'lr_multt' \(did you mean 'lr_mult'\?\)", id="stage-unknown-key"),
    pytest.param({"lr": 1, "spread": {"lo": 1, "hi": 0.1, "over": ["a", "b"]}}, r"spread.lo \(1.0\) must be <=",
                 id="spread-lo-above-hi"),
    pytest.param({"lr": 1, "spread": {"lo": 0.1, "hi": 1, "over": ["a"]}}, r"spread.over must name two or more",
                 id="spread-one-rule"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "frozen": False, "name": "body"}],
                  "spread": {"lo": 0.1, "hi": 1, "over": ["body", "hed"]}},
                 r"spread.over names no rule 'hed'", id="spread-unknown-rule"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr_mult": 2, "name": "a"}, {"prefix": "b", "frozen": False}],
                  "spread": {"lo": 0.1, "hi": 1, "over": ["a", "prefix:b"]}},
                 r"rule 'a' is in spread.over and sets its own rate", id="spread-rule-with-rate"),
    pytest.param({"lr": 1, "rates": {"fc.weight": -1}}, r"rates\['fc.weight'\] must be >= 0", id="rate-negative"),
    pytest.param({"lr": 1, "rates": ["fc.weight"]}, r"rates must be a mapping", id="rates-not-mapping"),
    pytest.param({"lr": 1, "no_decay": ["bias", "norms"]}, r"no_decay: unknown class 'norms' \(did you mean 'norm'",
                 id="no-decay-typo"),
    pytest.param({"lr": 1, "unmatched": "ignore"}, r"unmatched must be 'default' or 'error'", id="unmatched-bad"),
    pytest.param({"lr": 1, "hyper": {"lr": 2}}, r"hyper.lr: set 'lr' at the top level", id="hyper-reserved"),
    pytest.param({"lr": 1, "hyper": {"params": []}}, r"hyper.params: .*writes each group's tensors itself",
                 id="hyper-params"),
    pytest.param({"lr": 1, "hyper": {"initial_lr": 1}}, r"hyper.initial_lr: .*schedulers set it", id="hyper-initial-lr"),
    pytest.param({"lr": 1, "hyper": {"eps": math.nan}}, r"hyper.eps must be finite", id="hyper-nan"),
    pytest.param({"lr": 1, "hyper": {"betas": {"a": 1}}}, r"hyper.betas must be a number", id="hyper-dict"),
    pytest.param(["lr", 1], r"spec: expected a mapping", id="not-a-mapping"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_input_names_the_key(data, message):
    with pytest.raises(SpecError, match=message):
        Spec.from_dict(data)


def test_bad_yaml_and_json_text():
    with pytest.raises(SpecError, match=r"not valid YAML"):
        Spec.from_yaml("lr: [1,")
    with pytest.raises(SpecError, match=r"not valid JSON"):
        Spec.from_json("{lr: 1}")


def test_yaml_is_loaded_safely():
    with pytest.raises(SpecError, match=r"not valid YAML"):
        Spec.from_yaml("lr: !!python/object/apply:os.system ['echo pwned']")


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        Spec(lr=-1)


# Inputs the fuzzer (tests/test_fuzz.py) found escaping as TypeError, OverflowError,
# ValueError or RecursionError, or accepted where they should be refused; shrunk by hand.
def _nested(depth):
    out = []
    for _ in range(depth):
        out = [out]
    return out


def _chain(milestones, parts=2):
    return {"lr": 1, "schedule": {"kind": "chain", "parts": [{"kind": "constant"}] * parts, "milestones": milestones}}


FUZZ_FOUND = [
    pytest.param({"lr": 10**400}, r"lr must be finite, got <an integer of 1329 bits>", id="int-past-float"),
    pytest.param({"lr": 1, "schedule": {"kind": []}}, r"schedule.kind \[\] unknown", id="kind-unhashable"),
    pytest.param({"lr": 1, "schedule": {"kind": 10**5000}}, r"schedule.kind <an integer of 16610 bits> unknown",
                 id="kind-unprintable"),
    pytest.param({"lr": 1, 10**5000: 1}, r"spec: unknown key <an integer of 16610 bits>; known keys", id="key-unprintable"),
    pytest.param(_chain(5, parts=1), r"schedule.milestones must be a list, got 5", id="milestones-not-list"),
    pytest.param(_chain([math.inf]), r"schedule.milestones\[0\] must be an integer, got float inf",
                 id="milestone-inf"),
    pytest.param(_chain(["x"]), r"schedule.milestones\[0\] must be an integer, got str 'x'", id="milestone-text"),
    pytest.param({"lr": 1, "schedule": {"kind": "chain", "parts": 3, "milestones": []}},
                 r"schedule.parts must be a list, got 3", id="parts-not-list"),
    pytest.param({"lr": 1, "schedule": {"kind": "step", "step_size": 10**5000}},
                 r"schedule.step_size must be an integer <= 2\*\*63 - 1", id="steps-unprintable"),
    pytest.param({"lr": 1, "schedule": {"kind": "one_cycle", "total": 10, "three_phase": "no"}},
                 r"schedule.three_phase must be true or false", id="schedule-bool"),
    pytest.param({"lr": 1, "schedule": {"kind": "warmup", "inner": {"kind": "constant"}, "steps": 2, "mode": [1]}},
                 r"schedule.mode must be a string", id="schedule-str"),
    pytest.param({"lr": 1, "rules": [{"regex": "a{99999999999}", "lr_mult": 1}]},
                 r"rules\[0\]: invalid regex pattern 'a\{99999999999\}': too large", id="regex-overflow"),
    pytest.param({"lr": 1, "rules": [{"regex": "(" * 2000 + ")" * 2000, "lr_mult": 1}]},
                 r"rules\[0\]: invalid regex pattern '\(\(\(.*too large", id="regex-recursion"),
    pytest.param({"lr": 1, "hyper": {"betas": _nested(3000)}}, r"hyper.betas.*: lists nested more than 4 deep",
                 id="hyper-deep"),
    pytest.param({"lr": 1, "rules": _nested(3000)}, r"rules\[0\]: expected a mapping, got list \[\[\[\[\.\.\.\]\]\]\]",
                 id="repr-deep"),
    pytest.param({"lr": 1e300, "rules": [{"prefix": "fc", "lr_mult": 1e300}]},
                 r"rule 'prefix:fc': lr_mult 1e\+300 x lr 1e\+300 overflows", id="rate-overflow"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "frozen": False, "name": "a"},
                                     {"prefix": "b", "frozen": False, "name": "b"}],
                  "spread": {"lo": 1e-300, "hi": 1e300, "over": ["a", "b"]}},
                 r"spread.lo \(1e-300\) and spread.hi \(1e\+300\) are too far apart", id="spread-overflow"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "frozen": True, "name": "a"}],
                  "stages": [{"at": 10**5000, "unfreeze": ["a"]}]},
                 r"stages\[0\]: at must be <= 2\*\*63 - 1, got <an integer", id="stage-unprintable"),
    pytest.param({"lr": 1, "layer_decay": {"decay": 0.5, "depth": {"*": 10**400}}},
                 r"layer_decay.depth\['\*'\] must be <= 2\*\*63 - 1", id="depth-huge"),
    pytest.param({"lr": 1, "rules": [{"prefix": "a", "lr_mult": 1, "priority": 2**64}]},
                 r"rules\[0\]: rule 'prefix:a': priority must be an integer <= 2\*\*63 - 1", id="priority-huge"),
    pytest.param({"lr": 1, "rates": 0}, r"rates must be a mapping", id="rates-falsy"),
    pytest.param({"lr": 1, "rules": False}, r"rules must be a list", id="rules-falsy"),
    pytest.param({"lr": 1, "hyper": []}, r"hyper must be a mapping", id="hyper-falsy"),
    pytest.param({"lr": 1, "stages": 0}, r"stages must be a list", id="stages-falsy"),
    pytest.param({"lr": 1, "no_decay": ""}, r"no_decay: unknown class ''", id="no-decay-empty"),
    # was kept as None: the spec did not round-trip (to_dict leaves a false flag out)
    pytest.param({"lr": 1, "rules": [{"prefix": "fc", "weight_decay": 0, "optional": None}]},
                 r"rules\[0\]: rule 'prefix:fc': optional must be true or false, got None", id="optional-null"),
]


@pytest.mark.parametrize(("data", "message"), FUZZ_FOUND)
def test_fuzz_found_inputs_are_refused_naming_the_key(data, message):
    with pytest.raises(SpecError, match=message):
        Spec.from_dict(data)


@pytest.mark.parametrize(
    ("text", "parse", "message"),
    [
        pytest.param('{"lr": ' + "1" * 5000 + "}", Spec.from_json, "not usable JSON: Exceeds the limit",
                     id="json-long-int"),
        pytest.param("lr: " + "1" * 5000, Spec.from_yaml, "not usable YAML: Exceeds the limit", id="yaml-long-int"),
        pytest.param("[" * 100_000, Spec.from_json, "not usable JSON: nested too deeply", id="json-deep"),
        pytest.param("[" * 520 + "]" * 520, Spec.from_yaml, "not usable YAML: nested too deeply", id="yaml-deep"),
        pytest.param("lr: 2024-13-45", Spec.from_yaml, "not usable YAML: month must be in 1..12", id="yaml-bad-date"),
        pytest.param("lr: 1\nhyper: {a: &x [1, *x]}", Spec.from_yaml, r"hyper.a\[1\]\[1\]\[1\]\[1\]: lists nested",
                     id="yaml-self-reference"),
    ],
)
def test_fuzz_found_texts_are_refused(text, parse, message):
    with pytest.raises(SpecError, match=message):
        parse(text)


def test_yaml_alias_bombs_are_refused_quickly():
    """A billion-laughs document is small as text and as objects; hyper and messages never expand it."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    nested = "".join(f"  {line}\n" for line in lines)
    with pytest.raises(SpecError, match=r"hyper.a3\[9\]: more than 10000 values"):
        Spec.from_yaml("lr: 1\nhyper:\n" + nested)
    with pytest.raises(SpecError, match=r"layer_decay: unknown keys 'a0', 'a1', .*'a8'; known keys"):
        Spec.from_yaml("lr: 1\nlayer_decay:\n" + nested)
    defs = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    defs += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(SpecError, match=r"rules\[0\]: expected a mapping, got list \[\['lol', "):
        Spec.from_yaml(f"lr: 1\nrules:\n  - [{', '.join(defs)}]\n")


def test_schedule_factors_given_as_text_are_numbers():
    """YAML 1.1 reads ``5e-1`` as text; a schedule factor written so is a number, not a str."""
    spec = Spec.from_yaml("lr: 0.1\nschedule: {kind: step, step_size: 2, gamma: 5e-1}")
    assert spec.schedule.gamma == 0.5 and spec.schedule.factor(2) == 0.5
    assert Spec.from_json(spec.to_json()) == spec
