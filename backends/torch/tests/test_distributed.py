"""multilr inside torch's data-parallel engines: DDP and FSDP2, gloo on CPU, 2 real processes.

One launch of ``_dist_worker.py`` per rank runs every scenario (a few seconds of work;
most of the time is two processes importing torch); each test reads what the ranks
recorded and compares it with the same training in this process on the whole batch:

- DDP: every rank builds the same plan, the rate each tensor moved at (read from its
  update) is the plan's, and the parameters equal the single-process run's;
- FSDP2 (``fully_shard``): the plan built after sharding (DTensor parameters) equals
  the one before (names and global shapes kept), and the run equals one process;
- staged unfreezing after wrapping, with ``Controller(freeze_by="grad")``: no error
  (``find_unused_parameters=False``), the group list never grows, the ranks stay
  identical and equal one process; with the default ``freeze_by="requires_grad"`` the
  stage's tensors are never all-reduced and the ranks drift apart (why the mode exists).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import multilr
from multilr import planned_rates
from multilr.testing import state_figure

from . import _dist_worker as W  # a sibling module (pytest's importlib mode allows this)

WORKER = Path(__file__).with_name("_dist_worker.py")
LAUNCH_TIMEOUT_S = 240  # two torch imports on a loaded 2-core machine take ~30 s; a hang fails, not blocks
RATE_TOL = 1e-9  # float64: a rank differs from one process by the order of two sums only
PARAM_TOL = 1e-12


def _launch(out: Path) -> str:
    """Run both ranks into ``out``; an error message, or ``""`` when both finished."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    procs = []
    for rank in range(W.WORLD):
        with open(out / f"rank{rank}.log", "wb") as log:  # a file, not a pipe: a full pipe would block a rank
            cmd = [sys.executable, str(WORKER), str(rank), str(out / "store"), str(out)]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    try:
        for p in procs:
            p.wait(timeout=max(1.0, LAUNCH_TIMEOUT_S - (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.wait()
        return f"the ranks did not finish in {LAUNCH_TIMEOUT_S} s (a collective hung?)"
    (out / "seconds").write_text(f"{time.perf_counter() - start:.1f}")
    return "\n".join(
        f"rank {r} exited with {p.returncode}:\n{(out / f'rank{r}.log').read_text(errors='replace')[-4000:]}"
        for r, p in enumerate(procs)
        if p.returncode
    )


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every scenario's record per rank, from one launch of both ranks.

    Under pytest-xdist (``make test`` runs ``-n 2``) this module's tests may land on both
    workers; the first to get here launches, the other waits on a lock and reads the same
    files (the pytest-xdist recipe for a fixture that must run once).
    """
    from filelock import FileLock  # a dependency of torch

    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        out = tmp_path_factory.mktemp("dist")
    else:
        out = tmp_path_factory.getbasetemp().parent / f"multilr-dist-{run}"
        out.mkdir(exist_ok=True)
    with FileLock(str(out / "launch.lock")):
        if not (out / "result").exists():
            (out / "result").write_text(_launch(out))
    error = (out / "result").read_text()
    if error:
        pytest.fail(error)
    records = {
        name: [torch.load(out / f"{name}-rank{r}.pt", weights_only=False) for r in range(W.WORLD)]
        for name in W.SCENARIOS
    }
    records["_launch"] = [{"seconds": float((out / "seconds").read_text())}]
    return records


@pytest.fixture(scope="module")
def references() -> dict[str, dict[str, Any]]:
    """The single-process runs on the whole batch, with the default Controller."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: W.reference(name) for name in ("ddp", "stages-grad")}
    finally:
        torch.set_num_threads(before)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _ranks_identical(recs: list[dict[str, Any]]) -> int:
    """How many (tensor, step) pairs were compared; fails on the first that differs between ranks."""
    compared = 0
    for t, params in enumerate(recs[0]["params"]):
        for other in recs[1:]:
            for n, p in params.items():
                assert torch.equal(p, other["params"][t][n]), f"{n} after {t} steps differs between ranks"
                compared += 1
    return compared


def _max_param_diff(rec: dict[str, Any], ref: dict[str, Any]) -> float:
    assert len(rec["params"]) == len(ref["params"])
    return max(
        _rel(p, ref["params"][t][n]) for t, params in enumerate(rec["params"]) for n, p in params.items()
    )


def _effective_rates(rec: dict[str, Any], plan: multilr.Plan) -> tuple[int, float, int]:
    """SGD without momentum: ``before - after = rate x (grad + wd x before)``; the rate is fitted.

    Returns the (tensor, step) rates compared with the plan, the largest relative
    difference, and the frozen (tensor, step) pairs checked to be bit-identical.
    """
    expected = planned_rates(plan, len(rec["grads"]), W.SCHEDULE).rates
    compared, worst, frozen = 0, 0.0, 0
    for t, grads in enumerate(rec["grads"]):
        before, after = rec["params"][t], rec["params"][t + 1]
        for p in plan.params:
            if p.frozen:
                assert torch.equal(before[p.name], after[p.name]), f"frozen {p.name} moved at step {t}"
                frozen += 1
                continue
            u = grads[p.name] + p.weight_decay * before[p.name]
            rate = float(((before[p.name] - after[p.name]) * u).sum() / (u * u).sum())
            want = expected[p.group][t]
            diff = abs(rate - want) / want
            assert diff < RATE_TOL, f"got rate {rate} for {p.name} at step {t}, should be {want} ({p.group})"
            compared += 1
            worst = max(worst, diff)
    return compared, worst, frozen


def _as_one_process(
    recs: list[dict[str, Any]], plan: multilr.Plan, references: dict[str, Any]
) -> tuple[int, int, float, float]:
    """A RATES_SPEC run on the ranks: identical ranks, the plan's rates, a still stem, one process's parameters.

    Returns the (tensor, step) pairs compared across ranks, the rates compared with the
    plan, their largest relative difference, and the parameters' from one process.
    """
    pairs = _ranks_identical(recs)
    compared, worst, frozen = _effective_rates(recs[0], plan)
    diff = _max_param_diff(recs[0], references["ddp"])
    assert diff < PARAM_TOL, f"got parameters {diff:.2e} (relative) away from the single-process run"
    assert compared == (len(plan.params) - 2) * W.RATE_STEPS and frozen == 2 * W.RATE_STEPS
    return pairs, compared, worst, diff


def test_ddp_every_rank_builds_the_same_plan_and_trains_at_its_rates(ranks, references) -> None:
    recs = ranks["ddp"]
    plan = multilr.plan(W.make_model(), W.RATES_SPEC, backend="torch")
    plans = [p for rec in recs for p in rec["plans"]]
    same = sum(p == plan.to_json() for p in recs[0]["plans"])
    assert all(p == plan.to_json() for p in plans), "the ranks built different plans"
    assert all(rec["plan_through_ddp"] == plan.to_json() for rec in recs), (
        "built through DDP, the plan differs"
    )
    assert all(rec["same_tensors_through_ddp"] for rec in recs)
    for rec in recs:
        # STAGED_SPEC freezes the backbone, which DDP registered as trainable
        assert rec["freeze_refused"].startswith(
            "build from the model before wrapping it in DistributedDataParallel"
        )
        assert "freezes 'blocks.0.0.weight' and 11 more" in rec["freeze_refused"], rec["freeze_refused"]
        assert rec["emit_refused"] == rec["freeze_refused"]
        assert rec["untouched_after_refusal"]
    assert all(rec["groups"] == [len(plan.groups)] * W.RATE_STEPS for rec in recs)
    pairs, _, worst, diff = _as_one_process(recs, plan, references)
    state_figure(
        "distributed.1-ddp",
        f"distributed: DDP gloo {W.WORLD} ranks: plans identical {same}/{W.WORLD}; {len(plan.params) - 2} tensors "
        f"x {W.RATE_STEPS} steps rates compared with the plan, max rel diff {worst:.1e}; 2 frozen tensors "
        f"bit-identical; parameters vs one process max rel diff {diff:.1e}; ranks bit-identical ({pairs} "
        f"tensor-steps)",
    )


def test_fsdp2_plan_before_and_after_sharding_agree_and_rates_equal_one_process(ranks, references) -> None:
    recs = ranks["fsdp2"]
    plan = multilr.plan(W.make_model(), W.RATES_SPEC, backend="torch")
    assert recs[0]["tensor_types"] == ["DTensor"], "fully_shard did not shard the parameters"
    for rec in recs:
        # the extraction sees DTensors' global shapes and the unchanged names
        assert rec["plan_before_sharding"] == plan.to_json()
        assert rec["plans"] == [plan.to_json()] * W.WORLD, "the plan built after fully_shard differs"
        # fully_shard replaces the parameters: groups built before it train nothing
        assert rec["prebuilt_still_live"] == 0
    pairs, compared, worst, diff = _as_one_process(recs, plan, references)
    state_figure(
        "distributed.2-fsdp2",
        f"distributed: FSDP2 fully_shard gloo {W.WORLD} ranks (DTensor parameters): plan after sharding == before "
        f"on {W.WORLD}/{W.WORLD} ranks (names, global shapes); {compared} tensor-steps rates compared, max rel "
        f"diff {worst:.1e}; parameters vs one process max rel diff {diff:.1e}; full tensors identical across "
        f"ranks ({pairs} tensor-steps)",
    )


def test_fsdp1_trains_at_the_plans_rates_when_built_before_wrapping(ranks, references) -> None:
    recs = ranks["fsdp1"]
    plan = multilr.plan(W.make_model(), W.RATES_SPEC, backend="torch")
    for rec in recs:
        # its names carry _fsdp_wrapped_module.; a plan of them would match no rule of the spec
        assert rec["refused"].startswith(
            "parameter '_fsdp_wrapped_module.stem.weight' is inside FullyShardedDataParallel"
        )
        # and, use_orig_params or not, its tensors are flat shards between steps: a 2-D
        # weight reads 1-D, which no_decay's "other 1-D tensors" class would misfile
        shapes = rec["shapes_through_fsdp1"]
        assert len(shapes["_fsdp_wrapped_module.stem.weight"]) == 1, shapes
        assert rec["groups_hold_live_tensors"], (
            "FSDP1 (use_orig_params=True) replaced the tensors the groups hold"
        )
        assert rec["groups"] == [len(plan.groups)] * W.RATE_STEPS
    pairs, compared, worst, diff = _as_one_process(recs, plan, references)
    state_figure(
        "distributed.2b-fsdp1",
        f"distributed: FSDP1 (use_orig_params=True, built before wrapping) gloo {W.WORLD} ranks: a build "
        f"through it refused on {W.WORLD}/{W.WORLD} ranks; {compared} tensor-steps rates compared with the "
        f"plan, max rel diff {worst:.1e}; 2 frozen tensors bit-identical; parameters vs one process max rel "
        f"diff {diff:.1e}; ranks identical ({pairs} tensor-steps)",
    )


def test_staged_unfreezing_under_ddp_with_grad_freezing(ranks, references) -> None:
    recs, ref = ranks["stages-grad"], references["stages-grad"]
    plan = multilr.plan(W.make_model(), W.STAGED_SPEC, backend="torch")
    backbone = [p.name for p in plan.params if p.name.startswith("blocks")]
    for rec in recs:
        assert rec["groups"] == [len(plan.groups)] * W.STAGE_STEPS, "the optimizer's group list changed"
        # the stage's tensors were registered with DDP: requires_grad from the first step
        assert all(rec["requires_grad"][0][n] for n in backbone)
    start = recs[0]["params"][0]
    moved = [any(not torch.equal(recs[0]["params"][t + 1][n], start[n]) for n in backbone) for t in range(3)]
    assert moved == [False, False, True], f"got backbone moving after steps {moved}, should start at step 2"
    head = [recs[0]["params"][t]["head.weight"] for t in range(W.FREEZE_HEAD_AT, W.STAGE_STEPS + 1)]
    frozen_steps = W.THAW_HEAD_AT - W.FREEZE_HEAD_AT
    assert all(torch.equal(h, head[0]) for h in head[: frozen_steps + 1]), (
        "the head moved while frozen under DDP"
    )
    assert not torch.equal(head[-1], head[0]), "the head did not train again after unfreeze"
    pairs = _ranks_identical(recs)
    diff = _max_param_diff(recs[0], ref)
    assert diff < PARAM_TOL, f"got parameters {diff:.2e} (relative) away from the single-process run"
    drift = _drift(ranks["stages-requires_grad"], backbone)
    assert drift > 1e-3, f"got ranks {drift:.1e} apart: the default mode should drift under DDP"
    state_figure(
        "distributed.3-stages",
        f"distributed: staged unfreezing under DDP (stage at step 2, head frozen by hand at step "
        f"{W.FREEZE_HEAD_AT} and thawed at {W.THAW_HEAD_AT}, {W.STAGE_STEPS} steps, AdamW): freeze_by='grad': no error, "
        f"{len(plan.groups)} groups throughout, ranks bit-identical ({pairs} tensor-steps), vs one process max "
        f"rel diff {diff:.1e}; freeze_by='requires_grad': the unfrozen backbone is never all-reduced, "
        f"ranks {drift:.1e} apart (relative); {len(W.SCENARIOS)} scenarios in one launch of 2 processes, "
        f"{ranks['_launch'][0]['seconds']:.0f} s",
    )


def _drift(recs: list[dict[str, Any]], names: list[str]) -> float:
    last = [rec["params"][-1] for rec in recs]
    return max(_rel(last[1][n], last[0][n]) for n in names)


def test_requires_grad_mode_under_ddp_leaves_the_stage_unsynchronised(ranks, references) -> None:
    """The failure the grad mode exists for, shown: ranks agree until the stage, then drift."""
    recs = ranks["stages-requires_grad"]
    plan = multilr.plan(W.make_model(), W.STAGED_SPEC, backend="torch")
    backbone = [p.name for p in plan.params if p.name.startswith("blocks")]
    assert not any(recs[0]["requires_grad"][0][n] for n in backbone)  # DDP wrapped them frozen
    same_until_stage = all(
        torch.equal(recs[0]["params"][t][n], recs[1]["params"][t][n]) for t in range(3) for n in backbone
    )
    assert same_until_stage
    assert _drift(recs, backbone) > 1e-3
    assert all(rec["groups"] == [len(plan.groups)] * W.STAGE_STEPS for rec in recs)


@pytest.mark.parametrize("freeze_by", ["grad", "requires_grad"])
def test_staged_unfreezing_under_fsdp2(ranks, references, freeze_by: str) -> None:
    """FSDP2 reduces whatever has a gradient at each backward: both modes stay synchronised."""
    recs, ref = ranks[f"fsdp2-stages-{freeze_by}"], references["stages-grad"]
    plan = multilr.plan(W.make_model(), W.STAGED_SPEC, backend="torch")
    assert all(rec["groups"] == [len(plan.groups)] * W.STAGE_STEPS for rec in recs)
    pairs = _ranks_identical(recs)
    diff = _max_param_diff(recs[0], ref)
    assert diff < PARAM_TOL, f"got parameters {diff:.2e} (relative) away from the single-process run"
    state_figure(
        f"distributed.4-fsdp2-stages-{freeze_by}",
        f"distributed: staged unfreezing under FSDP2, freeze_by={freeze_by!r} (stage at step 2, head frozen by "
        f"hand at {W.FREEZE_HEAD_AT} and thawed at {W.THAW_HEAD_AT}): {len(plan.groups)} groups throughout, "
        f"ranks identical ({pairs} tensor-steps), vs one process max rel diff {diff:.1e}",
    )
