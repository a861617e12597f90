"""``multilr lr-find TARGET``: the range test, with every group at its planned ratio."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multilr._finder import METHODS, FinderJob
from multilr._plot import terminal_view
from multilr.cli._common import UsageError, add_command, positive_float
from multilr.cli._load import load_target
from multilr.cli._plot import add_output_args
from multilr.cli._progress import progress
from multilr.errors import MultiLRError

__all__ = ["add_parser"]

EXAMPLES = """
  multilr lr-find examples/digits_finetune.py:finder_job -o build/demo/finder.png
  multilr lr-find train.py:finder --num-it 200 --end-lr 1 --json finder.json --quiet

TARGET returns a multilr.FinderJob or a tuple (model, optimizer, step_fn[, plan]); step_fn()
trains one batch and returns its loss. The model and optimizer are restored afterwards.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "lr-find",
        help="run the learning-rate finder on a job",
        description="Range test: train at exponentially rising rates with every group at its planned ratio, "
        "then restore the model and optimizer. TARGET: MODULE_OR_FILE:CALLABLE returning a multilr.FinderJob "
        "or (model, optimizer, step_fn[, plan]).",
        examples=EXAMPLES,
    )
    p.add_argument("target", help="MODULE_OR_FILE:CALLABLE, e.g. examples/digits_finetune.py:finder_job")
    p.add_argument("--start-lr", type=positive_float, help="first base rate (default 1e-7)")
    p.add_argument("--end-lr", type=positive_float, help="last base rate (default 10)")
    p.add_argument("--num-it", type=int, help="steps (default 100)")
    p.add_argument("--diverge", type=float, help="stop when the smoothed loss exceeds this x the best (4)")
    p.add_argument("--method", choices=METHODS, help="suggestion rule (default valley)")
    p.add_argument("--json", dest="json_out", help="also write the result as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_output_args(p)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    job = _as_job(load_target(args.target, "TARGET")(), args.target)
    options = {
        k: v
        for k, v in (
            ("start_lr", args.start_lr),
            ("end_lr", args.end_lr),
            ("num_it", args.num_it),
            ("diverge", args.diverge),
            ("method", args.method),
        )
        if v is not None
    }
    total = {**job.options, **options}.get("num_it", 100)  # the bar's length; the finder checks the value
    with progress(quiet=args.quiet).task("lr-find", total=total if isinstance(total, int) else 0) as advance:
        step_fn = job.step_fn

        def step() -> Any:
            loss = step_fn()
            advance(1)
            return loss

        result = dataclasses.replace(job, step_fn=step).run(**options)
    print(result.summary(width=args.width, ascii=args.ascii))
    if args.terminal:
        print(terminal_view(result.rates, width=args.width, ascii=args.ascii))
    if args.output:
        print(f"wrote {result.plot(args.output)}")
    if args.json_out:
        path = Path(args.json_out)
        try:
            path.write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
        except OSError as exc:
            raise MultiLRError(f"cannot write {str(path)!r}: {exc.strerror}") from None
        print(f"wrote {path}")


def _as_job(value: Any, target: str) -> FinderJob:
    if isinstance(value, FinderJob):
        return value
    if isinstance(value, Mapping):
        try:
            return FinderJob(**value)
        except TypeError as exc:
            raise UsageError(f"TARGET {target!r} returned a mapping FinderJob does not take: {exc}") from None
    if isinstance(value, (tuple, list)) and len(value) in (3, 4):
        return FinderJob(*value)
    raise UsageError(
        f"TARGET {target!r} returned {type(value).__name__}; it must return a multilr.FinderJob "
        "or a tuple (model, optimizer, step_fn[, plan])"
    )
