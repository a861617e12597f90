"""``multilr plot``: each group's rate per step, from a saved history or planned from a spec."""

from __future__ import annotations

import argparse
from pathlib import Path

from multilr._history import RateHistory
from multilr._plot import plot_rates, terminal_view
from multilr._text import parse_json, parse_yaml
from multilr._timeline import planned_rates
from multilr.cli._common import UsageError, add_command, positive_int
from multilr.cli._explain import build_plan
from multilr.schedules import Schedule, schedule_from_dict

__all__ = ["add_output_args", "add_parser"]

EXAMPLES = """
  multilr plot build/run/rates.json -o rates.png         # a Recorder's saved history
  multilr plot build/run/rates.json --ascii              # text only: sparklines per group
  multilr plot --spec spec.yaml --model examples/models.py:resnet18 --steps 1000 \\
      --schedule '{"kind": "one_cycle", "total": 1000}' -o planned.png
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "plot",
        help="plot a rate history (JSON) or a spec's planned rates",
        description="Plot each group's rate per step: a recorded or saved history (HISTORY.json), or the "
        "rates a spec and schedule plan for a model (--spec, --model, --steps). Without -o the text view "
        "is printed (no matplotlib needed).",
        examples=EXAMPLES,
    )
    p.add_argument("history", nargs="?", help="a rate history file (multilr.rates/1 JSON)")
    p.add_argument("--spec", help="spec: .json/.yaml/.yml file or inline JSON")
    p.add_argument("--model", help="MODULE_OR_FILE:NAME, the model or its factory (examples/models.py:mlp)")
    p.add_argument("--backend", help="backend reading the model (default: the model's framework)")
    p.add_argument("--schedule", help="a schedule: .json/.yaml file or inline JSON, e.g. "
                   '\'{"kind": "one_cycle", "total": 100}\' (default: constant)')
    p.add_argument("--steps", type=positive_int, help="steps to plan (with --spec)")
    p.add_argument("--linear", action="store_true", help="linear rate axis (default: log)")
    p.add_argument("--title", help="figure title")
    add_output_args(p)
    p.set_defaults(run=_run)


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write a PNG here (needs matplotlib: pip install 'multilr[plot]')")
    p.add_argument("--terminal", action="store_true", help="print the text view too when writing a PNG")
    p.add_argument("--width", type=positive_int, default=40, help="sparkline width in characters (40)")
    p.add_argument("--ascii", action="store_true", help="plain ASCII instead of block characters")


def _run(args: argparse.Namespace) -> None:
    if args.history and (args.spec or args.model):
        raise UsageError("give a HISTORY file or --spec with --model, not both")
    if args.history:
        for flag in ("schedule", "steps", "backend"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag} needs --spec and --model (a HISTORY file has its rates already)")
        if not Path(args.history).is_file():
            raise UsageError(f"cannot read rate history {args.history!r}: no such file")
        history = RateHistory.load(args.history)
    elif args.spec and args.model:
        if args.steps is None:
            raise UsageError("--steps is required with --spec (how many optimizer steps to plan)")
        history = planned_rates(build_plan(args), args.steps, _schedule(args.schedule))
    else:
        raise UsageError("give a HISTORY file, or --spec and --model (with --steps)")
    if args.output:
        out = plot_rates(history, args.output, log=not args.linear, title=args.title)
        print(f"wrote {out}")
    if args.terminal or not args.output:
        print(terminal_view(history, width=args.width, log=not args.linear, ascii=args.ascii))


def _schedule(text: str | None) -> Schedule | None:
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        return schedule_from_dict(parse_json(text, "--schedule"), "--schedule")
    path = Path(text)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--schedule: cannot read {text!r} ({exc.strerror}); give a file or JSON") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        data = parse_yaml(raw, f"--schedule {text!r}")
    else:
        data = parse_json(raw, f"--schedule {text!r}")
    return schedule_from_dict(data, "--schedule")
