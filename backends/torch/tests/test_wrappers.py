"""A model inside torch's wrappers plans and trains as the model itself.

``DataParallel`` and DDP hold the model under ``module.``, ``torch.compile`` under
``_orig_mod.``. Read through the wrapper, a spec written for the model would match
nothing, depths would see a single top-level child, and the model's timm hints
(``group_matcher()``) would not be found. ``build`` and ``plan`` read the inner model
(as MMEngine's optimizer constructor does); the groups hold the same tensor objects, so
an optimizer made from them trains the wrapped model. DDP, which needs a process group,
is checked in ``test_distributed.py`` (scenario ``ddp``).
"""

from __future__ import annotations

from collections.abc import Callable

import models
import pytest
import torch
from multilr_torch import TorchBackend

import multilr
from multilr import LayerDecay, Prefix, Rule, Spec

# timm's layer decay (the model's group_matcher decides the depths) and a fast head
SPEC = Spec(
    lr=0.05,
    weight_decay=0.1,
    no_decay=("1d",),
    rules=[Rule(Prefix("head"), lr_mult=4, name="head")],
    layer_decay=LayerDecay(0.5),
)


def _compiled(model: torch.nn.Module) -> torch.nn.Module:
    # the "eager" backend traces with dynamo but needs no C++ compiler
    return torch.compile(model, backend="eager")  # type: ignore[return-value]


WRAPPERS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "DataParallel": torch.nn.DataParallel,
    "compile": _compiled,
    "compile-of-DataParallel": lambda m: _compiled(torch.nn.DataParallel(m)),
    "DataParallel-of-compile": lambda m: torch.nn.DataParallel(_compiled(m)),
}


@pytest.fixture(params=list(WRAPPERS), ids=list(WRAPPERS))
def wrapped(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.nn.Module]:
    model = models.tiny_vit()
    return model, WRAPPERS[request.param](model)


def test_the_wrapper_really_prefixes_the_names(wrapped) -> None:
    # what the planner would read without unwrapping (so the tests below can fail)
    model, wrapper = wrapped
    inner = {n for n, _ in model.named_parameters()}
    outer = {n for n, _ in wrapper.named_parameters()}
    assert not inner & outer and all(n.startswith(("module.", "_orig_mod.")) for n in outer)


def test_build_through_a_wrapper_equals_build_on_the_model(wrapped) -> None:
    model, wrapper = wrapped
    through = multilr.build(wrapper, SPEC, backend="torch")
    direct = multilr.build(model, SPEC, backend="torch")
    assert through.plan.to_json() == direct.plan.to_json()
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in through] == [
        (g["name"], g["lr"], g["weight_decay"]) for g in direct
    ]
    # the very tensors of the model, which the wrapper trains
    assert [[id(p) for p in g["params"]] for g in through] == [[id(p) for p in g["params"]] for g in direct]
    assert {id(p) for g in through for p in g["params"]} == {id(p) for p in wrapper.parameters()}


def test_the_models_hints_are_read_through_the_wrapper(wrapped) -> None:
    model, wrapper = wrapped
    plan = multilr.plan(wrapper, SPEC, backend="torch")
    hinted = multilr.plan(model, SPEC, backend="torch")
    unhinted = multilr.plan(model, {**SPEC.to_dict(), "model_hints": False}, backend="torch")
    assert plan.to_json() == hinted.to_json()
    # timm's matcher puts the final norm with the last block; name inference does not
    assert plan.param("norm.weight").lr != unhinted.param("norm.weight").lr
    assert "model.no_weight_decay()" in plan.param("pos_embed").wd_source


def test_extract_and_emit_unwrap_too(wrapped) -> None:
    model, wrapper = wrapped
    backend = TorchBackend()
    assert backend.extract(wrapper) == backend.extract(model)
    plan = multilr.plan(model, SPEC, backend="torch")
    emitted = backend.emit(wrapper, plan)
    assert [[id(p) for p in g["params"]] for g in emitted] == [
        [id(p) for p in g["params"]] for g in backend.emit(model, plan)
    ]


def test_a_step_through_the_wrapper_moves_each_tensor_at_its_planned_rate(wrapped) -> None:
    model, wrapper = wrapped
    groups = multilr.build(wrapper, SPEC, backend="torch")
    opt = torch.optim.SGD(groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    wrapper(x).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    assert len(grads) == len(before), "the step through the wrapper left tensors without a gradient"
    for name, p in model.named_parameters():
        row = groups.plan.param(name)
        # torch's SGD: p -= lr * (grad + weight_decay * p)
        want = before[name] - row.lr * (grads[name] + row.weight_decay * before[name])
        assert torch.allclose(p.detach(), want, rtol=1e-6, atol=1e-9), f"{name} did not move at {row.lr}"


def test_a_spec_written_for_the_wrappers_names_is_told_why_it_matches_nothing(wrapped) -> None:
    _, wrapper = wrapped
    spec = Spec(lr=0.05, rules=[Rule(Prefix("module.head"), lr_mult=4)])
    with pytest.raises(multilr.CoverageError, match=r"names are the model's own.*without their 'module\.'"):
        multilr.build(wrapper, spec, backend="torch")
