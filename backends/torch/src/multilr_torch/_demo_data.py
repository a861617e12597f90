"""The demo's data: scikit-learn's 8x8 digits cut into a pretraining and a fine-tuning task.

Classes 0-4 are pretrained on; classes 5-9 (relabelled 0-4) are fine-tuned on from only
a handful of images per class, so what the pretrained layers already know matters.
The digits ship with scikit-learn: nothing is downloaded. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Split", "Tasks", "load_tasks"]


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

    def sizes(self) -> str:
        """One line: how many images each part has."""
        return (
            f"pretrain {len(self.pre_train)} train / {len(self.pre_test)} test (digits 0-4); "
            f"fine-tune {len(self.ft_train)} train / {len(self.ft_test)} test (digits 5-9)"
        )


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

    Example:
        >>> tasks = load_tasks(per_class=20, seed=0)
        >>> len(tasks.ft_train), tuple(tasks.ft_train.x.shape[1:]), sorted(set(tasks.ft_train.y.tolist()))
        (100, (1, 8, 8), [0, 1, 2, 3, 4])
    """
    from sklearn.datasets import load_digits  # type: ignore[import-untyped, unused-ignore]

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)

    pre = rng.permutation(np.flatnonzero(y < 5))
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
