"""One rank of ``test_distributed.py``: multilr inside DDP, FSDP2 and FSDP1, gloo on CPU, 2 processes.

Run as ``python _dist_worker.py RANK INIT_FILE OUT_DIR`` by the test, twice at once
(ranks 0 and 1, a ``FileStore`` at ``INIT_FILE``, so no port is needed). Every scenario
writes what happened on this rank to ``OUT_DIR/<scenario>-rank<RANK>.pt``: the plans the
ranks built (gathered, so each file holds both), the full parameters before and after
each step, the gradients each step saw, the rates and group counts. The test compares
them with :func:`reference`, the same training in one process on the whole batch, with
the default Controller. Importing this module runs nothing.

The model is float64, so the only difference between a rank and one process is the
order of the gradient's sums (rounding near 1e-16), and a real mistake stands out.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from multilr_torch import TorchBackend

import multilr
from multilr import Controller, LayerDecay, Prefix, Rule, Spec, Stage
from multilr.schedules import Step

WORLD = 2
BATCH = 8  # the global batch; each rank trains on its half
TIMEOUT_S = 30  # a collective that waits longer fails instead of hanging the test
RATE_STEPS = 4
STAGE_STEPS = 6
SCHEDULE = Step(2, 0.5)

#: layer decay, a fast head, no decay on biases and norms, a stem frozen for good
RATES_SPEC = Spec(
    lr=0.1,
    weight_decay=0.01,
    no_decay=("bias", "norm"),
    rules=[Rule(Prefix("head"), lr_mult=5, name="head"), Rule(Prefix("stem"), frozen=True, name="stem")],
    layer_decay=LayerDecay(0.8),
)
#: the backbone waits for a stage at step 2; the head is frozen by hand at step 3, thawed at 5
STAGED_SPEC = Spec(
    lr=0.01,
    weight_decay=0.01,
    rules=[
        Rule(Prefix("head"), lr_mult=5, name="head"),
        Rule(Prefix("blocks"), frozen=True, name="backbone"),
        Rule(Prefix("stem"), frozen=True, name="stem"),
    ],
    stages=[Stage(("backbone",), at=2, lr_mult=0.5)],
)
HEAD = "head"
FREEZE_HEAD_AT, THAW_HEAD_AT = 3, 5


class Net(torch.nn.Module):
    """Stem, three residual blocks (linear + layer norm), head: 16 tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Linear(6, 8)
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)) for _ in range(3)
        )
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).tanh()
        for b in self.blocks:
            x = x + b(x).tanh()
        return self.head(x)


def make_model() -> Net:
    """The same float64 weights in every process."""
    torch.manual_seed(0)
    return Net().double()


def batch(step: int, rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step``, or ``rank``'s half of it."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(BATCH, 6, generator=g, dtype=torch.float64)
    y = torch.randn(BATCH, 3, generator=g, dtype=torch.float64)
    if rank is None:
        return x, y
    n = BATCH // WORLD  # equal halves: DDP's mean of the ranks' mean losses is the full-batch mean
    return x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor; a DTensor (FSDP2) is gathered from every rank (a collective)."""
    full = getattr(t, "full_tensor", None)
    return (full() if full is not None else t).detach().clone()


def train(
    forward: torch.nn.Module,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    ctl: Controller,
    steps: int,
    rank: int | None,
    events: dict[int, Callable[[Controller], None]] | None = None,
    whole: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> dict[str, Any]:
    """Train ``steps`` steps through ``forward``; record parameters, gradients and rates by name.

    ``whole()`` is entered to read them when the tensors are shards of their own (FSDP1:
    ``summon_full_params``); a DTensor (FSDP2) is gathered by :func:`_full`.
    """
    rec: dict[str, Any] = {"params": [], "grads": [], "rates": [], "groups": [], "requires_grad": []}
    named = list(model.named_parameters())  # the model's own names (DDP's wrapper adds "module.")
    with whole():
        rec["params"].append({n: _full(p) for n, p in named})
    for t in range(steps):
        if events and t in events:
            events[t](ctl)
        x, y = batch(t, rank)
        opt.zero_grad()
        (forward(x) - y).square().mean().backward()
        with whole():
            rec["grads"].append({n: _full(p.grad) for n, p in named if p.grad is not None})
        rec["rates"].append(ctl.rates())
        rec["requires_grad"].append({n: bool(p.requires_grad) for n, p in named})
        opt.step()
        ctl.step()
        with whole():
            rec["params"].append({n: _full(p) for n, p in named})
        rec["groups"].append(len(opt.param_groups))
    return rec


def _events(freeze_head: bool) -> dict[int, Callable[[Controller], None]]:
    """A hand freeze and thaw after wrapping (AdamW: moments updated while frozen would show after)."""
    if not freeze_head:
        return {}
    return {FREEZE_HEAD_AT: lambda c: c.freeze(HEAD), THAW_HEAD_AT: lambda c: c.unfreeze(HEAD)}


def reference(scenario: str) -> dict[str, Any]:
    """The single-process run a scenario must equal: whole batch, default Controller."""
    model = make_model()
    if scenario in ("ddp", "fsdp2"):
        groups = multilr.build(model, RATES_SPEC, backend="torch")
        opt: torch.optim.Optimizer = torch.optim.SGD(groups)
        ctl = Controller(opt, groups, schedule=SCHEDULE)
        return train(model, model, opt, ctl, RATE_STEPS, None)
    groups = multilr.build(model, STAGED_SPEC, backend="torch")
    opt = torch.optim.AdamW(groups)
    ctl = Controller(opt, groups)
    return train(model, model, opt, ctl, STAGE_STEPS, None, _events(scenario != "stages-requires_grad"))


def _gather(value: Any) -> list[Any]:
    out: list[Any] = [None] * WORLD
    dist.all_gather_object(out, value)
    return out


def run_ddp(rank: int) -> dict[str, Any]:
    """The recipe: build -> optimizer -> Controller(freeze_by="grad") -> DDP."""
    from torch.nn.parallel import DistributedDataParallel

    model = make_model()
    groups = multilr.build(model, RATES_SPEC, backend="torch")
    plans = _gather(groups.plan.to_json())
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups, schedule=SCHEDULE, freeze_by="grad")
    # find_unused_parameters=False (the default): every registered tensor must get a gradient
    ddp = DistributedDataParallel(model)
    # built through the wrapper: the model's names (no "module."), the same tensors
    through = multilr.build(ddp, RATES_SPEC, backend="torch")
    same = [[id(p) for p in g["params"]] for g in through] == [[id(p) for p in g["params"]] for g in groups]
    # a spec that freezes tensors DDP registered as trainable is refused, the model untouched
    flags = [p.requires_grad for p in model.parameters()]
    try:
        multilr.build(ddp, STAGED_SPEC, backend="torch")
        refused = ""
    except multilr.BackendError as e:
        refused = str(e)
    try:  # the backend's own emit (no table) refuses it too
        TorchBackend().emit(ddp, multilr.plan(model, STAGED_SPEC, backend="torch"))
        emit_refused = ""
    except multilr.BackendError as e:
        emit_refused = str(e)
    untouched = flags == [p.requires_grad for p in model.parameters()]
    rec = train(ddp, model, opt, ctl, RATE_STEPS, rank)
    ctl.close()
    return {
        **rec,
        "plans": plans,
        "plan_through_ddp": through.plan.to_json(),
        "same_tensors_through_ddp": same,
        "freeze_refused": refused,
        "emit_refused": emit_refused,
        "untouched_after_refusal": untouched,
    }


def run_fsdp2(rank: int) -> dict[str, Any]:
    """Plan before sharding, build after it: the optimizer must hold the sharded parameters."""
    model = make_model()
    before = multilr.build(model, RATES_SPEC, backend="torch")  # only to show what sharding does to it
    _shard(model)
    groups = multilr.build(model, RATES_SPEC, backend="torch")
    live = {id(p) for p in model.parameters()}
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups, schedule=SCHEDULE, freeze_by="grad")
    rec = train(model, model, opt, ctl, RATE_STEPS, rank)
    ctl.close()
    return {
        **rec,
        "plans": _gather(groups.plan.to_json()),
        "plan_before_sharding": before.plan.to_json(),
        "tensor_types": sorted({type(p).__name__ for p in model.parameters()}),
        "prebuilt_still_live": sum(id(t) in live for g in before for t in g["params"]),
    }


def run_fsdp1(rank: int) -> dict[str, Any]:
    """FSDP1, the recipe: build -> optimizer -> Controller -> wrap with use_orig_params=True.

    Also what a build through the wrapper would read (refused): FSDP1's names and the
    flattened shards it leaves in the model's tensors between steps.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = make_model()
    groups = multilr.build(model, RATES_SPEC, backend="torch")
    opt = torch.optim.SGD(groups)
    ctl = Controller(opt, groups, schedule=SCHEDULE)
    wrapped = FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)
    try:
        multilr.build(wrapped, RATES_SPEC, backend="torch")
        refused = ""
    except multilr.BackendError as e:
        refused = str(e)
    live = sorted(id(p) for p in wrapped.parameters())
    shapes = {n: tuple(p.shape) for n, p in wrapped.named_parameters()}
    rec = train(
        wrapped,
        model,
        opt,
        ctl,
        RATE_STEPS,
        rank,
        whole=lambda: FullyShardedDataParallel.summon_full_params(wrapped, with_grads=True),
    )
    ctl.close()
    return {
        **rec,
        "refused": refused,
        "groups_hold_live_tensors": sorted(id(p) for g in groups for p in g["params"]) == live,
        "shapes_through_fsdp1": shapes,
    }


def _shard(model: Net) -> None:
    """FSDP2 per block, then the root (the usual layout); the parameters become DTensors."""
    from torch.distributed.fsdp import fully_shard

    for module in (model.stem, *model.blocks, model.head):
        fully_shard(module)
    fully_shard(model)


def run_stages(rank: int, freeze_by: str) -> dict[str, Any]:
    """Staged unfreezing after wrapping (and, in grad mode, a hand freeze and thaw after wrapping)."""
    from torch.nn.parallel import DistributedDataParallel

    model = make_model()
    groups = multilr.build(model, STAGED_SPEC, backend="torch")
    opt = torch.optim.AdamW(groups)
    ctl = Controller(opt, groups, freeze_by=freeze_by)  # type: ignore[arg-type]
    ddp = DistributedDataParallel(model)
    rec = train(ddp, model, opt, ctl, STAGE_STEPS, rank, _events(freeze_by == "grad"))
    ctl.close()
    return {**rec, "plans": _gather(groups.plan.to_json())}


def run_fsdp2_stages(rank: int, freeze_by: str) -> dict[str, Any]:
    """FSDP2: fully_shard -> build -> optimizer -> Controller; the stage and the hand freeze after it."""
    model = make_model()
    _shard(model)
    groups = multilr.build(model, STAGED_SPEC, backend="torch")
    opt = torch.optim.AdamW(groups)
    ctl = Controller(opt, groups, freeze_by=freeze_by)  # type: ignore[arg-type]
    rec = train(model, model, opt, ctl, STAGE_STEPS, rank, _events(True))
    ctl.close()
    return {**rec, "plans": _gather(groups.plan.to_json())}


SCENARIOS: dict[str, Callable[[int], dict[str, Any]]] = {
    "ddp": run_ddp,
    "fsdp2": run_fsdp2,
    "fsdp1": run_fsdp1,
    "stages-grad": lambda rank: run_stages(rank, "grad"),
    "stages-requires_grad": lambda rank: run_stages(rank, "requires_grad"),
    "fsdp2-stages-grad": lambda rank: run_fsdp2_stages(rank, "grad"),
    "fsdp2-stages-requires_grad": lambda rank: run_fsdp2_stages(rank, "requires_grad"),
}


def main(rank: int, init_file: str, out_dir: Path) -> None:
    torch.set_num_threads(1)  # two ranks share a loaded 2-core machine
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=TIMEOUT_S),
    )
    try:
        for name, scenario in SCENARIOS.items():
            start = time.perf_counter()
            rec = scenario(rank)
            rec["seconds"] = time.perf_counter() - start
            torch.save(rec, out_dir / f"{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
