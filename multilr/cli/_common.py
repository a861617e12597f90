"""What every subcommand shares: the usage-error type, the help layout, reading a spec."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from multilr._spec import Spec
from multilr._text import parse_json
from multilr.errors import SpecError

__all__ = ["UsageError", "add_command", "positive_float", "positive_int", "read_spec", "rich_tables"]


class UsageError(SpecError):
    """The command line itself is wrong: a missing argument, a target or file that cannot be loaded.

    Exit status 2, as for argparse's own errors; a :class:`~multilr.MultiLRError` about
    what was read (the spec, the plan) is status 1. A :class:`SpecError`, so
    :func:`load_target` keeps its documented exception.
    """


def add_command(
    sub: Any, name: str, *, help: str, description: str, examples: str, aliases: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` ends with worked examples, laid out as written."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        aliases=list(aliases),
        help=help,
        description=textwrap.fill(description, 88),  # the raw formatter keeps the examples' layout, not this
        epilog="examples:\n" + examples.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1 (a bad value is a usage error, status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def read_spec(text: str, where: str = "SPEC") -> Spec:
    """A spec from a ``.json``/``.yaml`` file or inline JSON (``{"lr": 0.01, ...}``).

    A file that is not there is a usage error; what the file says is checked by
    :class:`Spec` (a :class:`SpecError`, status 1).
    """
    if text.lstrip().startswith("{"):
        return Spec.from_dict(parse_json(text, where))
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"{where}: no such spec file {text!r} (give a .json/.yaml file or inline JSON)")
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise UsageError(f"{where}: {text!r} is not a .json, .yaml or .yml file")
    return Spec.from_file(path)


def rich_tables() -> bool | None:
    """``False`` when colour is switched off (``NO_COLOR``, ``TERM=dumb``), else let the table decide.

    The plan table is drawn with rich only when stdout is a terminal, so CI logs and
    pipes get plain text either way.
    """
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb" or not sys.stdout.isatty():
        return False
    return None


def positive_float(text: str) -> float:
    """Argparse type: a finite number > 0 (a rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value
