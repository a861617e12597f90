"""build refuses groups from a backend's emit that do not implement the plan, naming the backend.

Each wrong backend is the torch backend with one mistake in ``emit`` that a framework
would take without a word (torch trains on any list of groups) or would blame on the
user later (``Controller`` refusing "your" optimizer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import models
import pytest
import torch
from multilr_torch import TorchBackend

import multilr
from multilr import BackendError, Plan

SPEC = {
    "lr": 0.1,
    "weight_decay": 0.01,
    "no_decay": ["bias", "norm"],
    "rules": [{"prefix": "stem", "frozen": True, "name": "stem"}, {"prefix": "head", "lr_mult": 10, "name": "head"}],
}

Groups = list[dict[str, Any]]


def _move_one(groups: Groups) -> Groups:  # the last group's first tensor into the first group
    groups[0]["params"].append(groups[-1]["params"].pop(0))
    return groups


def _share_one(groups: Groups) -> Groups:  # group 1 trains a tensor of group 0 in place of its own
    groups[1]["params"][0] = groups[0]["params"][0]
    return groups


def _twice(groups: Groups) -> Groups:  # "default" holds two weights: one of them, twice
    groups[2]["params"][1] = groups[2]["params"][0]
    return groups


#: mistake id -> (what emit does to the right groups, what the message must say)
MISTAKES: dict[str, tuple[Callable[[Groups], Any], str]] = {
    "drops-frozen-groups": (
        lambda gs: [g for g in gs if g["lr"] > 0],
        r"backend 'wrong' emitted 4 groups for a plan of 6 \(stem/frozen, .*\); missing: stem/frozen, "
        r"stem/no_decay/frozen \(frozen groups are emitted too, at rate 0\): emit must return one group per",
    ),
    "merges-everything": (
        lambda gs: [{"params": [p for g in gs for p in g["params"]], "lr": 0.1}],
        "emitted 1 group for a plan of 6",
    ),
    "reorders": (lambda gs: gs[::-1], r"group 0 \(plan group 'stem/frozen'\): named 'head/no_decay'"),
    "moves-a-tensor": (_move_one, r"group 0 \(plan group 'stem/frozen'\): 2 tensors for the plan's 1 \(stem\.weight\)"),
    "shares-a-tensor": (_share_one, r"group 1 .*: holds a tensor of group 0 too"),
    "one-tensor-twice": (_twice, "group 2 .*: holds one tensor twice"),
    # the conformance self-test's mistakes, made in emit: refused before anything trains
    "scale-twice": (
        lambda gs: [{**g, "lr": g["lr"] * 10} if g["name"] == "head" else g for g in gs],
        r"group 4 \(plan group 'head'\): lr 10\.0, where the plan's is 1\.0",
    ),
    "drop-scale": (lambda gs: [{**g, "lr": 0.1} if g["name"] == "head" else g for g in gs], "lr 0.1, where"),
    # beyond rounding: one part in ten thousand is a wrong rate, not float noise
    "scale-a-little-off": (
        lambda gs: [{**g, "lr": g["lr"] * 1.0001} if g["name"] == "head" else g for g in gs],
        r"group 4 \(plan group 'head'\): lr 1\.0001, where the plan's is 1\.0",
    ),
    "lr-scale-too": (
        lambda gs: [{**g, "lr_scale": 1.0} for g in gs],
        "carries lr_scale under convention 'lr', where lr is already scaled",
    ),
    "decay-everything": (
        lambda gs: [{**g, "weight_decay": 0.01} for g in gs],
        r"group 1 \(plan group 'stem/no_decay/frozen'\): weight_decay 0\.01, where the plan's is 0\.0",
    ),
    "frozen-at-its-rate": (
        lambda gs: [{**g, "lr": 0.1} if g["name"] == "stem/frozen" else g for g in gs],
        r"group 0 \(plan group 'stem/frozen'\): lr 0\.1, where the plan's is 0\.0",
    ),
    "no-weight-decay": (
        lambda gs: [{k: v for k, v in g.items() if k != "weight_decay"} for g in gs],
        "group 0 .*: no 'weight_decay'; every group sets it explicitly",
    ),
    "not-a-list": (lambda gs: iter(gs), "emit must return a list of group dicts, got list_iterator"),
    "params-elsewhere": (
        lambda gs: [{"parameters": g.pop("params"), **g} for g in gs],
        "group 0 .*: got dict, not a dict with the tensors under 'params'",
    ),
    "params-a-generator": (
        lambda gs: [{**g, "params": iter(g["params"])} for g in gs],
        "'params' must be a list of tensors, got list_iterator",
    ),
}


class Wrong(TorchBackend):
    """The torch backend, with one of :data:`MISTAKES` in ``emit``."""

    name = "wrong"

    def __init__(self, mistake: Callable[[Groups], Any]) -> None:
        self.mistake = mistake

    def emit(self, model: Any, plan: Plan) -> Any:
        return self.mistake(super().emit(model, plan))


class WrongTable(Wrong):
    """The same mistakes on the one-walk path: a third-party backend's own table methods."""

    name = "wrong-table"

    # all four in one class, as build wants them to take the one-walk path
    def extract(self, model: Any) -> Any:
        return super().extract(model)

    def emit(self, model: Any, plan: Plan) -> Any:
        return super().emit(model, plan)

    def extract_table(self, model: Any) -> Any:
        return super().extract_table(model)

    def emit_table(self, table: Any, plan: Plan) -> Any:
        return self.mistake(super().emit_table(table, plan))


def test_the_table_path_is_the_one_taken() -> None:
    from multilr._build import _reads_once, _shipped

    assert _reads_once(WrongTable(lambda gs: gs)) and not _shipped(WrongTable(lambda gs: gs))
    assert _reads_once(TorchBackend()) and _shipped(TorchBackend())


@pytest.mark.parametrize("path", [Wrong, WrongTable], ids=["emit", "emit_table"])
@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_groups_that_do_not_implement_the_plan_are_refused(mistake: str, path: type[Wrong]) -> None:
    change, message = MISTAKES[mistake]
    with pytest.raises(BackendError, match=message.replace("'wrong'", f"'{path.name}'")):
        multilr.build(models.tiny_net(norm=True), SPEC, backend=path(change))


def test_an_emit_that_adds_its_own_keys_is_taken() -> None:
    # the control: a third-party emit may add what its optimizer wants, as long as every
    # group is the plan's, in order
    def extra(groups: Groups) -> Groups:
        return [{**g, "foreach": False} for g in groups]

    model = models.tiny_net(norm=True)
    groups = multilr.build(model, SPEC, backend=Wrong(extra))
    assert [g["name"] for g in groups] == [g.name for g in groups.plan.groups]
    assert all(g["foreach"] is False for g in groups)
    torch.optim.SGD(groups)  # and the framework takes them
