"""Seeds 001, 002 and 004, each as one spec plus a few lines, on torch, OneFlow eager and nn.Graph.

The seeds (``../shared/seeds``) write these loops by hand; here each is a YAML spec and
the same few lines on every backend:

* **001** -- a rate per tensor, every rate divided by ``i + 1`` at step ``i``:
  ``rates`` + ``schedule: {kind: inverse}``. Runs on all three backends (in nn.Graph
  through ``graph_scheduler``, which tabulates the schedule for the run's length).
* **002** -- a rate per part of the model and a decay factor per part applied every 10
  steps: ``rules`` with their own ``schedule``. torch and OneFlow eager; nn.Graph runs
  one scheduler on one base rate, so ``build`` refuses per-part schedules there (the
  message says to use eager mode); the graph part of the seed (static ``lr_scale`` per
  part) is ``examples/oneflow_mobilenet.py``.
* **004** -- fine-tuning by stages: the head first, then the last block, then everything,
  each block 10x slower than the one above, under SGDR (cosine with warm restarts), after a
  learning-rate finder run (``lr_find`` on the Controller: the stages not yet reached stay
  at 0; it restores model and optimizer exactly, so the run is the same as without it):
  ``layer_decay`` + ``stages`` + ``schedule: {kind: sgdr}``. torch and OneFlow eager;
  nn.Graph compiles ``requires_grad`` at its first call, so ``build`` refuses stages there.

The model is a small MLP on scikit-learn's digits (ships with scikit-learn; nothing is
downloaded). Each run returns the rate every group trained at on every step, which
``tests`` compare with ``multilr.planned_rates`` on every backend::

    python examples/seed_workflows.py --seed 004 --backend torch
    python examples/seed_workflows.py --seed 001 --backend oneflow-graph --json
"""

from __future__ import annotations

import argparse
import json
from types import ModuleType
from typing import Any

import numpy as np

import multilr

SPECS = {
    "001": """
lr: 1.0
rates: {layer1.weight: 0.01, layer1.bias: 0.1, layer2.weight: 0.001, layer2.bias: 1.0}
schedule: {kind: inverse}            # lr / (i + 1) at step i, for every tensor
""",
    "002": """
lr: 0.05
hyper: {momentum: 0.9}
rules:
  - {prefix: features, lr_mult: 0.1, name: features, schedule: {kind: step, step_size: 10, gamma: 0.9}}
  - {prefix: classifier, lr_mult: 1, name: classifier, schedule: {kind: step, step_size: 10, gamma: 0.7}}
""",
    "004": """
lr: 0.05
weight_decay: 1.0e-4
hyper: {momentum: 0.9}
no_decay: [bias]
layer_decay: {decay: 0.1, depth: blocks}   # each block 10x slower than the one above
schedule: {kind: sgdr, period: 10, period_mult: 2}
stages:
  - {at: 0, from_depth: -1}                # the head alone
  - {at: 10, from_depth: -2}               # then the last block too
  - {at: 20, from_depth: 0}                # then everything
""",
}
STEPS = {"001": 10, "002": 25, "004": 30}
BACKENDS = ("torch", "oneflow", "oneflow-graph")


def framework(backend: str) -> ModuleType:
    """torch, or OneFlow (which mirrors torch's nn and optim API)."""
    if backend == "torch":
        import torch

        return torch
    import multilr_oneflow

    return multilr_oneflow.import_oneflow()


def make_model(fw: ModuleType, seed: str) -> Any:
    """The model each seed uses, with the parameter names its spec refers to."""
    fw.manual_seed(0)
    nn = fw.nn
    if seed == "001":  # the seed's LinearModel, fed digits instead of zeros

        class LinearModel(nn.Module):  # type: ignore[name-defined,misc]
            def __init__(self) -> None:
                super().__init__()
                self.layer1 = nn.Linear(64, 20)
                self.layer2 = nn.Linear(20, 10)

            def forward(self, x: Any) -> Any:
                return self.layer2(self.layer1(x))

        return LinearModel()
    if seed == "002":  # a backbone ("features") and a head ("classifier"), as MobileNetV2 names them

        class Net(nn.Module):  # type: ignore[name-defined,misc]
            def __init__(self) -> None:
                super().__init__()
                self.features = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
                self.classifier = nn.Linear(32, 10)

            def forward(self, x: Any) -> Any:
                return self.classifier(self.features(x))

        return Net()

    class Blocks(nn.Module):  # type: ignore[name-defined,misc]
        """A stem, three numbered blocks and a head: the depths seed 004 unfreezes by."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(64, 32)
            self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(32, 32), nn.ReLU()) for _ in range(3)])
            self.head = nn.Linear(32, 10)

        def forward(self, x: Any) -> Any:
            x = self.stem(x).relu()
            for block in self.blocks:
                x = block(x)
            return self.head(x)

    return Blocks()


def batches(fw: ModuleType, steps: int, size: int = 32) -> list[tuple[Any, Any]]:
    """``steps`` batches of digits (features scaled to [0, 1]), the same on every backend."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    out = []
    for i in range(steps):
        idx = order[(i * size) % len(x) :][:size]
        out.append((fw.tensor((x[idx] / 16.0).astype(np.float32)), fw.tensor(y[idx].astype(np.int64))))
    return out


def run(seed: str, backend: str, steps: int | None = None, *, finder: bool = True) -> dict[str, Any]:
    """Train seed ``seed``'s workflow on ``backend``; the rates each group trained at, and the losses."""
    steps = steps or STEPS[seed]
    fw = framework(backend)
    model = make_model(fw, seed)
    spec = multilr.Spec.from_yaml(SPECS[seed])
    data = batches(fw, steps)
    loss_fn = fw.nn.CrossEntropyLoss()
    if backend == "oneflow-graph":
        return _run_graph(fw, model, spec, data, loss_fn)

    # -- the few lines, the same on torch and OneFlow eager --------------------------------
    groups = multilr.build(model, spec, backend=backend)
    opt = fw.optim.SGD(groups)
    ctl = multilr.Controller(opt, groups)  # the spec's schedule, own schedules, stages
    suggestion = None
    if seed == "004" and finder:  # seed 004 looks for the rate first; the finder puts everything back after
        batch = iter(data * 2)

        def step() -> float:
            x, y = next(batch)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return float(loss.item())

        suggestion = multilr.lr_find(model, opt, step, plan=ctl, num_it=40, end_lr=100.0).suggestion
    rates, losses = [], []
    for x, y in data:
        rates.append(ctl.rates())  # what this step trains at
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        ctl.step()
        losses.append(float(loss.item()))
    return {"groups": ctl.groups, "rates": rates, "losses": losses, "suggestion": suggestion}


def _run_graph(
    fw: ModuleType, model: Any, spec: multilr.Spec, data: list[Any], loss_fn: Any
) -> dict[str, Any]:
    import multilr_oneflow

    groups = multilr.build(model, spec, backend="oneflow-graph")  # refuses own schedules and stages
    opt = fw.optim.SGD(groups)
    assert spec.schedule is not None, "the graph run is seed 001's, whose spec has a schedule"
    sched = multilr_oneflow.graph_scheduler(opt, spec.schedule, total_steps=len(data))

    class Train(fw.nn.Graph):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            multilr_oneflow.add_optimizer(self, opt, lr_sch=sched)

        def build(self, x: Any, y: Any) -> Any:
            loss = loss_fn(self.model(x), y)
            loss.backward()
            return loss

    train = Train()
    rates, losses = [], []
    for step, (x, y) in enumerate(data):
        # the graph never writes its rates back to param_groups: rates_at recomputes them
        rates.append(multilr_oneflow.rates_at(groups.plan, step, sched))
        losses.append(float(train(x, y).item()))
    return {"groups": [g.name for g in groups.plan.groups], "rates": rates, "losses": losses}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", choices=sorted(SPECS), default="004")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        result = run(args.seed, args.backend, args.steps)
    except multilr.MultiLRError as exc:
        if args.json:
            print(json.dumps({"refused": type(exc).__name__, "message": str(exc)}))
            return
        raise SystemExit(f"refused: {exc}") from None
    if args.json:
        print(json.dumps(result))
        return
    print(f"seed {args.seed} on {args.backend}: {len(result['losses'])} steps")
    if result.get("suggestion") is not None:
        print(f"  lr finder suggests lr {result['suggestion']:.3g} (the spec says 0.05)")
    for step in sorted({0, len(result["rates"]) // 2, len(result["rates"]) - 1}):
        shown = ", ".join(f"{g} {r:.3g}" for g, r in result["rates"][step].items())
        print(f"  step {step:>3}: loss {result['losses'][step]:.3f}  rates: {shown}")


if __name__ == "__main__":
    main()
