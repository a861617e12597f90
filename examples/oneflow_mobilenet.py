"""Seed 002 end to end: MobileNetV2 with a rate per part, trained eagerly and as an nn.Graph.

Seed 002 (OneFlow's how-to "如何分层设置学习率", setting learning rates per layer) gives
flowvision's ``mobilenet_v2`` different rates for its three parts, ``features``,
``adaptive_avg_pool2d`` and ``classifier``, and writes the param groups by hand twice,
because the two modes want different groups: eager mode reads each group's own ``lr``,
while nn.Graph compiles one base ``lr`` times a per-group ``lr_scale`` (a pre-scaled
``lr`` next to an ``lr_scale`` would be applied twice). Here one spec gives both::

    groups = multilr.build(model, spec, backend="oneflow")        # eager: per-group lr
    groups = multilr.build(model, spec, backend="oneflow-graph")  # graph: base lr + lr_scale

Both modes train the same randomly initialised model (nothing is downloaded) on
scikit-learn's digits, 8x8 images scaled up to 32x32 and copied to three channels, with
SGD + momentum and a per-step cosine schedule, from the same weights and batches. Each
epoch prints the loss, the test accuracy and the rate every group really trained at.

What the seed's code does not show, and this example does:

* ``adaptive_avg_pool2d`` has no parameters, so the seed's group for it is empty and its
  rate changes nothing. multilr refuses a rule that matches nothing (``CoverageError``)
  unless it is marked ``optional=True``, as here; the run prints the refusal once.
* The seed replaces the head with ``model.classifer = ...`` (sic): that adds an unused
  module and leaves the 1000-class ``classifier`` in place; the plan table would list
  ``classifer.*`` under ``default``. Here ``num_classes=10`` builds the right head.
* Inside an nn.Graph, OneFlow runs the schedule itself and never writes it back:
  ``param_groups[i]['lr']`` stays at the base rate and ``get_last_lr()`` is stale. The
  graph run prints the rates from ``multilr_oneflow.rates_at(plan, step, scheduler)``,
  and once what OneFlow itself reports instead; with ``--mode both`` it checks that they
  equal the rates the eager run trained at.
* The weights start random and move fast, so BatchNorm's running statistics lag behind
  them and evaluating with them gives chance accuracy after a short run. Before each
  evaluation the statistics are re-estimated from one batch of training images
  ("precise BN"); the training itself is unchanged.

The backbone runs at half the head's rate. With random weights that shows the seed's
mechanics, not a gain: a slower backbone is for pretrained weights (where a tenth or
less is usual), and from scratch a uniform rate learned a little faster in the quick runs
(``--features-mult 1``). Full run (3 epochs, 1,497 training images): about 0.9 test
accuracy in both modes, a few minutes per mode on two CPU cores; ``--quick`` (2 epochs,
320 images): about 0.5, well above chance (0.1), in 25-45 s per mode.

Runs on the CPU (OneFlow 0.9's CUDA build prints "CUDA driver version is insufficient"
warnings on a machine without a GPU; they are harmless). In the OneFlow environment::

    .venv-oneflow/bin/python examples/oneflow_mobilenet.py                  # both modes
    .venv-oneflow/bin/python examples/oneflow_mobilenet.py --quick --mode graph
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import multilr
from multilr import BackendError, CoverageError, Prefix, Rule, Spec

try:  # only in the OneFlow environment; the torch side's test run merely imports this file
    import multilr_oneflow

    flow = multilr_oneflow.import_oneflow()  # loads the CUDA library wheels, then OneFlow
    import flowvision
except (ImportError, BackendError) as exc:
    _MISSING: Exception | None = exc
else:
    _MISSING = None
    warnings.filterwarnings("ignore", message="ReLU6 module do not support inplace")  # flowvision's

LR = 0.05  # the classifier's rate, and the spec's base rate
FEATURES_MULT = 0.5  # the backbone's share of it
POOL_MULT = 0.5  # the seed's middle rate for adaptive_avg_pool2d, which has no parameters
MOMENTUM = 0.9
WEIGHT_DECAY = 4e-5  # MobileNetV2's own; not on biases and BatchNorm scales
SIZE = 32  # 8x8 digits scaled 4x: the net downsamples 32x, so its last blocks see 1x1
BATCH = 32
EPOCHS, QUICK_EPOCHS = 3, 2
QUICK_TRAIN, TEST = 320, 300  # --quick trains on 320 images; both test on 300
BN_BATCH = 128  # training images used to re-estimate BatchNorm statistics


def make_spec(lr: float = LR, features_mult: float = FEATURES_MULT) -> Spec:
    """The seed's three parts, each at its own rate; every optimizer setting explicit."""
    return Spec(
        lr=lr,
        weight_decay=WEIGHT_DECAY,
        hyper={"momentum": MOMENTUM},
        no_decay=("bias", "norm"),
        rules=[
            Rule(Prefix("features"), lr_mult=features_mult, name="features"),
            Rule(Prefix("adaptive_avg_pool2d"), lr_mult=POOL_MULT, name="pool", optional=True),
            Rule(Prefix("classifier"), lr_mult=1.0, name="classifier"),
        ],
    )


# -- data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """Images ``(N, 3, SIZE, SIZE)``, standardised, and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(train_size: int | None, seed: int) -> Data:
    """scikit-learn's digits (bundled, no download): stratified split, 32x32 RGB."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # (N, 8, 8) in [0, 1]
    k = SIZE // 8
    x = x.repeat(k, axis=1).repeat(k, axis=2)[:, None].repeat(3, axis=1)  # nearest-neighbour, RGB
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, train_size=train_size, test_size=TEST, stratify=y, random_state=seed
    )
    mean, std = x_train.mean(), x_train.std()
    return Data((x_train - mean) / std, y_train, (x_test - mean) / std, y_test)


def batches(data: Data, rng: np.random.Generator) -> Any:
    """One epoch of shuffled full batches (nn.Graph compiles one input shape)."""
    order = rng.permutation(len(data.y_train))
    for i in range(len(order) // BATCH):
        idx = order[i * BATCH : (i + 1) * BATCH]
        yield flow.tensor(data.x_train[idx]), flow.tensor(data.y_train[idx])


# -- model and evaluation ----------------------------------------------------------------


def make_model(seed: int) -> Any:
    """flowvision's MobileNetV2 with a 10-class head, random weights from ``seed``."""
    flow.manual_seed(seed)
    return flowvision.models.mobilenet_v2(pretrained=False, num_classes=10)


def recalibrate_bn(model: Any, x: np.ndarray) -> None:
    """Set BatchNorm running statistics to those of ``x`` ("precise BN"); weights untouched.

    Only the BatchNorm layers run in training mode, so Dropout draws no random numbers
    and the training run is the same with or without this.
    """
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, flow.nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.train()
        m.momentum = 1.0  # running = this batch's statistics
    with flow.no_grad():
        model(flow.tensor(x))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
        m.eval()


def evaluate(model: Any, data: Data) -> float:
    """Test accuracy in eval mode (eager, also for the graph-trained model: same tensors)."""
    recalibrate_bn(model, data.x_train[:BN_BATCH])
    model.eval()
    correct = 0
    with flow.no_grad():
        for i in range(0, len(data.y_test), 256):
            logits = model(flow.tensor(data.x_test[i : i + 256])).numpy()
            correct += int((logits.argmax(1) == data.y_test[i : i + 256]).sum())
    model.train()
    return correct / len(data.y_test)


# -- the two modes -----------------------------------------------------------------------


@dataclass
class Run:
    """What one mode printed, per epoch."""

    mode: str
    losses: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)
    rates: list[dict[str, float]] = field(default_factory=list)  # group -> rate of the epoch's last step
    seconds: float = 0.0

    def log(
        self, epoch: int, epochs: int, loss: float, acc: float, rates: dict[str, float], secs: float
    ) -> None:
        self.losses.append(loss)
        self.accs.append(acc)
        self.rates.append(rates)
        print(f"  {self.mode} epoch {epoch}/{epochs}  loss {loss:.4f}  test acc {acc:.4f}  ({secs:.1f}s)")
        print("    rates: " + "  ".join(f"{name} {rate:.4g}" for name, rate in rates.items()))


def train_eager(data: Data, spec: Spec, epochs: int, seed: int) -> Run:
    """Eager mode: per-group ``lr``; the scheduler scales each group from its own rate."""
    model = make_model(seed)
    groups = multilr.build(model, spec, backend="oneflow")
    opt = flow.optim.SGD(groups)  # every hyperparameter comes from the groups
    steps = epochs * (len(data.y_train) // BATCH)
    sched = flow.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = flow.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    run = Run("eager")
    print(f"eager: {len(opt.param_groups)} groups, lr {[round(g['lr'], 6) for g in opt.param_groups]}")
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0, losses = time.perf_counter(), []
        for x, y in batches(data, rng):
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rates = {g["name"]: float(g["lr"]) for g in opt.param_groups}  # what this step used
            sched.step()
            losses.append(float(loss.numpy()))
        run.log(epoch, epochs, float(np.mean(losses)), evaluate(model, data), rates, time.perf_counter() - t0)
    run.seconds = time.perf_counter() - start
    return run


def train_graph(data: Data, spec: Spec, epochs: int, seed: int) -> Run:
    """nn.Graph: one base ``lr`` and per-group ``lr_scale``; compiled once, on the first call."""
    model = make_model(seed)
    groups = multilr.build(model, spec, backend="oneflow-graph")
    opt = flow.optim.SGD(groups)
    steps = epochs * (len(data.y_train) // BATCH)
    sched = flow.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    class TrainGraph(flow.nn.Graph):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.loss_fn = flow.nn.CrossEntropyLoss()
            # Instead of self.add_optimizer: refuses eager-style groups and schedulers
            # the graph cannot run, and makes later writes to a group's rate raise.
            multilr_oneflow.add_optimizer(self, opt, lr_sch=sched)

        def build(self, x: Any, y: Any) -> Any:
            loss = self.loss_fn(self.model(x), y)
            loss.backward()
            return loss

    graph = TrainGraph()
    rng = np.random.default_rng(seed)
    run = Run("graph")
    print(
        f"graph: {len(opt.param_groups)} groups, lr {[g['lr'] for g in opt.param_groups]}, "
        f"lr_scale {[round(g['lr_scale'], 6) for g in opt.param_groups]}"
    )
    start, step = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        t0, losses = time.perf_counter(), []
        for x, y in batches(data, rng):
            losses.append(float(graph(x, y).numpy()))  # forward, backward, step and schedule
            step += 1
        # The rates of the last step (step - 1): computed, since the graph never reports them.
        rates = multilr_oneflow.rates_at(groups.plan, step - 1, sched)
        run.log(epoch, epochs, float(np.mean(losses)), evaluate(model, data), rates, time.perf_counter() - t0)
        if epoch == 1:  # once: what OneFlow itself reports
            stale = {g["name"]: float(g["lr"]) for g in opt.param_groups}
            print(f"    (from rates_at; after {step} graph steps param_groups[i]['lr'] still reads {stale}")
            print(f"    and sched.get_last_lr() {sched.get_last_lr()}: the graph never writes them back)")
    run.seconds = time.perf_counter() - start
    return run


# -- driver ------------------------------------------------------------------------------


def show_plan(spec: Spec, seed: int) -> multilr.Plan:
    """Print the plan table, and what multilr says about a rule for the pooling layer."""
    model = make_model(seed)
    plan = multilr.plan(model, spec, backend="oneflow")
    print(plan.table(rich=False, max_rows=12))
    print()
    strict = replace(spec, rules=tuple(replace(rule, optional=False) for rule in spec.rules))
    try:
        multilr.plan(model, strict, backend="oneflow")
    except CoverageError as err:  # adaptive_avg_pool2d has no parameters
        print(f"without optional=True, the pool rule is refused: {err}")
    print()
    return plan


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Seed 002: MobileNetV2, a rate per part, eager and nn.Graph."
    )
    parser.add_argument("--mode", choices=("eager", "graph", "both"), default="both")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_TRAIN} training images, {QUICK_EPOCHS} epochs (tests)"
    )
    parser.add_argument("--epochs", type=int, default=None, help=f"default {EPOCHS} ({QUICK_EPOCHS} quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, weights and batches")
    parser.add_argument("--lr", type=float, default=LR, help=f"the classifier's rate (default {LR:g})")
    parser.add_argument(
        "--features-mult",
        type=float,
        default=FEATURES_MULT,
        help=f"the backbone's share (default {FEATURES_MULT:g})",
    )
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = QUICK_EPOCHS if args.quick else EPOCHS
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example.

    Returns:
        ``accuracy``: mode -> final test accuracy (a float in [0, 1]); ``runs``: mode ->
        :class:`Run` (per-epoch losses, accuracies and rates); ``plan``; ``seconds``:
        mode -> training time.
    """
    if _MISSING is not None:
        raise SystemExit(
            f"this example needs OneFlow, flowvision and multilr-oneflow ({_MISSING}); "
            "run it with .venv-oneflow/bin/python (scripts/env_oneflow.sh creates it)"
        )
    args = _parse(argv)
    spec = make_spec(args.lr, args.features_mult)
    data = load_data(QUICK_TRAIN if args.quick else None, args.seed)
    print(
        f"digits: {len(data.y_train)} training / {len(data.y_test)} test images, {SIZE}x{SIZE} RGB; "
        f"{args.epochs} epochs of {len(data.y_train) // BATCH} batches of {BATCH}\n"
    )
    plan = show_plan(spec, args.seed)
    modes = ("eager", "graph") if args.mode == "both" else (args.mode,)
    runs = {}
    for mode in modes:
        train = train_eager if mode == "eager" else train_graph
        runs[mode] = train(data, spec, args.epochs, args.seed)
        print()
    if len(runs) == 2:
        gap = max(
            abs(a[name] - b[name])
            for a, b in zip(runs["eager"].rates, runs["graph"].rates, strict=True)
            for name in a
        )
        print(f"eager and graph trained at the same rates: largest difference {gap:.2e}")
        assert math.isclose(gap, 0.0, abs_tol=1e-9), gap
    for mode, run in runs.items():
        print(f"{mode}: final test accuracy {run.accs[-1]:.4f}  ({run.seconds:.1f}s)")
    return {
        "accuracy": {mode: run.accs[-1] for mode, run in runs.items()},
        "runs": runs,
        "plan": plan,
        "seconds": {mode: run.seconds for mode, run in runs.items()},
    }


if __name__ == "__main__":
    main()
