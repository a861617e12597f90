"""The three stand-alone examples, run end to end as a user runs them, and what they print.

Each example runs once, in a subprocess, as a user runs it (``sys.executable
examples/X.py``, from an empty working directory that must stay empty, no bytecode
written, the Hugging Face hub offline). The test reads its tables back by column (the
dashes under each header give the columns) and compares the numbers with formulas
written out here, not with multilr's, so a wrong plan and a wrong printout both fail:

* ``bert_layer_decay.py``: every layer's rate read back from a real SGD step equals
  ``lr * 0.75 ** (5 - depth)``, and fine-tuning learns the generated task;
* ``resnet_seed000.py``: seed 000's hand-written rates and the one-line spec both equal
  ``0.01 * 0.9 ** k``, block by block and tensor by tensor, and both trainings end alike;
* ``staged_unfreezing_sgdr.py``: each layer moves from its stage's epoch on and not
  before, at ``0.2 * 0.1 ** (4 - depth)`` times torch's own SGDR factor, 0 while frozen.

Tolerances: the examples print 7 (bert), 8 (resnet) and 3 (staged) significant digits,
so a printed value is within 5e-7, 5e-8 and 5e-3 of the true one, relative; the checks
allow twice that. The smallest real error they guard against, a rate one depth off, is
10% (x0.9) to 90% (x0.1) off.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


def _files(folder: Path) -> set[str]:
    """Files in ``folder`` and below, bytecode caches left out (pytest's collection writes those)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


def run_example(name: str, cwd: Path) -> str:
    """Run ``examples/<name>.py`` as a user would, from ``cwd``; its stdout.

    No bytecode is written next to the examples; the hub stays offline (nothing may be
    downloaded). Writes into ``cwd`` or ``examples/`` fail the test.
    """
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    before = _files(ROOT / "examples")
    # the timeout only stops a hung run; nothing here depends on how long a run takes
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}, should be 0:\n{proc.stdout}\n{proc.stderr}"
    written = sorted(_files(ROOT / "examples") - before) + sorted(p.name for p in cwd.iterdir())
    assert not written, f"{name} wrote {written}, should write nothing"
    return proc.stdout


def table(text: str, first_column: str) -> list[dict[str, str]]:
    """The rows of the plain table whose header starts with ``first_column``, as column -> cell."""
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.split("  ")[0] == first_column and set(lines[i + 1]) <= {"-", " "} and "-" in lines[i + 1]:
            spans, start = [], None
            dashes = lines[i + 1] + " "
            for j, c in enumerate(dashes):
                if c == "-" and start is None:
                    start = j
                elif c == " " and start is not None:
                    spans.append((start, j))
                    start = None
            names = [line[a:b].strip() for a, b in spans]
            rows = []
            for row in lines[i + 2 :]:
                if not row.strip():
                    break
                rows.append({n: row[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)})
            assert rows, f"table {first_column!r} has no rows"
            return rows
    raise AssertionError(f"no table starting with column {first_column!r} in:\n{text}")


def close(got: str, want: float, rel: float, context: str) -> None:
    assert math.isclose(float(got), want, rel_tol=rel, abs_tol=0.0), f"got {got}, should be {want:.8g} [{context}]"


# -- bert_layer_decay.py ---------------------------------------------------------------


def bert_measured_rates_are_the_layer_decay(text: str) -> None:
    rows = {r["layer"]: r for r in table(text, "layer")}
    depth = {"embeddings": 0, **{f"layer.{i}": i + 1 for i in range(4)}, "pooler": 5, "classifier": 5}
    assert list(rows) == list(depth), f"got layers {list(rows)}, should be {list(depth)}"
    for layer, d in depth.items():
        want = 5e-3 * 0.75 ** (5 - d)  # the example's defaults: lr 5e-3, decay 0.75, 5 = top depth
        row = rows[layer]
        assert row["depth"] == str(d), f"got depth {row['depth']}, should be {d} [{layer}]"
        for column in ("planned lr", "measured min", "measured max"):
            close(row[column], want, 1e-6, f"{layer}, {column}")
        # the example's own read-back error (float64 rounding, at most 1e-10 measured)
        assert float(row["max rel err"]) <= 1e-6, f"got {row['max rel err']}, should be <= 1e-6 [{layer}]"
    assert "73 of 73 tensors had a gradient" in text


def bert_fine_tuning_learns(text: str) -> None:
    rows = {r["when"]: r for r in table(text, "when")}
    assert set(rows) == {"before", "after"}
    for when, row in rows.items():
        for column in ("train acc", "test acc"):
            assert 0.0 <= float(row[column]) <= 1.0, f"got {row[column]}, should be in [0, 1] [{when} {column}]"
    # the label is one bit of the first token: a model that learnt nothing stays near 0.5
    assert float(rows["after"]["test acc"]) >= 0.9, f"got test acc {rows['after']['test acc']}, should be >= 0.9"
    assert float(rows["after"]["train loss"]) < float(rows["before"]["train loss"])


# -- resnet_seed000.py -----------------------------------------------------------------


def seed000_rates_agree_per_block(text: str) -> None:
    rows = table(text, "block")
    blocks = ["fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]  # the seed's order, head first
    assert [r["block"] for r in rows] == blocks
    for k, row in enumerate(rows):
        want = 1e-2 * 0.9**k
        for column in ("seed 000 by hand", 'depth="top"'):
            close(row[column], want, 1e-7, f"{row['block']}, {column}")
        assert row["same"] == "yes"
    assert sum(int(r["tensors"]) for r in rows) == 62
    assert "x0.9 per top-level block: 62 of 62 tensors at the same rate" in text


def seed000_rates_agree_per_tensor(text: str) -> None:
    rows = [r for r in table(text, "tensor") if not r["tensor"].startswith("...")]
    assert [r["tensor"] for r in rows] == ["fc.bias", "fc.weight", "layer4.1.bn2.bias", "layer4.1.bn2.weight",
                                          "bn1.bias", "bn1.weight", "conv1.weight"]
    for i, row in zip([0, 1, 2, 3, 59, 60, 61], rows, strict=True):  # position in the reversed list
        for column in ("seed 000 by hand", 'depth="tensor"'):
            close(row[column], 1e-2 * 0.9**i, 1e-7, f"{row['tensor']}, {column}")
    assert "x0.9 per tensor: 62 of 62 tensors at the same rate" in text


def seed000_trainings_end_alike(text: str) -> None:
    rows = {r["run"]: r for r in table(text, "run")}
    assert set(rows) == {"seed 000 by hand", "multilr one line"}
    hand, mine = rows["seed 000 by hand"], rows["multilr one line"]
    assert (hand["groups"], mine["groups"]) == ("62", "7")
    for column in ("last epoch loss", "train acc", "test acc"):
        assert hand[column] == mine[column], f"got {mine[column]}, should be {hand[column]} [{column}]"
    for column in ("train acc", "test acc"):
        assert 0.0 <= float(mine[column]) <= 1.0
    assert float(mine["test acc"]) > 0.5, "ten classes: chance is 0.1; the run did not learn"
    # equal rates, same weights, same batches: Adam computes the same numbers (measured: 0);
    # a rate one ulp off would drift by far less than 1e-5 in 3 epochs, a wrong depth far more
    diff = float(text.split("largest weight difference between the two runs:")[1].split()[0])
    assert diff <= 1e-5, f"got weight difference {diff}, should be <= 1e-5"


# -- staged_unfreezing_sgdr.py ---------------------------------------------------------


def _sgdr_factors(steps: int, period: int) -> list[float]:
    """torch's own CosineAnnealingWarmRestarts on one group of rate 1: the factor per step."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=period)
    factors = []
    for _ in range(steps):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return factors


def staged_layers_wait_for_their_stage_then_train(text: str) -> None:
    rows = table(text, "epoch")
    layers = {"stem": (0, 9), "blocks.0": (1, 9), "blocks.1": (2, 6), "blocks.2": (3, 3), "head": (4, 0)}
    spe = 4  # ceil(100 images / batch 32)
    factors = _sgdr_factors(12 * spe, 3 * spe)  # restarts every 3 epochs, on the stages
    assert [r["epoch"] for r in rows] == [str(e) for e in range(12)]
    for row in rows:
        epoch = int(row["epoch"])
        moved = set(row["moved"].split(", "))
        want_moved = {name for name, (_, start) in layers.items() if epoch >= start}
        assert moved == want_moved, f"epoch {epoch}: got {sorted(moved)} moving, should be {sorted(want_moved)}"
        for name, (depth, start) in layers.items():
            want = 0.2 * 0.1 ** (4 - depth) * factors[epoch * spe] if epoch >= start else 0.0
            got = float(row[name])
            assert math.isclose(got, want, rel_tol=1e-2, abs_tol=0.0), (
                f"epoch {epoch}, {name}: got rate {got}, should be {want:.3e}"
            )
        assert 0.0 <= float(row["test acc"]) <= 1.0
    assert float(rows[-1]["test acc"]) > float(rows[0]["test acc"]), "fine-tuning did not improve accuracy"
    assert "rates used == multilr.planned_rates: yes (48 steps x 10 groups" in text
    assert "every layer frozen until its stage, then training: yes" in text


# -- the tests -------------------------------------------------------------------------

#: Per example: the first column of every table it must print, and the checks of its numbers.
CHECKS: dict[str, tuple[list[str], list[Callable[[str], None]]]] = {
    "bert_layer_decay": (["#", "layer", "when"],
                         [bert_measured_rates_are_the_layer_decay, bert_fine_tuning_learns]),
    "resnet_seed000": (["block", "tensor", "run"],
                       [seed000_rates_agree_per_block, seed000_rates_agree_per_tensor, seed000_trainings_end_alike]),
    "staged_unfreezing_sgdr": (["#", "epoch"], [staged_layers_wait_for_their_stage_then_train]),
}


@pytest.mark.parametrize("name", list(CHECKS), ids=[n.replace("_", "-") for n in CHECKS])
def test_example(name: str, tmp_path: Path) -> None:
    """One run per example (so parallel workers never run one twice), every check on its output."""
    text = run_example(name, tmp_path)
    headers, checks = CHECKS[name]
    for first in headers:
        table(text, first)
    assert "NO" not in text.split(), f"{name} reports a failed check of its own:\n{text}"
    for check in checks:
        check(text)

