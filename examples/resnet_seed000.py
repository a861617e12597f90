"""Seed 000's layer-wise rates on ResNet-18: the hand-written loop against one line of spec.

Seed 000 (``../shared/seeds/000_*.txt``) lists ``named_parameters()`` of a ResNet-18 (62
tensors), reverses them so the head comes first, and walks down multiplying the rate by
0.9: first after every tensor, then, improved, only when the top-level block changes
(``fc`` -> ``layer4`` -> ... -> ``bn1`` -> ``conv1``); the list of ``{"params", "lr"}`` dicts
goes to Adam. With multilr each version is one line::

    Spec(lr=1e-2, layer_decay=LayerDecay(0.9, depth="top"))     # per top-level block
    Spec(lr=1e-2, layer_decay=LayerDecay(0.9, depth="tensor"))  # per tensor

What it prints: for each version, the rate the seed's loop gives every tensor next to
the rate in the groups ``multilr.build`` returns (tensors matched by identity, not by
name), per block for the block version and per tensor (head and tail) for the other;
then both block versions train from the same weights on the same batches of
scikit-learn's digits (shipped with scikit-learn; 8x8 images upsampled to 16x16, grey
to RGB) with Adam, as the seed does, and a table compares the two runs. Equal rates
give the same training: the runs end with the same weights.

The exit status is 1 if a rate differs.

Run (about 10 s on 2 CPU cores)::

    .venv/bin/python examples/resnet_seed000.py
    .venv/bin/python examples/resnet_seed000.py --epochs 1 --width 4
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import models
import torch
import torch.nn.functional as F
from _digits import Split, evaluate, train_epoch
from _text import table
from torch import nn

import multilr
from multilr import LayerDecay, Spec

LR, LR_MULT = 1e-2, 0.9  # the seed's numbers
# The loop multiplies 0.9 in one factor at a time, multilr raises it to a power: the two
# may round differently, by a few ulps over at most 61 factors (~1e-14 relative); a
# wrong depth is off by 10%.
RTOL = 1e-12


def seed_000_by_hand(model: nn.Module, *, per_block: bool, lr: float = LR, lr_mult: float = LR_MULT
                     ) -> list[dict[str, Any]]:
    """Seed 000's loop as the post writes it: reverse the names, x``lr_mult`` per tensor or per block.

    Example:
        >>> groups = seed_000_by_hand(models.resnet18(width=4), per_block=True)
        >>> len(groups), groups[0]["lr"], round(groups[-1]["lr"], 8)  # fc.bias first, conv1.weight last
        (62, 0.01, 0.00531441)
    """
    layer_names = [name for name, _ in model.named_parameters()]
    layer_names.reverse()  # the head first
    parameters: list[dict[str, Any]] = []
    prev_group_name = layer_names[0].split(".")[0]
    for name in layer_names:
        cur_group_name = name.split(".")[0]
        if per_block and cur_group_name != prev_group_name:  # the post's improved version
            lr *= lr_mult
            prev_group_name = cur_group_name
        parameters += [{"params": [p for n, p in model.named_parameters() if n == name and p.requires_grad],
                        "lr": lr}]
        if not per_block:  # the post's first version: every tensor 0.9x the one above
            lr *= lr_mult
    return parameters


def one_line(per_block: bool) -> Spec:
    """The same recipe as a spec: depth from the top-level children, or one depth per tensor."""
    return Spec(lr=LR, layer_decay=LayerDecay(LR_MULT, depth="top" if per_block else "tensor"))


def rate_by_name(model: nn.Module, groups: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each parameter's ``lr`` in ``groups``, found by tensor identity (the group's name plays no part)."""
    rate = {id(p): float(g["lr"]) for g in groups for p in g["params"]}
    return {n: rate[id(p)] for n, p in model.named_parameters()}


def compare(per_block: bool, width: int) -> tuple[str, int]:
    """The comparison table of one version, and how many tensors disagree."""
    model = models.resnet18(width=width)
    by_hand = rate_by_name(model, seed_000_by_hand(model, per_block=per_block))
    groups = multilr.build(model, one_line(per_block), backend="torch")
    mine = rate_by_name(model, groups)
    same = {n: math.isclose(by_hand[n], mine[n], rel_tol=RTOL, abs_tol=0.0) for n in by_hand}
    bad = sum(not ok for ok in same.values())
    if per_block:
        blocks: dict[str, list[str]] = {}
        for n in by_hand:
            blocks.setdefault(n.split(".")[0], []).append(n)
        rows = [[block, str(len(names)), f"{by_hand[names[0]]:.8g}", f"{mine[names[0]]:.8g}",
                 groups.plan.param(names[0]).group, "yes" if all(same[n] for n in names) else "NO"]
                for block, names in reversed(blocks.items())]
        header = ["block", "tensors", "seed 000 by hand", 'depth="top"', "multilr group", "same"]
    else:
        names = list(reversed(by_hand))  # the seed's order: head first
        shown = [*names[:4], *names[-3:]]
        rows = [[n, f"{by_hand[n]:.8g}", f"{mine[n]:.8g}", "yes" if same[n] else "NO"] for n in shown]
        rows.insert(4, [f"... {len(names) - len(shown)} more ...", "", "", ""])
        header = ["tensor", "seed 000 by hand", 'depth="tensor"', "same"]
    kind = "per top-level block" if per_block else "per tensor"
    title = (f"seed 000, x{LR_MULT} {kind}: {len(by_hand) - bad} of {len(by_hand)} tensors at the same rate "
             f"(rel. tolerance {RTOL:g}); {len(groups)} multilr groups vs {len(by_hand)} by hand")
    return f"{title}\n{table(header, rows)}", bad


def load_digits(seed: int, test: int = 500) -> tuple[Split, Split]:
    """scikit-learn's digits (no download), upsampled so the ResNet's strides leave a 1x1 map late.

    All ten classes, as the demo's ``Split`` (here ``(N, 3, 16, 16)`` images): train, test.
    """
    from sklearn.datasets import load_digits as sk_load  # type: ignore[import-untyped, unused-ignore]

    data = sk_load()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=16, mode="bilinear").expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    tr, te = order[test:], order[:test]
    return Split(x[tr], y[tr]), Split(x[te], y[te])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=8, help="ResNet stem channels (torchvision: 64)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    bad = 0
    for per_block in (True, False):
        text, wrong = compare(per_block, args.width)
        print(text, end="\n\n")
        bad += wrong

    # Train both block versions from bit-identical weights on the same batches.
    train, test = load_digits(args.seed)
    rows, weights = [], []
    for label in ("seed 000 by hand", "multilr one line"):
        model = models.resnet18(num_classes=10, width=args.width, seed=args.seed)
        if label == "multilr one line":
            groups: list[dict[str, Any]] = multilr.build(model, one_line(True), backend="torch")
        else:
            groups = seed_000_by_hand(model, per_block=True)
        opt = torch.optim.Adam(groups)  # the seed's optimizer; every group brings its own lr
        gen = torch.Generator().manual_seed(args.seed)  # the same batches for both runs
        loss = 0.0
        for _ in range(args.epochs):
            loss = train_epoch(model, opt, train, 64, gen)
        acc = evaluate(model, train), evaluate(model, test)
        rows.append([label, str(len(groups)), f"{loss:.4f}", f"{acc[0]:.4f}", f"{acc[1]:.4f}"])
        weights.append([p.detach() for p in model.parameters()])
    diff = max(float((a - b).abs().max()) for a, b in zip(*weights, strict=True))
    print(f"training on digits ({len(train)} train / {len(test)} test images, "
          f"{args.epochs} epochs, Adam, batch 64)")
    print(table(["run", "groups", "last epoch loss", "train acc", "test acc"], rows), end="\n\n")
    print(f"largest weight difference between the two runs: {diff:.3g}")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
