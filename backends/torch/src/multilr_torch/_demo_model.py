"""The demo's model: a small residual CNN with a stem, numbered blocks and a head.

That layout is what multilr's ``depth="blocks"`` reads: the stem is depth 0, block ``i``
is depth ``i + 1``, the head is on top.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Block", "DigitsCNN", "with_new_head"]


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

    Example:
        >>> model = DigitsCNN(num_classes=5)
        >>> tuple(model(torch.zeros(2, 1, 8, 8)).shape), len(list(model.parameters()))
        ((2, 5), 24)
    """

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(Block(16, 16), Block(16, 32, 2), Block(32, 64, 2))
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        out: torch.Tensor = self.head(x.mean(dim=(2, 3)))
        return out


def with_new_head(model: DigitsCNN, num_classes: int, seed: int) -> DigitsCNN:
    """A copy of ``model`` with a freshly initialised head (the original is untouched)."""
    out = copy.deepcopy(model)
    torch.manual_seed(seed)
    out.head = nn.Linear(out.head.in_features, num_classes)
    return out
