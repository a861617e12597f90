"""The planner's column paths: tables, deferred records, selectors over columns.

The planner keeps its decisions in columns and makes ``ParamPlan`` / ``Group`` records
only when they are read; these tests pin that the records are the same as ever.
"""

import copy
import dataclasses

import pytest

from multilr import (
    Glob,
    Group,
    LayerDecay,
    ModuleType,
    ParamInfo,
    Plan,
    Predicate,
    Prefix,
    Regex,
    Rule,
    Spec,
    plan,
)
from multilr._params import ParamTable
from multilr._plan import resolve
from multilr._select import matching
from multilr.backend import attach_params, frozen_params, group_options

from ._infos import bert_like, resnet_like, tied_lm

SPEC = Spec(
    lr=1e-3,
    weight_decay=0.05,
    no_decay=("bias", "norm"),
    rules=[Rule(Prefix("fc"), lr_mult=10, name="head"), Rule(Prefix("conv1"), frozen=True, name="stem")],
    layer_decay=LayerDecay(0.8),
)


def test_deferred_plan_equals_the_eager_plan_field_for_field():
    p = plan(resnet_like(), SPEC)
    rows = list(p._group_rows())  # read before any record exists
    eager = Plan(p.spec, p.params, p.groups, p.aliases, p.max_depth, p.unused_rules)
    assert p == eager and repr(p) == repr(eager)
    assert [Group(*row) for row in rows] == list(p.groups)
    assert list(p._group_rows()) == rows, "the rows read after the records exist are the same"
    assert p.params is p.params and p.groups is p.groups, "records are made once"


def test_a_plan_from_records_counts_every_tensor_when_layer_decay_covers_only_some():
    # outside layer decay's ``within`` a record has no depth: the names decide then, for every tensor
    p = plan(resnet_like(), Spec(lr=1e-3, layer_decay=LayerDecay(0.8, within=Prefix("layer1"))))
    eager = Plan(p.spec, p.params, p.groups, p.aliases, p.max_depth, p.unused_rules)
    assert {q.depth is None for q in eager.params} == {True, False}
    assert list(eager.block_depths()) == [q.name for q in eager.params]


def test_deferred_plan_survives_replace_copy_and_unknown_attributes():
    p = plan(tied_lm(), Spec(lr=1, rules=[Rule(Prefix("lm_head"), lr_mult=0.5, name="head")]))
    again = copy.copy(p)  # before any record exists
    assert dataclasses.replace(p, max_depth=7).params == p.params
    assert again == p and again.to_json() == p.to_json()
    with pytest.raises(AttributeError, match="'Plan' object has no attribute 'nope'"):
        p.nope  # noqa: B018
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.params = ()


def test_group_options_and_attach_params_read_rows_or_records_alike():
    p = plan(resnet_like(), SPEC)
    tensors = {i.name: f"T[{i.name}]" for i in resnet_like()}
    before = (group_options(p, "lr"), group_options(p, "lr_scale"), attach_params(p, "lr_scale", tensors))
    assert frozen_params(p) == ["conv1.weight"]
    p.groups  # noqa: B018  (the records exist from here on)
    after = (group_options(p, "lr"), group_options(p, "lr_scale"), attach_params(p, "lr_scale", tensors))
    assert before == after
    assert [list(g) for g in after[2]][:1] == [["params", "name", "lr", "lr_scale", "weight_decay"]]
    with pytest.raises(ValueError, match="convention must be"):
        attach_params(p, "nope", tensors)


def test_table_and_info_list_give_the_same_plan():
    infos = bert_like(layers=3)
    table = ParamTable.from_infos(infos)
    assert table.infos() == infos and table.infos()[0] is infos[0], "the same objects come back"
    spec = Spec(lr=1e-3, no_decay=("norm",), layer_decay=LayerDecay(0.75))
    assert resolve(table, spec).to_dict() == resolve(infos, spec).to_dict()


def test_lazy_dtype_column_is_made_once():
    calls = []

    def dtypes():
        calls.append(1)
        return ["float32"]

    table = ParamTable(["w"], [(2,)], dtypes, [""], [("Linear",)], [True], ["w"])
    assert table.infos()[0].dtype == "float32" and table.dtypes == ["float32"] and calls == [1]


class _EveryOtherGlob(Glob):
    """A subclass with its own ``matches``: the column fast path must not bypass it."""

    def matches(self, info: ParamInfo) -> bool:
        return int(info.key) % 2 == 0


@pytest.mark.parametrize(
    "selector",
    [
        Glob("layer1.*"),
        Glob("*.bias"),
        Glob("*"),
        Glob("conv1.*.weight"),  # head and tail overlap in "conv1.weight": no match
        Glob("layer*.conv1.weight"),
        Glob("layer?.0.*"),
        Glob("layer[12].*.bias"),
        Glob("fc.weight"),
        Regex(r"\.bn\d\."),
        Prefix("layer1.0"),
        Prefix("fc.bias"),
        ModuleType("norm"),
        ModuleType("Conv2d", "Linear"),
        Predicate(lambda name, info: info.ndim == 1, "1d"),
        _EveryOtherGlob("*"),
    ],
    ids=lambda s: f"{type(s).__name__}:{s.describe()}",
)
def test_matching_over_columns_agrees_with_matches(selector):
    infos = [dataclasses.replace(i, key=k) for k, i in enumerate(resnet_like())]
    table = ParamTable.from_infos(infos)
    assert matching(selector, table) == [k for k, i in enumerate(infos) if selector.matches(i)]


# -- attribute names a backend gives (torch's parametrized tensors) ------------------------


def _moved(name: str, attribute: str, module: str, types: tuple[str, ...]) -> ParamInfo:
    return ParamInfo(name, (4,), "float32", module, types, True, name, attribute)


def test_the_bias_class_reads_the_attribute_a_backend_names() -> None:
    # torch keeps a parametrized bias at "ln.parametrizations.bias.original": by its name
    # it is no bias; its backend says it is ln's attribute "bias"
    infos = [
        _moved("ln.parametrizations.bias.original", "bias", "ln", ("LayerNorm",)),
        _moved("fc.parametrizations.weight.original", "weight", "fc", ("Linear",)),
        ParamInfo("fc.bias", (4,), "float32", "fc", ("Linear",), True, "fc.bias"),
    ]
    p = plan(infos, Spec(lr=0.1, weight_decay=0.5, no_decay=("bias",)))
    assert {x.name: x.weight_decay for x in p.params} == {
        "ln.parametrizations.bias.original": 0.0,
        "fc.parametrizations.weight.original": 0.5,
        "fc.bias": 0.0,
    }
    # the same names without the attributes: only the plain bias is one (so the above can fail)
    plain = plan([dataclasses.replace(i, attribute="") for i in infos], Spec(lr=0.1, weight_decay=0.5, no_decay=("bias",)))
    assert [x.weight_decay for x in plain.params] == [0.5, 0.5, 0.0]


def test_a_table_keeps_its_attributes_through_records() -> None:
    infos = [_moved("a.parametrizations.bias.original", "bias", "a", ("Linear",)), bert_like()[0]]
    table = ParamTable.from_infos(infos)
    assert table.attributes == ["bias", ""]
    assert table.leaves() == ["bias", infos[1].name.rpartition(".")[2]]
    assert [i.leaf for i in infos] == table.leaves()
    # a table with no moved tensor carries no column: the planner's fast path
    assert ParamTable.from_infos(bert_like()).attributes is None
    rebuilt = ParamTable(table.names, table.shapes, table.dtypes, table.modules, table.module_types,
                         table.requires_grad, table.keys, None, table.attributes).infos()
    assert rebuilt == infos
