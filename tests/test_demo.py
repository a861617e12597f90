"""The digits demo (examples/digits_finetune.py) runs, and multilr's frozen stem stays put."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _import(folder: Path, name: str) -> ModuleType:
    # The examples are scripts, not a package: they import their helpers as `_digits`,
    # which works when their own folder is on sys.path, as it is for `python examples/...`.
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def quick_run() -> dict[str, Any]:
    demo = _import(EXAMPLES, "digits_finetune")
    result: dict[str, Any] = demo.main(["--quick"])
    return result


def test_demo_returns_accuracies(quick_run: dict[str, Any]) -> None:
    for key in ("pretrain_acc", "baseline_acc", "multilr_acc"):
        acc = quick_run[key]
        assert isinstance(acc, float), key
        assert 0.0 <= acc <= 1.0, (key, acc)
    # five classes: anything that learned at all is far above chance (0.2)
    assert quick_run["pretrain_acc"] > 0.5


def _stem(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("stem.")}


def test_multilr_stem_is_frozen(quick_run: dict[str, Any]) -> None:
    models = quick_run["models"]
    before, after = _stem(models["pretrained"]), _stem(models["multilr"])
    assert sorted(before) == ["stem.0.bias", "stem.0.weight", "stem.1.bias", "stem.1.weight"]
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), f"{name} changed during multilr fine-tuning"
    assert not any(p.requires_grad for n, p in models["multilr"].named_parameters() if n.startswith("stem."))


def test_baseline_stem_moves(quick_run: dict[str, Any]) -> None:
    # guards the test above: the same comparison does see a change when nothing is frozen
    models = quick_run["models"]
    before, after = _stem(models["pretrained"]), _stem(models["baseline"])
    assert not torch.equal(after["stem.0.weight"], before["stem.0.weight"])


def test_demo_model_depths() -> None:
    import models

    import multilr

    model = models.digits_cnn(5)
    p = multilr.plan(model, multilr.Spec(lr=1.0, layer_decay=multilr.LayerDecay(0.5)))
    got = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else ""): p.param(n).depth
           for n, _ in model.named_parameters()}
    assert got == {"stem": 0, "blocks.0": 1, "blocks.1": 2, "blocks.2": 3, "head": 4}, f"got {got}"
    assert len(p.params) == 24
