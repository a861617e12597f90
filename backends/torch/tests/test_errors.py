"""Failures are atomic and say what is wrong; backend lookup errors say what to install.

Every failing spec below also carries a valid frozen rule (``layer2`` frozen), so a
build that changed the model before noticing the error would show up as a
``requires_grad`` flag flipped. The model was built once already with a good spec
and trained a step, so an optimizer from that earlier build is checked too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import re
from typing import Any

import models
import pytest
import torch
from multilr_torch import TorchBackend

import multilr
from multilr import Glob, LayerDecay, Prefix, Rule, Spec

FREEZE_LAYER2 = Rule(Prefix("layer2"), frozen=True, name="freeze-layer2")

FAILING = [
    pytest.param(
        Spec(lr=0.1, rules=[FREEZE_LAYER2, Rule(Prefix("encoder"), lr_mult=2, name="ghost")]),
        multilr.CoverageError,
        ["'ghost'", "matches no parameter"],
        id="rule-matches-nothing",
    ),
    pytest.param(
        Spec(
            lr=0.1,
            rules=[
                FREEZE_LAYER2,
                Rule(Glob("layer4.*"), lr_mult=2, name="stage4"),
                Rule(Prefix("layer4.0"), lr_mult=3, name="block40"),
            ],
        ),
        multilr.ConflictError,
        ["'stage4'", "'block40'", "'layer4.0.conv1.weight'"],
        id="conflicting-rates",
    ),
    pytest.param(
        Spec(lr=0.1, rules=[FREEZE_LAYER2, Rule(Prefix("layer2.0"), frozen=False, name="thaw")]),
        multilr.ConflictError,
        ["'freeze-layer2'", "'thaw'", "'layer2.0.conv1.weight'"],
        id="conflicting-frozen",
    ),
    pytest.param(
        Spec(lr=0.1, rules=[FREEZE_LAYER2], rates={"fc.wieght": 0.5}),
        multilr.CoverageError,
        ["'fc.wieght'", "did you mean 'fc.weight'"],
        id="unknown-rates-name",
    ),
    pytest.param(
        Spec(lr=0.1, rules=[FREEZE_LAYER2, Rule(Prefix("fc"), lr_mult=10)], unmatched="error"),
        multilr.CoverageError,
        ["unmatched='error'", "'conv1.weight'"],
        id="unmatched-error",
    ),
    pytest.param(
        Spec(lr=0.1, rules=[FREEZE_LAYER2], layer_decay=LayerDecay(0.8, depth={"layer*": 1})),
        multilr.PlanError,
        ["'conv1.weight'", "depth map"],
        id="depth-map-gap",
    ),
    pytest.param(
        {
            "lr": 0.1,
            "rules": [{"prefix": "layer2", "frozen": True}],
            "layer_decay": {"decay": 0.8, "dept": 1},
        },
        multilr.SpecError,
        ["'dept'", "did you mean 'depth'"],
        id="spec-mapping-typo",
    ),
]


def _snapshot(obj: Any) -> Any:
    """A deep, independent copy of a state dict (through bytes, like a checkpoint)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _same(a: Any, b: Any, where: str = "") -> list[str]:
    """Differences between two nested state dicts."""
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return [f"{where} keys"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [f"{where} length"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _same(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {b!r} != {a!r}"]


@pytest.fixture
def trained() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A model built once with a good spec (layer1 frozen) and trained one step."""
    model = models.resnet18(width=4)
    good = Spec(lr=0.1, rules=[Rule(Prefix("layer1"), frozen=True), Rule(Prefix("fc"), lr_mult=10)])
    opt = torch.optim.AdamW(multilr.build(model, good, backend="torch"))
    model(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))).sum().backward()
    opt.step()
    return model, opt


@pytest.mark.parametrize(("spec", "error", "words"), FAILING)
def test_failed_build_changes_nothing(
    trained: tuple[torch.nn.Module, torch.optim.Optimizer], spec: Any, error: type, words: list[str]
) -> None:
    model, opt = trained
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    values = _snapshot(model.state_dict())
    opt_state = _snapshot(opt.state_dict())
    setup = (flags["layer1.0.conv1.weight"], flags["layer2.0.conv1.weight"])
    assert setup == (False, True), (
        f"got layer1/layer2 requires_grad {setup}, should be (False, True) [set-up]"
    )

    with pytest.raises(multilr.MultiLRError) as err:
        multilr.build(model, spec, backend="torch")

    assert isinstance(err.value, error), f"got {type(err.value).__name__}, should be {error.__name__}"
    for word in words:
        assert word in str(err.value), f"got message {str(err.value)!r}, should contain {word}"
    now = {n: p.requires_grad for n, p in model.named_parameters()}
    changed = sorted(n for n in flags if flags[n] != now[n])
    assert not changed, f"got requires_grad flipped on {changed[:5]}, should be unchanged [failed build]"
    diff = _same(values, model.state_dict())
    assert not diff, f"got model tensors changed at {diff[:5]}, should be unchanged [failed build]"
    diff = _same(opt_state, opt.state_dict())
    assert not diff, f"got the earlier optimizer changed at {diff[:5]}, should be unchanged [failed build]"


def test_emit_validates_before_freezing() -> None:
    """A plan that no longer fits the model fails in emit before any tensor is frozen.

    The frozen group (the stem) comes first and the missing tensor (``fc``) last, so an
    emit that froze as it went would leave the stem frozen.
    """
    planned = models.resnet18(width=4)
    plan = multilr.plan(planned, Spec(lr=0.1, rules=[Rule(Prefix("conv1"), frozen=True)]))
    assert plan.groups[0].frozen, "test set-up: the first group should be the frozen stem"
    other = models.resnet18(width=4)
    other.fc = torch.nn.Identity()
    with pytest.raises(multilr.BackendError, match=r"'fc\.weight'.*changed after planning"):
        TorchBackend().emit(other, plan)
    assert other.conv1.weight.requires_grad, "got conv1.weight frozen by a failed emit, should be trainable"


def test_unknown_backend_lists_installed() -> None:
    model = models.mlp()
    with pytest.raises(multilr.BackendNotFoundError) as err:
        multilr.build(model, Spec(lr=0.1), backend="nope")
    msg = str(err.value)
    assert "'nope'" in msg, f"got message {msg!r}, should name the backend asked for"
    assert re.search(r"installed backends: [^;]*\btorch\b", msg), (
        f"got message {msg!r}, should list 'torch' among the installed backends"
    )
    assert isinstance(err.value, ValueError), "got a non-ValueError, should be a ValueError subclass"
    assert all(p.requires_grad for p in model.parameters()), "got frozen flags set, should be untouched"


def test_known_but_missing_backend_names_package() -> None:
    installed = {ep.name for ep in importlib.metadata.entry_points(group="multilr.backends")}
    if "oneflow" in installed or importlib.util.find_spec("oneflow") is not None:
        pytest.skip("oneflow is installed here; the not-installed message cannot be seen")
    with pytest.raises(multilr.BackendNotFoundError) as err:
        multilr.build(models.mlp(), Spec(lr=0.1), backend="oneflow")
    msg = str(err.value)
    assert "multilr-oneflow" in msg, f"got message {msg!r}, should name the package 'multilr-oneflow'"
    assert "not installed" in msg, f"got message {msg!r}, should say it is not installed"


NOT_MODULES = [
    pytest.param(lambda: object(), "object", id="object"),
    pytest.param(lambda: models.mlp().parameters(), "generator", id="parameters-generator"),
    pytest.param(lambda: list(models.mlp().parameters()), "list", id="list-of-tensors"),
    pytest.param(lambda: models.mlp().state_dict(), "OrderedDict", id="state-dict"),
    pytest.param(lambda: TorchBackend().extract(models.mlp()), "list", id="paraminfo-list"),
]


@pytest.mark.parametrize(("make", "type_name"), NOT_MODULES)
def test_non_module_refused(make: Any, type_name: str) -> None:
    with pytest.raises(multilr.BackendError) as err:
        multilr.build(make(), Spec(lr=0.1), backend="torch")
    msg = str(err.value)
    assert "torch.nn.Module" in msg and type_name in msg, (
        f"got message {msg!r}, should say it needs a torch.nn.Module and got a {type_name}"
    )


def test_backend_instance_accepted() -> None:
    model = models.mlp()
    groups = multilr.build(model, Spec(lr=0.1), backend=TorchBackend())
    assert groups.backend == "torch", f"got backend {groups.backend!r}, should be 'torch'"


def test_lazy_module_raises_backend_error() -> None:
    """An uninitialized (lazy) parameter has no shape yet: a MultiLRError, not torch's RuntimeError.

    ``multilr.errors``: "Every error multilr raises on bad input is a MultiLRError".
    """
    model = torch.nn.Sequential(torch.nn.LazyLinear(3), torch.nn.Linear(3, 1))
    try:
        multilr.build(model, Spec(lr=0.1), backend="torch")
    except multilr.BackendError as exc:
        assert "0.weight" in str(exc), f"got message {str(exc)!r}, should name the lazy parameter '0.weight'"
    except Exception as exc:
        pytest.fail(f"got {type(exc).__name__}: {exc}, should be multilr.BackendError [lazy module]")
    else:
        pytest.fail("got groups for a model with uninitialized parameters, should be a BackendError")
