"""The model, spec and gradients the OneFlow tests share, and a runner for graph cases.

Every ``nn.Graph`` case runs in a fresh process: in OneFlow 0.9 a failed graph compile
can make the next compile in the same process abort it, and a few long-lived graph
runs crashed at random (shared/notes/oneflow-semantics.md). So the tests call::

    python _graph_case.py '{"kind": "rates", "opt": "adamw", "sched": "step"}'

which builds the model, trains a graph for a few steps and prints one line
``RESULT {json}`` on stdout: every parameter before and after each step, the gradient
each step used, what ``multilr_oneflow.rates_at`` says, and the groups. The test in the
parent process does all the checking. Importing this module has no side effect beyond
importing OneFlow, so the eager tests use the same model, spec and gradients in-process.

The loss in the graph is ``0 * sum(model(x)) + sum_p <p, G_p>``: the forward (stem,
blocks with BatchNorm, head, the frozen norm among them) runs inside the compiled graph,
but the gradient of every trainable tensor is exactly the known tensor ``G_p`` passed in
for that step, so the effective rate can be read from the update as in eager mode.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import multilr_oneflow
import numpy as np

import multilr
from multilr import LayerDecay, Prefix, Rule, Spec

flow = multilr_oneflow.import_oneflow()

#: Optimizer set-ups by id: (class name, base lr, weight decay, hyper). For SGD and Adam
#: the weight decay is L2 (added to the gradient), for AdamW it is decoupled.
ADAM_HYPER = {"betas": (0.9, 0.999), "eps": 1e-8}
OPTIMIZERS: dict[str, tuple[str, float, float, dict[str, Any]]] = {
    "sgd": ("SGD", 0.1, 0.0, {"momentum": 0.0}),
    "sgd-momentum": ("SGD", 0.1, 0.01, {"momentum": 0.9}),
    "adam": ("Adam", 0.02, 0.01, ADAM_HYPER),
    "adamw": ("AdamW", 0.02, 0.05, ADAM_HYPER),
}

#: StepLR(step_size=1, gamma=0.5): the factor in force at steps 0, 1, 2.
STEP_SCHEDULE = (1.0, 0.5, 0.25)
STEPS = len(STEP_SCHEDULE)
DECAY = 0.7
FROZEN_PREFIX = "blocks.1.norm"


class Block(flow.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = flow.nn.Linear(width, width)
        self.norm = flow.nn.BatchNorm1d(width)

    def forward(self, x: Any) -> Any:
        return x + self.norm(self.fc(x)).relu()


class Tiny(flow.nn.Module):
    """stem (depth 0), blocks.0..2 (depths 1..3, a stack), head (depth 4): 14 tensors."""

    def __init__(self, n_in: int = 3, width: int = 4, n_out: int = 2, n_blocks: int = 3) -> None:
        super().__init__()
        self.stem = flow.nn.Linear(n_in, width)
        self.blocks = flow.nn.Sequential(*[Block(width) for _ in range(n_blocks)])
        self.head = flow.nn.Linear(width, n_out)

    def forward(self, x: Any) -> Any:
        return self.head(self.blocks(self.stem(x)))


def make_model(dtype: str = "float32", seed: int = 0) -> Tiny:
    flow.manual_seed(seed)
    model = Tiny()
    return model.double() if dtype == "float64" else model


def make_spec(opt: str) -> Spec:
    """Head x10, layer decay 0.7 over depths 0..4, no decay on biases and norms, one frozen norm."""
    _, lr, wd, hyper = OPTIMIZERS[opt]
    return Spec(
        lr=lr,
        weight_decay=wd,
        hyper=hyper,
        no_decay=("bias", "norm"),
        rules=[
            Rule(Prefix("head"), lr_mult=10, name="head"),
            Rule(Prefix(FROZEN_PREFIX), frozen=True, name="frozen-norm"),
        ],
        layer_decay=LayerDecay(DECAY),
    )


def make_optimizer(opt: str, groups: Any) -> Any:
    return getattr(flow.optim, OPTIMIZERS[opt][0])(groups)


def make_scheduler(kind: str | None, opt: Any) -> Any:
    sch = flow.optim.lr_scheduler
    if kind is None:
        return None
    if kind == "step":
        return sch.StepLR(opt, step_size=1, gamma=0.5)
    if kind == "warmup":  # linear warmup 0.1 -> 1 over 2 steps, then StepLR(0.5)
        return sch.WarmupLR(
            sch.StepLR(opt, step_size=1, gamma=0.5), warmup_factor=0.1, warmup_iters=2, warmup_method="linear"
        )
    if kind == "sequential":  # x0.5 for 2 steps, then x0.8 per step
        return sch.SequentialLR(
            opt,
            [sch.ConstantLR(opt, factor=0.5, total_iters=2), sch.ExponentialLR(opt, gamma=0.8)],
            milestones=[2],
        )
    raise ValueError(f"unknown scheduler {kind!r}")


def gradient(index: int, shape: tuple[int, ...], step: int, dtype: str) -> np.ndarray:
    """Known gradient: fixed sign per element (seeded by tensor index), size in [0.5, 1.5] per step.

    A fixed sign keeps momentum and Adam's moments away from zero, so the rate recovered
    as ``-delta / D`` is well conditioned everywhere.
    """
    sign = np.random.default_rng(1000 + index).integers(0, 2, shape) * 2 - 1
    size = np.random.default_rng(100_000 * (step + 1) + index).random(shape) + 0.5
    return (sign * size).astype(dtype)


def snapshot(model: Any) -> dict[str, np.ndarray]:
    return {n: p.numpy().copy() for n, p in model.named_parameters()}


def group_options(groups: Any) -> list[dict[str, Any]]:
    """Group settings without tensors, JSON-safe (works on dicts and OneFlow ParamGroups)."""
    out = []
    for g in groups:
        opts = g.options if hasattr(g, "options") else g
        out.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items() if k != "params"})
    return out


class TrainGraph(flow.nn.Graph):
    def __init__(self, model: Any, opt: Any, sched: Any, trained: list[str], raw: bool = False) -> None:
        super().__init__()
        self.model = model
        self.trained = trained
        if raw:  # OneFlow's own add_optimizer, without multilr's checks (negative controls only)
            self.add_optimizer(opt, lr_sch=sched)
        else:
            multilr_oneflow.add_optimizer(self, opt, lr_sch=sched)

    def build(self, x: Any, *grads: Any) -> Any:
        loss = (self.model(x) * 0).sum()
        params = dict(self.model.named_parameters())
        for name, g in zip(self.trained, grads, strict=True):
            loss = loss + (params[name].to(flow.Tensor) * g).sum()
        loss.backward()
        return loss


def _rates_at(plan: Any, step: int, sched: Any) -> Any:
    try:
        return multilr_oneflow.rates_at(plan, step, sched)
    except Exception as exc:  # reported, judged by the test
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_rates(case: dict[str, Any]) -> dict[str, Any]:
    """Train ``steps`` graph steps with known gradients; record everything the test checks."""
    opt_id, sched_kind, steps = case["opt"], case.get("sched"), case.get("steps", STEPS)
    model = make_model("float32")
    names = [n for n, _ in model.named_parameters()]
    groups = multilr.build(model, make_spec(opt_id), backend="oneflow-graph")
    emitted = group_options(groups)
    if case.get("prescaled"):
        # the mistake add_optimizer refuses: each group's own rate in lr *and* its lr_scale
        for g in groups:
            g["lr"] = g["lr"] * g["lr_scale"]
    opt = make_optimizer(opt_id, groups)
    sched = make_scheduler(sched_kind, opt)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    graph = TrainGraph(model, opt, sched, trained, raw=bool(case.get("prescaled")))
    in_optimizer = group_options(opt.param_groups)
    x = flow.tensor(np.random.default_rng(7).standard_normal((5, 3)).astype("float32"))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    records = []
    for step in range(steps):
        grads = {n: gradient(names.index(n), shapes[n], step, "float32") for n in trained}
        before = snapshot(model)
        graph(x, *[flow.tensor(grads[n]) for n in trained])
        after = snapshot(model)
        records.append(
            {
                "before": {n: v.tolist() for n, v in before.items()},
                "after": {n: v.tolist() for n, v in after.items()},
                "grads": {n: v.tolist() for n, v in grads.items()},
                "rates_at": _rates_at(groups.plan, step, sched),
            }
        )
    return {
        "plan": groups.plan.to_dict(),
        "emitted": emitted,
        "in_optimizer": in_optimizer,
        "requires_grad": {n: bool(p.requires_grad) for n, p in model.named_parameters()},
        "steps": records,
    }


def run_lr_write(case: dict[str, Any]) -> dict[str, Any]:
    """Write a group's ``lr`` before the first call, step, try again after; SGD, gradient 1.

    With plain SGD and a gradient of ones, a tensor moves by exactly ``-(lr * lr_scale)``
    per step, so the update shows which rate the graph compiled in.
    """
    model = flow.nn.Sequential(flow.nn.Linear(3, 4), flow.nn.Linear(4, 2))
    spec = Spec(lr=0.1, rules=[Rule(Prefix("1"), lr_mult=10, name="head")])
    groups = multilr.build(model, spec, backend="oneflow-graph")
    opt = flow.optim.SGD(groups)
    sched = make_scheduler(case.get("sched"), opt)
    trained = [n for n, _ in model.named_parameters()]
    graph = TrainGraph(model, opt, sched, trained)
    head = next(i for i, g in enumerate(opt.param_groups) if g["name"] == "head")
    out: dict[str, Any] = {"written_before": case["lr_before"]}
    try:
        opt.param_groups[head]["lr"] = case["lr_before"]
        out["write_before"] = "accepted"
    except Exception as exc:
        out["write_before"] = {"type": type(exc).__name__, "message": str(exc)}
    out["lr_read_before_call"] = opt.param_groups[head]["lr"]
    x = flow.ones(2, 3)
    ones = [flow.ones(*p.shape) for p in model.parameters()]
    moves = []
    for step in range(2):
        before = snapshot(model)
        graph(x, *ones)
        after = snapshot(model)
        moves.append({n: float(np.mean(before[n] - after[n])) for n in before})
        if step == 0:
            for key, value in (("lr", case["lr_after"]), ("lr_scale", 1.0)):
                try:
                    opt.param_groups[head][key] = value
                    out[f"write_{key}_after"] = "accepted"
                except Exception as exc:
                    out[f"write_{key}_after"] = {
                        "type": type(exc).__name__,
                        "mro": [c.__name__ for c in type(exc).__mro__],
                        "message": str(exc),
                    }
            out["lr_read_after_write"] = opt.param_groups[head]["lr"]
            out["lr_scale_read_after_write"] = opt.param_groups[head]["lr_scale"]
    out["moves"] = moves
    out["head_params"] = [n for n in trained if n.startswith("1.")]
    out["rates_at_opt"] = [multilr_oneflow.rates_at(opt, s, sched) for s in range(2)]
    return out


def run_recorder(case: dict[str, Any]) -> dict[str, Any]:
    """Plain SGD in a graph under a scheduler, with ``multilr_oneflow.graph_recorder``.

    Returns the recorded history, every step's parameters and gradients (the test reads
    the applied rates from them: ``delta = -lr * grad``), the optimizer's ``lr`` values
    after each call (stale), and what ``multilr.Recorder(opt)`` says about these groups.
    """
    from multilr.schedules import Cosine, Warmup

    steps = case.get("steps", 5)
    model = make_model("float32")
    names = [n for n, _ in model.named_parameters()]
    groups = multilr.build(model, make_spec("sgd"), backend="oneflow-graph")
    opt = make_optimizer("sgd", groups)
    if case["sched"] == "multilr":  # compiled by graph_scheduler into SequentialLR(LinearLR, CosineDecayLR)
        sched = multilr_oneflow.graph_scheduler(opt, Warmup(Cosine(4, final=0.1), steps=2, start=0.25))
    else:
        sched = make_scheduler(case["sched"], opt)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    graph = TrainGraph(model, opt, sched, trained)
    recorder = multilr_oneflow.graph_recorder(opt, sched, meta={"case": case["sched"]})
    try:
        multilr.Recorder(opt)
        refused = ""
    except multilr.UnsupportedFeatureError as exc:
        refused = str(exc)
    x = flow.tensor(np.random.default_rng(7).standard_normal((5, 3)).astype("float32"))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    records, stale = [], []
    for step in range(steps):
        grads = {n: gradient(names.index(n), shapes[n], step, "float32") for n in trained}
        before = snapshot(model)
        graph(x, *[flow.tensor(grads[n]) for n in trained])
        recorder.record()
        after = snapshot(model)
        stale.append({str(g["name"]): float(g["lr"]) for g in opt.param_groups})
        records.append(
            {
                "delta": {n: (after[n] - before[n]).tolist() for n in names},
                "grads": {n: v.tolist() for n, v in grads.items()},
            }
        )
    return {
        "history": recorder.history().to_dict(),
        "groups": {g.name: list(g.params) for g in groups.plan.groups},
        "steps": records,
        "stale": stale,
        "refused": refused,
    }


def run_failed_compile(case: dict[str, Any]) -> dict[str, Any]:
    """A real nn.Graph whose compile fails; with ``"abort": true`` the process then dies.

    OneFlow 0.9 sometimes aborts the process after a failed compile: ``os.abort`` is that
    death on demand, so ``test_graph_isolation.py`` can show the next case still runs.
    """

    class Broken(flow.nn.Graph):
        def build(self, x: Any) -> Any:
            raise RuntimeError("this graph cannot compile")

    try:
        Broken()(flow.ones(2))
    finally:
        if case.get("abort"):
            os.abort()
    return {}


CASES = {"rates": run_rates, "lr-write": run_lr_write, "recorder": run_recorder, "failed-compile": run_failed_compile}


def main(argv: list[str]) -> int:
    case = json.loads(argv[1])
    try:
        result = CASES[case["kind"]](case)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
