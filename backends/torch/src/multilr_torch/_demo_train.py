"""The demo's training loop: seeded shuffles, one optimizer step per batch, accuracy per epoch."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from multilr_torch._demo_data import Split

__all__ = ["evaluate", "fit", "train_epoch"]

Batch = Callable[[int], None]


@torch.no_grad()
def evaluate(model: nn.Module, data: Split) -> float:
    """Accuracy of ``model`` on ``data`` in eval mode (BatchNorm uses running stats)."""
    model.eval()
    pred = model(data.x).argmax(dim=1)
    return float((pred == data.y).float().mean().item())


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: Split,
    batch_size: int,
    gen: torch.Generator,
    on_batch: Batch | None = None,
) -> float:
    """One pass over ``data`` in a shuffled order drawn from ``gen``; mean training loss.

    ``on_batch(1)`` is called after every optimizer step (a progress bar's advance).
    """
    model.train()
    order = torch.randperm(len(data), generator=gen)
    total = 0.0
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(data.x[idx]), data.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
        opt.step()
        total += loss.item() * len(idx)
        if on_batch is not None:
            on_batch(1)
    return total / len(data)


def fit(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train: Split,
    test: Split,
    epochs: int,
    *,
    batch_size: int = 32,
    seed: int = 0,
    log: Callable[[int, float, float], None] | None = None,
    on_batch: Batch | None = None,
) -> list[tuple[int, float, float]]:
    """Train for ``epochs``; returns ``(epoch, train loss, test accuracy)`` per epoch.

    The shuffling generator is seeded from ``seed`` alone, so two runs with the same
    seed see the same batches in the same order, whatever else they differ in.
    """
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, opt, train, batch_size, gen, on_batch)
        acc = evaluate(model, test)
        history.append((epoch, loss, acc))
        if log is not None:
            log(epoch, loss, acc)
    return history
