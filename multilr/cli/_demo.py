"""``multilr demo``: the digits transfer-learning demo (uniform rate vs. a multilr spec).

The command ships with the core, which depends on no framework; the demo itself lives
in ``multilr_torch.demo`` (PyTorch, scikit-learn's bundled digits) and is imported only
when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from multilr._plot import MissingDependencyError
from multilr.cli._common import add_command, positive_float, positive_int
from multilr.cli._progress import progress

__all__ = ["INSTALL", "add_parser"]

INSTALL = "pip install multilr-torch scikit-learn"

EXAMPLES = """
  multilr demo                          # 15 epochs: about 20 s on 2 idle CPU cores
  multilr demo --quick --out /tmp/demo  # 3 epochs
  multilr demo --lr 1e-2 --seed 3       # a hotter rate: the uniform run suffers more
  multilr demo --baseline-lr 1e-3       # a uniform rate tuned down, for comparison

It pretrains a small CNN on digits 0-4, then fine-tunes it on digits 5-9 from 100 images
twice from the same weights: once with one rate for every layer, once with a multilr spec
(stem frozen, each block down from the head at half the rate above). It prints the plan,
the epochs and a results table, and writes accuracy.png and rates.png to --out.
Needs PyTorch and scikit-learn: """ + INSTALL


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "demo",
        help="run the digits transfer-learning demo: a uniform rate vs. a multilr spec",
        description="Fine-tune a pretrained digits CNN at one uniform rate and with a multilr spec, from "
        "the same weights, batches and peak rate, and compare their test accuracy. Runs on CPU; the data "
        "ships with scikit-learn (no download).",
        examples=EXAMPLES,
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="fine-tuning epochs (default 15)")
    length.add_argument("--quick", action="store_true", help="3 fine-tuning epochs (a smoke run)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits, weights and batches (default 0)")
    p.add_argument("--lr", type=positive_float, help="peak rate of both runs (default 3e-3)")
    p.add_argument("--baseline-lr", type=positive_float, help="the uniform run's rate (default: --lr)")
    p.add_argument("--out", type=Path, default=Path("build/demo"), help="folder for the PNGs (build/demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    # torch before scikit-learn, the order the demo was timed in (each brings its own OpenMP
    # runtime); two statements so that import sorting keeps this order
    try:
        from multilr_torch import demo
    except ImportError as exc:
        raise _missing(exc) from None
    try:
        import sklearn.datasets  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
    except ImportError as exc:
        raise _missing(exc) from None
    epochs = args.epochs or (demo.QUICK_EPOCHS if args.quick else demo.EPOCHS)
    lr = args.lr or demo.LR
    demo.run(
        epochs=epochs, seed=args.seed, lr=lr, baseline_lr=args.baseline_lr, out=args.out,
        progress=progress(quiet=args.quiet),
    )


def _missing(exc: ImportError) -> MissingDependencyError:
    return MissingDependencyError(f"the demo needs PyTorch and scikit-learn ({exc}): {INSTALL}")
