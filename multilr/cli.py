"""The ``multilr`` command: plot rates, print a plan, run the learning-rate finder.

::

    multilr plot HISTORY.json -o rates.png [--terminal]
    multilr plot --spec SPEC.yaml --model MODULE:FACTORY --steps N [--schedule S] -o rates.png
    multilr plan --spec SPEC.yaml --model MODULE:FACTORY
    multilr lr-find MODULE:FACTORY -o finder.png [--start-lr 1e-7 --end-lr 10 --num-it 100]

``MODULE:FACTORY`` is a dotted module path or a ``.py`` file, a colon, and a callable
taking no arguments (``examples/models.py:resnet18``). For ``--model`` it returns the
model; for ``lr-find`` a :class:`multilr.FinderJob` or a tuple ``(model, optimizer,
step_fn[, plan])``. A file's folder is put on ``sys.path`` first, so it can import its
neighbours. Without ``-o`` the text view is printed (no matplotlib needed). Bad input
exits with status 2 and a one-line message; also ``python -m multilr ...``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import multilr
from multilr._finder import METHODS, FinderJob
from multilr._history import RateHistory
from multilr._plot import plot_rates, terminal_view
from multilr._text import parse_json, parse_yaml
from multilr._timeline import planned_rates
from multilr.errors import MultiLRError, SpecError
from multilr.schedules import Schedule, schedule_from_dict

__all__ = ["load_target", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input).

    Example:
        >>> import tempfile, pathlib
        >>> h = RateHistory(("body", "head"), (0, 1), {"body": (0.1, 0.05), "head": (1.0, 0.5)})
        >>> path = h.save(pathlib.Path(tempfile.mkdtemp()) / "rates.json")
        >>> main(["plot", str(path), "--ascii"])
        rates of 2 groups over steps 0..1 (2 steps); sparklines share one log scale 0.05..1
        group  start  min   max  end   rate over the steps
        -----  -----  ----  ---  ----  -------------------
        body   0.1    0.05  0.1  0.05  -.
        head   1      0.5   1    0.5   #+
        0
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own message for bad usage (status 2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        args.run(args)
    except MultiLRError as exc:
        print(f"multilr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `multilr ... | head`: the reader left; not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the interpreter's final flush is quiet
        return 0
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multilr", description="Discriminative learning rates: tools.")
    parser.add_argument("--version", action="version", version=f"multilr {multilr.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "plot",
        help="plot a rate history (JSON) or a spec's planned rates",
        description="Plot each group's rate per step: a recorded or saved history (HISTORY.json), or the "
        "rates a spec and schedule plan for a model (--spec, --model, --steps).",
    )
    p.add_argument("history", nargs="?", help="a rate history file (multilr.rates/1 JSON)")
    _model_args(p)
    p.add_argument("--schedule", help="a schedule: .json/.yaml file or inline JSON, e.g. "
                   '\'{"kind": "one_cycle", "total": 100}\' (default: constant)')
    p.add_argument("--steps", type=int, help="steps to plan (with --spec)")
    p.add_argument("--linear", action="store_true", help="linear rate axis (default: log)")
    p.add_argument("--title", help="figure title")
    _output_args(p)
    p.set_defaults(run=_plot)

    p = sub.add_parser("plan", help="print the plan table of a spec for a model")
    _model_args(p)
    p.add_argument("--max-rows", type=int, default=None, help="parameter rows shown (head and tail)")
    p.add_argument("--summary", action="store_true", help="only the group lines")
    p.set_defaults(run=_plan)

    p = sub.add_parser(
        "lr-find",
        help="run the learning-rate finder on a job",
        description="Range test: train at exponentially rising rates with every group at its planned ratio, "
        "then restore the model and optimizer. TARGET: MODULE_OR_FILE:CALLABLE returning a multilr.FinderJob "
        "or (model, optimizer, step_fn[, plan]).",
    )
    p.add_argument("target", help="MODULE_OR_FILE:CALLABLE, e.g. examples/digits_finetune.py:finder_job")
    p.add_argument("--start-lr", type=float, help="first base rate (default 1e-7)")
    p.add_argument("--end-lr", type=float, help="last base rate (default 10)")
    p.add_argument("--num-it", type=int, help="steps (default 100)")
    p.add_argument("--diverge", type=float, help="stop when the smoothed loss exceeds this x the best (4)")
    p.add_argument("--method", choices=METHODS, help="suggestion rule (default valley)")
    p.add_argument("--json", dest="json_out", help="also write the result as JSON to this file")
    _output_args(p)
    p.set_defaults(run=_lr_find)
    return parser


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", help="spec: .json/.yaml/.yml file or inline JSON")
    p.add_argument("--model", help="MODULE_OR_FILE:FACTORY returning the model (examples/models.py:mlp)")
    p.add_argument("--backend", help="backend reading the model (default: the model's framework)")


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write a PNG here (needs matplotlib: pip install 'multilr[plot]')")
    p.add_argument("--terminal", action="store_true", help="print the text view too when writing a PNG")
    p.add_argument("--width", type=int, default=40, help="sparkline width in characters (default 40)")
    p.add_argument("--ascii", action="store_true", help="plain ASCII instead of block characters")


# -- commands --------------------------------------------------------------------------


def _plot(args: argparse.Namespace) -> None:
    if args.history and (args.spec or args.model):
        raise SpecError("give a HISTORY file or --spec with --model, not both")
    if args.history:
        for flag in ("schedule", "steps", "backend"):
            if getattr(args, flag) is not None:
                raise SpecError(f"--{flag} needs --spec and --model (a HISTORY file has its rates already)")
        history = RateHistory.load(args.history)
    elif args.spec and args.model:
        if args.steps is None:
            raise SpecError("--steps is required with --spec (how many optimizer steps to plan)")
        plan = _build_plan(args)
        history = planned_rates(plan, args.steps, _schedule(args.schedule))
    else:
        raise SpecError("give a HISTORY file, or --spec and --model (with --steps)")
    if args.output:
        out = plot_rates(history, args.output, log=not args.linear, title=args.title)
        print(f"wrote {out}")
    if args.terminal or not args.output:
        print(terminal_view(history, width=args.width, log=not args.linear, ascii=args.ascii))


def _plan(args: argparse.Namespace) -> None:
    plan = _build_plan(args)
    print(plan.summary() if args.summary else plan.table(max_rows=args.max_rows))


def _lr_find(args: argparse.Namespace) -> None:
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
    result = job.run(**options)
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


# -- inputs ----------------------------------------------------------------------------


def _build_plan(args: argparse.Namespace) -> multilr.Plan:
    if not (args.spec and args.model):
        raise SpecError("--spec and --model are both required")
    spec: Any = args.spec
    if spec.lstrip().startswith("{"):
        spec = parse_json(spec, "--spec")
    model = load_target(args.model, "--model")()
    return multilr.plan(model, spec, backend=args.backend)


def _schedule(text: str | None) -> Schedule | None:
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        return schedule_from_dict(parse_json(text, "--schedule"), "--schedule")
    path = Path(text)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"--schedule: cannot read {text!r} ({exc.strerror}); give a file or JSON") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        data = parse_yaml(raw, f"--schedule {text!r}")
    else:
        data = parse_json(raw, f"--schedule {text!r}")
    return schedule_from_dict(data, "--schedule")


def load_target(text: str, where: str = "target") -> Any:
    """The callable named by ``MODULE_OR_FILE:CALLABLE`` (not called).

    Raises:
        SpecError: No colon, a module or file that cannot be imported, or a missing or
            non-callable attribute.

    Example:
        >>> load_target("multilr.schedules:Cosine")(10).factor(10)
        0.0
    """
    source, sep, attr = text.rpartition(":")
    if not sep or not source or not attr:
        raise SpecError(f"{where} {text!r}: expected MODULE_OR_FILE:CALLABLE, e.g. examples/models.py:mlp")
    if source.endswith(".py") or "/" in source or "\\" in source:
        module = _load_file(Path(source), where)
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as exc:
            raise SpecError(f"{where}: cannot import {source!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            own = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
            known = sorted(n for n in own if getattr(vars(module)[n], "__module__", None) == module.__name__)
            names = ", ".join(known) or "none"
            raise SpecError(f"{where}: {source!r} has no {attr!r}; its callables: {names}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError(f"{where}: {text!r} is a {type(obj).__name__}, not a callable")
    return obj


def _load_file(path: Path, where: str) -> Any:
    if not path.is_file():
        raise SpecError(f"{where}: no such file {str(path)!r}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the file's own imports of its neighbours (as `python file.py` does)
    name = f"_multilr_target_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"{where}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise SpecError(f"{where}: {str(path)!r} failed to import: {exc}") from None
    return module


def _as_job(value: Any, target: str) -> FinderJob:
    if isinstance(value, FinderJob):
        return value
    if isinstance(value, Mapping):
        try:
            return FinderJob(**value)
        except TypeError as exc:
            raise SpecError(f"TARGET {target!r} returned a mapping FinderJob does not take: {exc}") from None
    if isinstance(value, (tuple, list)) and len(value) in (3, 4):
        return FinderJob(*value)
    raise SpecError(
        f"TARGET {target!r} returned {type(value).__name__}; it must return a multilr.FinderJob "
        "or a tuple (model, optimizer, step_fn[, plan])"
    )
