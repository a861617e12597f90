"""``multilr explain SPEC MODEL``: which group, rate and decay each parameter gets, and why.

The check to put in CI next to a training script: it builds nothing and trains
nothing, and it exits 1 when the spec does not fit the model (a rule that matches no
parameter, parameters no rule reaches under ``unmatched: error`` or ``--strict``, two
rules that disagree).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import multilr
from multilr.cli._common import UsageError, add_command, positive_int, read_spec, rich_tables
from multilr.cli._load import load_model

__all__ = ["add_parser", "build_plan"]

EXAMPLES = """
  multilr explain spec.yaml examples/models.py:resnet18     # a factory in a file
  multilr explain spec.yaml models:resnet18 --summary-only  # a module importable from here
  multilr explain '{"lr": 1e-3, "rules": [{"prefix": "fc", "lr_mult": 10}]}' mypkg.nets:model
  multilr explain spec.yaml mynet.py:build --strict --json > plan.json

exit status: 0 the spec fits the model; 1 it does not (coverage: a rule that matches
nothing, parameters left out under unmatched: error or --strict; conflicting rules; a
bad value in the spec); 2 the command line is wrong (missing argument, a SPEC file or
MODEL that cannot be loaded). The message names the rule or parameters at fault.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "explain",
        aliases=("plan",),
        help="print the plan of a spec for a model: every parameter's group, rate and why",
        description="Resolve SPEC against MODEL and print the plan table (one row per parameter: group, "
        "rate, weight decay, frozen, the rule that decided) and the group summary. Nothing is trained and "
        "the model is not changed.",
        examples=EXAMPLES,
    )
    p.add_argument("spec_pos", nargs="?", metavar="SPEC", help="spec: .json/.yaml/.yml file or inline JSON")
    p.add_argument(
        "model_pos",
        nargs="?",
        metavar="MODEL",
        help="MODULE_OR_FILE:NAME: a factory called without arguments, a model class, or a model object",
    )
    p.add_argument("--spec", help=argparse.SUPPRESS)  # the older `multilr plan --spec S --model M`
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--backend", help="backend reading the model (default: the model's framework)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="parameters that no rule, rate or layer decay reaches are an error (as unmatched: error)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the plan as JSON instead of the tables")
    out.add_argument("--summary-only", "--summary", action="store_true", help="only the group summary")
    p.add_argument("--max-rows", type=positive_int, help="parameter rows shown (first and last kept)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    plan = build_plan(args)
    if args.json:
        print(plan.to_json())
        return
    rich = rich_tables()
    text = plan.summary(rich=rich) if args.summary_only else plan.table(rich=rich, max_rows=args.max_rows)
    print(text)
    frozen = [g for g in plan.groups if g.frozen]
    tensors = sum(len(g.params) for g in frozen)
    print(
        f"\nok: {len(plan.params)} tensors in {len(plan.groups)} groups "
        f"({tensors} tensor{'s' * (tensors != 1)} in {len(frozen)} frozen group{'s' * (len(frozen) != 1)})",
        file=sys.stderr,
    )


def _pick(args: argparse.Namespace, name: str) -> str | None:
    pos, opt = getattr(args, f"{name}_pos", None), getattr(args, name, None)
    if pos is not None and opt is not None:
        raise UsageError(f"give {name.upper()} once: as an argument or as --{name}, not both")
    return pos if pos is not None else opt


def build_plan(args: argparse.Namespace) -> multilr.Plan:
    """The plan for ``args.spec`` and ``args.model`` (``explain``'s or ``plot``'s arguments)."""
    spec_text, model_text = _pick(args, "spec"), _pick(args, "model")
    if spec_text is None or model_text is None:
        raise UsageError("SPEC and MODEL are both required, e.g. multilr explain spec.yaml models.py:mlp")
    spec = read_spec(spec_text)
    if getattr(args, "strict", False):
        spec = dataclasses.replace(spec, unmatched="error")
    return multilr.plan(load_model(model_text), spec, backend=args.backend)
