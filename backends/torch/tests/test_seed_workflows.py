"""Seeds 001, 002 and 004 as one spec plus a few lines (examples/seed_workflows.py) on torch.

The rates each step trained at are checked against the seeds' own formulas written out
here (not against multilr's), and against ``planned_rates``. The OneFlow runs (eager and
nn.Graph, or its refusal) are in backends/oneflow/tests/test_seed_workflows_oneflow.py.
"""

from __future__ import annotations

import math

import pytest
import seed_workflows
import torch

import multilr


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    return {seed: seed_workflows.run(seed, "torch") for seed in ("001", "002", "004")}


def test_seed_001_every_tensor_at_its_rate_over_i_plus_1(runs: dict) -> None:
    start = {"layer1.weight": 0.01, "layer1.bias": 0.1, "layer2.weight": 0.001, "layer2.bias": 1.0}
    for i, rates in enumerate(runs["001"]["rates"]):
        want = {f"rates[{n}]": r / (i + 1) for n, r in start.items()}
        assert rates == pytest.approx(want, rel=1e-12), f"step {i}"


def test_seed_002_each_part_decays_by_its_own_factor_every_10_steps(runs: dict) -> None:
    for t, rates in enumerate(runs["002"]["rates"]):
        want = {"features": 0.005 * 0.9 ** (t // 10), "classifier": 0.05 * 0.7 ** (t // 10)}
        assert rates == pytest.approx(want, rel=1e-12), f"step {t}"


def test_seed_004_stages_and_sgdr_keep_10x_per_block(runs: dict) -> None:
    # torch's own SGDR on a single rate gives the factor; the stages give the start steps
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sgdr = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=2)
    factors = []
    for _ in range(30):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        sgdr.step()
    starts = {4: 0, 3: 10, 2: 20, 1: 20, 0: 20}
    for t, rates in enumerate(runs["004"]["rates"]):
        for name, rate in rates.items():
            depth = int(name.split("/")[0].removeprefix("depth"))
            want = 0.05 * 0.1 ** (4 - depth) * factors[t] if t >= starts[depth] else 0.0
            assert math.isclose(rate, want, rel_tol=1e-9, abs_tol=1e-15), (
                f"{name} at step {t}: {rate} vs {want}"
            )


@pytest.mark.parametrize("seed", ["001", "002", "004"])
def test_the_run_trains_at_the_planned_rates(runs: dict, seed: str) -> None:
    model = seed_workflows.make_model(torch, seed)
    plan = multilr.build(model, multilr.Spec.from_yaml(seed_workflows.SPECS[seed])).plan
    planned = multilr.planned_rates(plan, len(runs[seed]["rates"]))
    for t, rates in enumerate(runs[seed]["rates"]):
        assert rates == pytest.approx(planned.at(t), rel=1e-12), f"step {t}"
    assert all(math.isfinite(v) for v in runs[seed]["losses"])


def test_seed_004_finder_leaves_the_run_as_it_was(runs: dict) -> None:
    without = seed_workflows.run("004", "torch", finder=False)
    assert runs["004"]["losses"] == without["losses"], "the finder changed the training that followed"
    assert runs["004"]["rates"] == without["rates"]
    assert 1e-4 < runs["004"]["suggestion"] < 10
