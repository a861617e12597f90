"""``build`` reads a torch model once: the table of that walk serves the plan and emit.

What must hold: the one-walk path gives the same groups and plan as ``extract`` +
``emit``; ``extract`` still gives the same ``ParamInfo`` records; a backend subclass
that overrides ``emit`` (or ``extract``) is still called by ``build``; and a table
from another model, or one without tensors, is refused before anything changes.
"""

from __future__ import annotations

from typing import Any

import models
import pytest
import torch
from multilr_torch import TorchBackend

import multilr
from multilr import BackendError, LayerDecay, ParamInfo, Plan, Prefix, Rule, Spec
from multilr.backend import ParamTable, TableBackend


def _spec() -> Spec:
    return Spec(
        lr=0.1,
        weight_decay=0.05,
        no_decay=("bias", "norm"),
        rules=[Rule(Prefix("fc"), lr_mult=10, name="head"), Rule(Prefix("conv1"), frozen=True, name="stem")],
        layer_decay=LayerDecay(0.8),
    )


def _ids(groups: list[dict[str, Any]]) -> list[tuple[str, list[int], float]]:
    return [(g["name"], [id(p) for p in g["params"]], g["lr"]) for g in groups]


def test_one_walk_gives_what_extract_and_emit_give() -> None:
    model, backend = models.resnet18(width=4), TorchBackend()
    assert isinstance(backend, TableBackend)
    planned = multilr.plan(backend.extract(model), _spec())
    classic = backend.emit(model, planned)
    for p in model.parameters():
        p.requires_grad_(True)
    groups = multilr.build(model, _spec(), backend=backend)
    assert _ids(groups) == _ids(classic)
    assert groups.plan == planned
    assert all(type(p.shape) is tuple for p in groups.plan.params), "plain tuples, not torch.Size"
    assert not model.conv1.weight.requires_grad and model.fc.weight.requires_grad


def test_extract_gives_the_same_records_as_before() -> None:
    model = models.tied_lm()
    infos = TorchBackend().extract(model)
    want = [
        ParamInfo(
            name,
            tuple(p.shape),
            str(p.dtype).removeprefix("torch."),
            name.rpartition(".")[0],
            tuple(c.__name__ for c in type(model.get_submodule(name.rpartition(".")[0])).__mro__
                  if c not in (torch.nn.Module, object)),
            p.requires_grad,
            id(p),
        )
        for name, p in model.named_parameters(remove_duplicate=False)
    ]
    assert infos == want
    assert all(type(i.shape) is tuple for i in infos), "plain tuples, not torch.Size"


def test_a_subclass_that_overrides_emit_is_still_called() -> None:
    calls = []

    class Marked(TorchBackend):
        name = "marked"

        def emit(self, model: Any, plan: Plan) -> list[dict[str, Any]]:
            calls.append("emit")
            groups = super().emit(model, plan)
            for g in groups:
                g["marked"] = True
            return groups

    groups = multilr.build(models.mlp(), Spec(lr=0.1), backend=Marked())
    assert calls == ["emit"] and all(g["marked"] for g in groups)


def test_a_subclass_that_overrides_extract_is_still_called() -> None:
    class Hiding(TorchBackend):
        name = "hiding"

        def extract(self, model: Any) -> list[ParamInfo]:
            return [i for i in super().extract(model) if not i.name.endswith("bias")]

    model = models.mlp()
    groups = multilr.build(model, Spec(lr=0.1), backend=Hiding())
    weights = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    assert list(groups.plan.rates()) == [n for n, _ in model.named_parameters() if not n.endswith("bias")]
    assert [id(p) for g in groups for p in g["params"]] == [id(p) for p in weights]


def test_emit_table_refuses_a_table_without_tensors_or_from_another_model() -> None:
    backend = TorchBackend()
    model = models.resnet18(width=4)
    planned = multilr.plan(model, Spec(lr=0.1, rules=[Rule(Prefix("conv1"), frozen=True)]))
    with pytest.raises(BackendError, match="table from extract_table"):
        backend.emit_table(ParamTable.from_infos(backend.extract(model)), planned)
    other = models.resnet18(width=4)
    other.fc = torch.nn.Identity()
    with pytest.raises(BackendError, match=r"'fc\.weight'.*changed after planning"):
        backend.emit_table(backend.extract_table(other), planned)
    assert other.conv1.weight.requires_grad, "a refused emit freezes nothing"


def test_lazy_module_is_refused_by_the_table_walk() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LazyLinear(3))
    with pytest.raises(BackendError, match=r"'1\.weight' is uninitialized"):
        TorchBackend().extract_table(model)
