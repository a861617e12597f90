"""multilr with Lightning: ``configure_optimizers`` returns the multilr optimizer and scheduler.

A small CNN on scikit-learn's digits, in three parts: a ``stem`` frozen for the whole
run, conv ``blocks`` frozen for the first epoch and then trained at half the head's
rate (a spec stage given in epochs), and the ``head``. Every group follows one warm-up
plus cosine curve. ``configure_optimizers`` returns ``multilr_torch.MultiLRScheduler``
with ``"interval": "step"``, so Lightning steps it once per optimizer step (its default,
``"epoch"``, would advance the schedule once per epoch). A callback snapshots the
weights at each epoch start, so the run shows which parts moved when.

Run: ``python examples/integrations/lightning_module.py`` (under a minute on 2 CPU cores).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from multilr_torch import MultiLRScheduler
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import multilr
from multilr import Prefix, RateHistory, Rule, Spec, Stage
from multilr.schedules import Cosine, Warmup


def make_spec() -> Spec:
    """Stem frozen; blocks x0.5 from epoch 1; head x1; warm-up + cosine (set per run)."""
    return Spec(
        lr=0.01,
        weight_decay=1e-4,
        no_decay=("bias", "norm"),
        rules=[
            Rule(Prefix("stem"), frozen=True, name="stem"),
            Rule(Prefix("blocks"), lr_mult=0.5, name="blocks"),
            Rule(Prefix("head"), lr_mult=1.0, name="head"),
        ],
        stages=[Stage(("blocks",), epoch=1, name="thaw-blocks")],
    )


class DigitsNet(pl.LightningModule):
    """stem -> blocks -> head on 8x8 digits; the optimizer and scheduler come from multilr."""

    def __init__(self, steps_per_epoch: int, epochs: int) -> None:
        super().__init__()
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU()),
            nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()),
        )
        self.head = nn.Linear(32, 10)
        self.losses: list[float] = []
        self.plan: multilr.Plan | None = None
        self.recorder: multilr.Recorder | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        groups = multilr.build(self, make_spec(), backend="torch")
        total = self.steps_per_epoch * self.epochs
        opt = torch.optim.AdamW(groups)
        sched = MultiLRScheduler(
            opt, groups, Warmup(Cosine(total - 5), steps=5), steps_per_epoch=self.steps_per_epoch
        )
        self.plan, self.recorder = groups.plan, multilr.Recorder(opt).attach()
        # "interval": "step": one scheduler step per optimizer step
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@dataclass
class Snapshots(pl.Callback):
    """The weights at the start of every epoch and at the end of training."""

    taken: list[dict[str, torch.Tensor]] = field(default_factory=list)

    def _take(self, module: pl.LightningModule) -> None:
        self.taken.append({n: p.detach().clone() for n, p in module.named_parameters()})

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take(pl_module)


@dataclass(frozen=True)
class Result:
    """What the run did: the plan, the rates each step used, the weights per epoch."""

    plan: multilr.Plan
    scheduler: MultiLRScheduler
    history: RateHistory
    losses: list[float]
    snapshots: list[dict[str, torch.Tensor]]
    steps_per_epoch: int
    group_count: int


def main(epochs: int = 3, batch: int = 128, root: str | None = None, seed: int = 0,
         verbose: bool = True) -> Result:
    """Train for ``epochs`` epochs with a Lightning ``Trainer`` and report."""
    pl.seed_everything(seed, verbose=False)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    data = DataLoader(TensorDataset(x, torch.tensor(digits.target)), batch_size=batch, shuffle=True)
    module = DigitsNet(len(data), epochs)
    snaps = Snapshots()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[snaps],
            default_root_dir=root or tmp,
        )
        trainer.fit(module, data)
    assert module.plan is not None and module.recorder is not None
    module.recorder.detach()
    history = module.recorder.history()
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(sched, MultiLRScheduler)
    if verbose:
        print(module.plan.summary())
        spe = len(data)
        for e in range(epochs):
            before, after = snaps.taken[e], snaps.taken[e + 1]
            moved = [part for part in ("stem", "blocks", "head")
                     if any(not torch.equal(before[n], after[n]) for n in before if n.startswith(part))]
            loss = sum(module.losses[e * spe:(e + 1) * spe]) / spe
            shown = [g for g in history.groups if "no_decay" not in g]
            rates = ", ".join(f"{g} {history.rates[g][e * spe]:.3g}" for g in shown)
            print(f"epoch {e}: mean loss {loss:.3f}; moved: {', '.join(moved)}; rates at its first step: "
                  + rates)
    return Result(module.plan, sched, history, module.losses, snaps.taken, len(data),
                  len(trainer.optimizers[0].param_groups))


if __name__ == "__main__":
    main()
