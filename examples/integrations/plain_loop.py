"""multilr in a plain torch loop: build the groups, any optimizer, a scheduler, train.

A small MLP on scikit-learn's digits (shipped with the package, no download): the head
at the full rate, the body at a tenth and frozen for the first 15 steps (a spec stage),
no weight decay on biases, warm-up then cosine for every group.
``multilr_torch.MultiLRScheduler`` is an ordinary torch scheduler (``sched.step()``
after ``opt.step()``) that runs multilr's Controller, so the stage and the ratios hold;
a ``Recorder`` reads the rate of each group inside every ``opt.step()``.

Run: ``python examples/integrations/plain_loop.py`` (a few seconds on 2 CPU cores).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from multilr_torch import MultiLRScheduler
from sklearn.datasets import load_digits
from torch import nn

import multilr
from multilr import Prefix, RateHistory, Rule, Spec, Stage
from multilr.schedules import Cosine, Schedule, Warmup

UNFREEZE_AT = 15


def make_spec(steps: int) -> Spec:
    """The spec: head x1, body x0.1 from step ``UNFREEZE_AT``, warm-up + cosine over ``steps``."""
    return Spec(
        lr=0.5,
        weight_decay=1e-4,
        hyper={"momentum": 0.9},
        no_decay=("bias",),
        rules=[
            Rule(Prefix("head"), lr_mult=1.0, name="head"),
            Rule(Prefix("body"), lr_mult=0.1, name="body"),
        ],
        stages=[Stage(("body",), at=UNFREEZE_AT, name="thaw-body")],
        schedule=Warmup(Cosine(steps - 5), steps=5, start=0.1),
    )


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass(frozen=True)
class Result:
    """What the run did: the plan, the rates each step used, the losses, the weights."""

    plan: multilr.Plan
    schedule: Schedule
    history: RateHistory
    losses: list[float]
    initial: dict[str, torch.Tensor]
    at_unfreeze: dict[str, torch.Tensor]
    final: dict[str, torch.Tensor]


def main(steps: int = 60, batch: int = 64, seed: int = 0, verbose: bool = True) -> Result:
    """Train for ``steps`` optimizer steps and report."""
    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    model = MLP()
    spec = make_spec(steps)

    groups = multilr.build(model, spec, backend="torch")
    opt = torch.optim.SGD(groups)
    sched = MultiLRScheduler(opt, groups)  # the spec's schedule and stage
    recorder = multilr.Recorder(opt).attach()  # the rates each opt.step() really uses
    if verbose:
        print(groups.plan.summary())

    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    initial, at_unfreeze = snapshot, snapshot
    losses = []
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if step == UNFREEZE_AT:
            at_unfreeze = {n: p.detach().clone() for n, p in model.named_parameters()}
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if verbose and step % 10 == 0:
            rates = ", ".join(f"{g} {r:.3g}" for g, r in sched.rates().items())
            print(f"step {step:3d}  loss {loss.item():.3f}  next rates: {rates}")
    recorder.detach()
    if verbose:
        h, shown = recorder.history(), sorted({0, min(UNFREEZE_AT, steps - 1), steps - 1})
        print(f"final loss {losses[-1]:.3f}; rates used at steps {', '.join(map(str, shown))}:")
        for g in h.groups:
            print(f"  {g:24s}", "  ".join(f"{h.rates[g][t]:.3g}" for t in shown))
    final = {n: p.detach().clone() for n, p in model.named_parameters()}
    return Result(groups.plan, sched.controller.schedule, recorder.history(), losses, initial,
                  copy.copy(at_unfreeze), final)


if __name__ == "__main__":
    main()
