"""Seed 004's fine-tuning: unfreeze block by block, 10x slower per earlier block, under SGDR.

Seed 004 (``../shared/seeds/004_*.txt``) freezes everything but the last blocks, trains
the unfrozen blocks at 10x-100x lower rates the earlier they sit, then unfreezes the next
block, and anneals with SGDR (cosine with warm restarts). Here that is one spec, and
``multilr.Controller`` carries it out (``ctl.step()`` after every ``opt.step()``):

* ``layer_decay: LayerDecay(0.1)`` -- each block 10x slower than the one above it;
* ``stages`` -- the head trains from the start, block 2 joins at epoch 3, block 1 at
  epoch 6, block 0 and the stem at epoch 9 (fastai's ``freeze_to(-1)``, ``(-2)``, ...);
* ``schedule: SGDR(period=3 epochs)`` -- every restart falls on an unfreezing.

The model is the demo's CNN (``multilr_torch.demo``: stem, ``blocks.0..2``, head),
pretrained on scikit-learn's digits 0-4, then fine-tuned with a new head on digits 5-9
from 20 images per class (the digits ship with scikit-learn: nothing is downloaded).

What it prints: the plan, then one row per epoch: the layers whose weights moved during
the epoch (read from the weights, not from flags), every layer's rate on the epoch's
first step as the optimizer used it (a ``multilr.Recorder`` reads it inside
``opt.step()``), the training loss and the test accuracy; then whether the rates of
every group at every step equal ``multilr.planned_rates`` (the schedule computed ahead
of time, without an optimizer) and whether every layer stayed put until its stage. The
exit status is 1 if either check fails.

Run (about 10 s on 2 CPU cores)::

    .venv/bin/python examples/staged_unfreezing_sgdr.py
    .venv/bin/python examples/staged_unfreezing_sgdr.py --epochs 6 --stage-every 2
"""

from __future__ import annotations

import argparse
import math

import torch
from _digits import evaluate, load_tasks, train_epoch, with_new_head
from _text import table
from multilr_torch.demo import pretrain
from torch import nn

import multilr
from multilr import LayerDecay, Plan, Spec, Stage
from multilr.cli import progress
from multilr.schedules import SGDR

BATCH, PER_CLASS, PRETRAIN_EPOCHS = 32, 20, 5


def make_spec(lr: float, stage_every: int, steps_per_epoch: int) -> Spec:
    """Head first, then one more block every ``stage_every`` epochs; SGDR restarts at each stage."""
    return Spec(
        lr=lr,
        weight_decay=1e-4,
        hyper={"momentum": 0.9},  # the seed's SGD(momentum=0.9)
        no_decay=("bias", "norm"),
        layer_decay=LayerDecay(0.1, depth="blocks"),  # stem 0, blocks.0..2 at 1..3, head 4
        schedule=SGDR(period=stage_every * steps_per_epoch),
        stages=(
            # without this first stage the head would wait for the next one that reaches it
            Stage(epoch=0, from_depth=-1, name="head"),
            Stage(epoch=stage_every, from_depth=-2, name="block2"),
            Stage(epoch=2 * stage_every, from_depth=-3, name="block1"),
            Stage(epoch=3 * stage_every, from_depth=0, name="all"),
        ),
    )


def layers(plan: Plan) -> dict[int, tuple[str, list[str]]]:
    """Per depth: a label (the module path its tensors share) and the tensor names."""
    names: dict[int, list[str]] = {}
    for p in plan.params:
        assert p.depth is not None, p.name  # layer decay reaches every tensor here
        names.setdefault(p.depth, []).append(p.name)
    out = {}
    for depth, members in sorted(names.items()):
        parts = [n.split(".")[:-1] for n in members]
        common = [a for a, *rest in zip(*parts, strict=False) if all(a == b for b in rest)]
        out[depth] = (".".join(common) or f"depth{depth}", members)
    return out


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=0.2, help="the head's rate (default 0.2)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--stage-every", type=int, default=3, help="epochs between unfreezings (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    tasks = load_tasks(per_class=PER_CLASS, seed=args.seed)
    pretrained = pretrain(tasks, PRETRAIN_EPOCHS, args.seed, progress(quiet=True))
    print(f"{tasks.sizes()}\npretrained on digits 0-4: test acc {evaluate(pretrained, tasks.pre_test):.4f}\n")
    model = with_new_head(pretrained, num_classes=5, seed=args.seed + 1)

    steps_per_epoch = math.ceil(len(tasks.ft_train) / BATCH)
    groups = multilr.build(model, make_spec(args.lr, args.stage_every, steps_per_epoch), backend="torch")
    print(groups.plan.summary(rich=False), end="\n\n")
    opt = torch.optim.SGD(groups)
    ctl = multilr.Controller(opt, groups, steps_per_epoch=steps_per_epoch)  # schedule and stages
    recorder = multilr.Recorder(opt).attach()  # the rate of every group inside every opt.step()

    by_depth = layers(groups.plan)
    depth_of = {n: d for d, (_, names) in by_depth.items() for n in names}
    depth = {g.name: depth_of[g.params[0]] for g in groups.plan.groups}  # a group never spans depths
    gen = torch.Generator().manual_seed(args.seed)
    rows: list[list[str]] = []
    moved_at: dict[int, int] = {}  # depth -> the first epoch its weights moved in
    for epoch in range(args.epochs):
        before, first = snapshot(model), ctl.step_count
        # Frozen layers get no update; their BatchNorm running statistics (buffers, not
        # parameters) still follow the new data in train mode, as in the seed's loop.
        loss = train_epoch(model, opt, tasks.ft_train, BATCH, gen, on_batch=lambda _: ctl.step())
        after, rates = snapshot(model), recorder.history().rates
        moved = [d for d, (_, names) in by_depth.items()
                 if any(not torch.equal(before[n], after[n]) for n in names)]
        for d in moved:
            moved_at.setdefault(d, epoch)
        # a depth's groups (with and without weight decay) share one rate
        at_first = {d: max(rates[g][first] for g in rates if depth[g] == d) for d in by_depth}
        rows.append([str(epoch), ", ".join(by_depth[d][0] for d in moved) or "-",
                     *(f"{at_first[d]:.2e}" for d in by_depth),
                     f"{loss:.4f}", f"{evaluate(model, tasks.ft_test):.4f}"])
    recorder.detach()

    print(f"fine-tuning on digits 5-9: SGD momentum 0.9, {args.epochs} epochs of {steps_per_epoch} steps; "
          "rates on each epoch's first step")
    header = ["epoch", "moved", *(label for label, _ in by_depth.values()), "train loss", "test acc"]
    print(table(header, rows))

    used = recorder.history()
    planned = multilr.planned_rates(groups.plan, len(used.steps), steps_per_epoch=steps_per_epoch)
    worst = max(abs(a - b) / b if b else abs(a)
                for g in planned.groups for a, b in zip(used.rates[g], planned.rates[g], strict=True))
    follow = worst <= 1e-12  # the Controller and planned_rates evaluate one formula: equal up to rounding
    print(f"\nrates used == multilr.planned_rates: {'yes' if follow else 'NO'} "
          f"({len(used.steps)} steps x {len(planned.groups)} groups, worst relative difference {worst:.1e})")
    # the epoch each layer should first move in: its stage's (None: not reached in this run)
    stage_epoch = {s.name: s.start(steps_per_epoch) // steps_per_epoch for s in groups.plan.spec.stages}
    expected: dict[int, int | None] = {}
    for g in groups.plan.groups:
        start = stage_epoch[g.stage] if g.stage is not None else 0
        expected[depth[g.name]] = start if start < args.epochs else None
    on_time = all(moved_at.get(d) == expected[d] for d in by_depth)
    first_moves = ", ".join(f"{label} {moved_at.get(d, '-')}" for d, (label, _) in by_depth.items())
    print(f"every layer frozen until its stage, then training: {'yes' if on_time else 'NO'} "
          f"(epoch each first moved: {first_moves})")
    return 0 if follow and on_time else 1


if __name__ == "__main__":
    raise SystemExit(main())
