"""Data, model and training loop for the digits transfer-learning demo.

The 8x8 scikit-learn digits are split into two tasks: classes 0-4 to pretrain on, and
classes 5-9 (relabelled 0-4) to fine-tune on with only a handful of images per class,
so what the pretrained layers already know matters. Everything is seeded and runs in
a fixed order, so a run is reproducible on one machine.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

__all__ = [
    "Block",
    "DigitsCNN",
    "Split",
    "Tasks",
    "evaluate",
    "fit",
    "load_tasks",
    "train_epoch",
    "with_new_head",
]


# -- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Images ``(N, 1, 8, 8)`` in [0, 1] and integer labels ``(N,)``."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Tasks:
    """The two tasks: pretraining (digits 0-4) and fine-tuning (digits 5-9 as 0-4)."""

    pre_train: Split
    pre_test: Split
    ft_train: Split
    ft_test: Split


def _split(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Split:
    return Split(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))


def _per_class(y: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``k`` random images of every class, and of all the others."""
    take = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c in np.unique(y)])
    rest = np.setdiff1d(np.arange(len(y)), take)
    return np.sort(take), rest


def load_tasks(per_class: int = 20, pre_test_frac: float = 0.2, seed: int = 0) -> Tasks:
    """Load scikit-learn's digits (bundled, no download) and cut the two tasks.

    Args:
        per_class: Fine-tuning training images per class; the rest of classes 5-9 is
            the fine-tuning test set. Small on purpose: transfer only matters when the
            new task has little data.
        pre_test_frac: Share of classes 0-4 held out to report pretraining accuracy.
        seed: Seed of the splits.
    """
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)

    pre = np.flatnonzero(y < 5)
    pre = rng.permutation(pre)
    n_test = round(len(pre) * pre_test_frac)
    pre_test, pre_train = np.sort(pre[:n_test]), np.sort(pre[n_test:])

    ft = np.flatnonzero(y >= 5)
    y_ft = y - 5  # relabel 5-9 -> 0-4, so the new head has 5 outputs too
    take, rest = _per_class(y[ft], per_class, rng)
    return Tasks(
        pre_train=_split(x, y, pre_train),
        pre_test=_split(x, y, pre_test),
        ft_train=_split(x, y_ft, ft[take]),
        ft_test=_split(x, y_ft, ft[rest]),
    )


# -- model -----------------------------------------------------------------------------


class Block(nn.Module):
    """Two 3x3 convs and a parameter-free shortcut (strided average pool + zero channels).

    The shortcut has no weights on purpose: every block then has exactly the same
    parameter names (``conv1``, ``bn1``, ``conv2``, ``bn2``).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.extra = cout - cin
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = F.avg_pool2d(x, self.stride) if self.stride > 1 else x
        short = F.pad(short, (0, 0, 0, 0, 0, self.extra))
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + short)


class DigitsCNN(nn.Module):
    """``stem`` -> ``blocks.0..2`` (8x8 -> 4x4 -> 2x2) -> global average -> ``head``.

    Parameter names: ``stem.0.weight``, ``stem.0.bias``, ``stem.1.weight``, ``stem.1.bias``,
    ``blocks.{i}.conv1.weight``, ``blocks.{i}.bn1.{weight,bias}``, ``blocks.{i}.conv2.weight``,
    ``blocks.{i}.bn2.{weight,bias}``, ``head.weight``, ``head.bias`` (24 tensors).
    """

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(Block(16, 16), Block(16, 32, 2), Block(32, 64, 2))
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


def with_new_head(model: DigitsCNN, num_classes: int, seed: int) -> DigitsCNN:
    """A copy of ``model`` with a freshly initialised head (the original is untouched)."""
    out = copy.deepcopy(model)
    torch.manual_seed(seed)
    out.head = nn.Linear(out.head.in_features, num_classes)
    return out


# -- training --------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, data: Split) -> float:
    """Accuracy of ``model`` on ``data`` in eval mode (BatchNorm uses running stats)."""
    model.eval()
    pred = model(data.x).argmax(dim=1)
    return (pred == data.y).float().mean().item()


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: Split,
    batch_size: int,
    gen: torch.Generator,
) -> float:
    """One pass over ``data`` in a shuffled order drawn from ``gen``; mean training loss."""
    model.train()
    order = torch.randperm(len(data), generator=gen)
    total = 0.0
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(data.x[idx]), data.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
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
) -> list[tuple[int, float, float]]:
    """Train for ``epochs``; returns ``(epoch, train loss, test accuracy)`` per epoch.

    The shuffling generator is seeded from ``seed`` alone, so two runs with the same
    seed see the same batches in the same order, whatever else they differ in.
    """
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, opt, train, batch_size, gen)
        acc = evaluate(model, test)
        history.append((epoch, loss, acc))
        if log is not None:
            log(epoch, loss, acc)
    return history
