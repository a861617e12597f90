"""The digits demo (`multilr demo`, multilr_torch.demo) runs, reports, plots, and its frozen stem stays put."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
import torch

from multilr.cli import main, progress

demo = pytest.importorskip("multilr_torch.demo")
pytest.importorskip("sklearn")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, str]:
    out = tmp_path_factory.mktemp("demo")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout):
        result = demo.run(epochs=demo.QUICK_EPOCHS, out=out, progress=progress(stream=stderr, interval=0))
    return result, stdout.getvalue(), stderr.getvalue()


def test_demo_returns_accuracies(quick_run: tuple[Any, str, str]) -> None:
    result = quick_run[0]
    for acc in (result.pretrain_acc, result.uniform.final_acc, result.multilr.final_acc):
        assert isinstance(acc, float) and 0.0 <= acc <= 1.0, acc
    # five classes: anything that learned at all is far above chance (0.2)
    assert result.pretrain_acc > 0.5
    assert [e for e, _, _ in result.multilr.history] == [1, 2, 3]
    assert result.gain == result.multilr.final_acc - result.uniform.final_acc


def test_demo_prints_plan_epochs_and_results(quick_run: tuple[Any, str, str]) -> None:
    result, out, err = quick_run
    assert result.plan.table(rich=False) in out
    assert "  multilr  epoch  3/3  train loss " in out and "  uniform  epoch  1/3  train loss " in out
    table = out[out.index("uniform rate vs multilr spec"):].splitlines()[1:5]
    assert table == result.table().splitlines()
    assert table[0].split() == ["run", "rates", "final", "acc", "best", "acc", "gain", "(final)"]
    assert table[3].split()[-3:] == [f"{result.multilr.final_acc:.4f}", f"{result.multilr.best_acc:.4f}",
                                     f"{result.gain:+.4f}"]
    # progress went to stderr, never mixed into the results on stdout
    assert "pretrain: 1/" in err and "multilr: 12/12 done in " in err and "pretrain:" not in out


def test_demo_writes_the_plots(quick_run: tuple[Any, str, str]) -> None:
    result, out, _ = quick_run
    assert sorted(result.files) == ["accuracy", "rates"]
    for path in result.files.values():
        assert path.read_bytes()[:8] == PNG and f"plot: {path}" in out


def _stem(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("stem.")}


def test_multilr_stem_is_frozen(quick_run: tuple[Any, str, str]) -> None:
    models = quick_run[0].models
    before, after = _stem(models["pretrained"]), _stem(models["multilr"])
    assert sorted(before) == ["stem.0.bias", "stem.0.weight", "stem.1.bias", "stem.1.weight"]
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), f"{name} changed during multilr fine-tuning"
    assert not any(p.requires_grad for n, p in models["multilr"].named_parameters() if n.startswith("stem."))


def test_uniform_stem_moves(quick_run: tuple[Any, str, str]) -> None:
    # guards the test above: the same comparison does see a change when nothing is frozen
    models = quick_run[0].models
    before, after = _stem(models["pretrained"]), _stem(models["uniform"])
    assert not torch.equal(after["stem.0.weight"], before["stem.0.weight"])


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--epochs", "1", "--out", str(tmp_path), "--quiet", "--seed", "1"]) == 0
    out, err = capsys.readouterr()
    assert "multilr plan: base lr 0.003, 24 tensors, 10 groups" in out
    assert "uniform rate vs multilr spec" in out and "\nmultilr  stem frozen, blocks x0.5 per level" in out
    assert " epoch " not in out and err == ""  # --quiet: no per-epoch lines, no progress
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == PNG


def test_the_example_is_the_demo() -> None:
    import digits_finetune  # examples/digits_finetune.py, on pytest's pythonpath

    assert digits_finetune.run is demo.run and digits_finetune.finder_job is demo.finder_job


def test_demo_model_depths() -> None:
    import models

    import multilr

    model = models.digits_cnn(5)
    p = multilr.plan(model, multilr.Spec(lr=1.0, layer_decay=multilr.LayerDecay(0.5)))
    got = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else ""): p.param(n).depth
           for n, _ in model.named_parameters()}
    assert got == {"stem": 0, "blocks.0": 1, "blocks.1": 2, "blocks.2": 3, "head": 4}, f"got {got}"
    assert len(p.params) == 24
