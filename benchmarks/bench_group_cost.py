"""What one more parameter group costs torch's fused AdamW, by tensor size (RESULTS.md section 1d).

196 tensors of ``size`` elements each, stepped by three optimizers side by side: one group,
the same tensors again in one group (an A/A control: the noise floor), and 28 groups of 7
with distinct rates. Rounds are interleaved in a shuffled order, so a slow spell of the
machine hits all three alike. Prints the medians and the extra time per group.

Usage::

    .venv/bin/python benchmarks/bench_group_cost.py                  # 2 threads, four sizes
    .venv/bin/python benchmarks/bench_group_cost.py --threads 1 --sizes 8 589824
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

GROUPS, PER_GROUP = 28, 7


def optimizer(size: int, groups: int) -> torch.optim.Optimizer:
    """Fused AdamW over ``GROUPS * PER_GROUP`` tensors with gradients, in 1 or ``GROUPS`` groups."""
    params = [torch.nn.Parameter(torch.randn(size)) for _ in range(GROUPS * PER_GROUP)]
    for p in params:
        p.grad = torch.randn(size)
    if groups == 1:
        return torch.optim.AdamW([{"params": params}], lr=1e-3, fused=True)
    split = [params[i * PER_GROUP : (i + 1) * PER_GROUP] for i in range(GROUPS)]
    return torch.optim.AdamW(
        [{"params": ps, "lr": 1e-3 * 0.9**i} for i, ps in enumerate(split)], lr=1e-3, fused=True
    )


def measure(size: int, rounds: int) -> dict[str, float]:
    """Median step time (s) of each optimizer, interleaved in shuffled order."""
    opts = {"one": optimizer(size, 1), "one, again": optimizer(size, 1), "28 groups": optimizer(size, GROUPS)}
    for opt in opts.values():  # state allocated, caches and pools warm
        for _ in range(3):
            opt.step()
    times: dict[str, list[float]] = {k: [] for k in opts}
    order = list(opts)
    for _ in range(rounds):
        random.shuffle(order)
        for k in order:
            start = time.perf_counter()
            opts[k].step()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 768, 65536, 589824])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); {GROUPS * PER_GROUP} tensors, fused AdamW\n")
    print("| size (elements) | one group | 28 groups | extra per group | A/A control |")
    print("|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        m = measure(size, rounds=200 if size < 10_000 else 30)
        extra = (m["28 groups"] - m["one"]) / (GROUPS - 1)
        print(
            f"| {size:,} | {m['one'] * 1e3:.2f} ms | {m['28 groups'] * 1e3:.2f} ms | {extra * 1e6:.0f} us "
            f"| {m['one, again'] / m['one']:.3f}x |"
        )


if __name__ == "__main__":
    main()
