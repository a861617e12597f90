"""The ``multilr`` command: explain a spec for a model, plot rates, find a rate, run the demo.

::

    multilr explain SPEC MODEL [--strict] [--json | --summary-only]   (alias: plan)
    multilr plot HISTORY.json -o rates.png [--terminal]
    multilr plot --spec SPEC --model MODEL --steps N [--schedule S] -o rates.png
    multilr lr-find MODULE:CALLABLE -o finder.png [--start-lr 1e-7 --end-lr 10 --num-it 100]
    multilr demo [--quick | --epochs N] [--out DIR] [--seed S]

``MODEL`` is ``MODULE_OR_FILE:NAME``: a dotted module path (importable from the current
folder) or a ``.py`` file, a colon, and a factory taking no arguments, a model class, or
a model object (``examples/models.py:resnet18``). Every subcommand's ``--help`` ends with
examples. Exit status: 0 ok; 1 multilr refused what it read (a coverage error, a
conflict, a bad spec value, a missing optional package); 2 the command line is wrong.
Errors are one line on stderr, no traceback. Also ``python -m multilr ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import multilr
from multilr.cli import _demo, _explain, _lr_find, _plot
from multilr.cli._common import UsageError
from multilr.cli._load import load_model, load_target
from multilr.cli._progress import Progress, progress
from multilr.errors import MultiLRError

__all__ = ["Progress", "UsageError", "load_model", "load_target", "main", "progress"]

EXAMPLES = """
  multilr explain spec.yaml examples/models.py:resnet18   # the plan table and group summary
  multilr demo --quick                                    # the digits demo (needs torch, scikit-learn)
  multilr lr-find examples/digits_finetune.py:finder_job -o finder.png
  multilr plot --spec spec.yaml --model examples/models.py:mlp --steps 100 --ascii

exit status: 0 ok; 1 multilr refused the spec, plan or job (message names the rule or
parameter); 2 bad command line. `multilr COMMAND --help` shows each command's examples.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 refused, 2 bad usage).

    Example:
        >>> import tempfile, pathlib
        >>> from multilr import RateHistory
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
    except UsageError as exc:
        print(f"multilr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MultiLRError as exc:
        print(f"multilr {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `multilr ... | head`: the reader left; not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the interpreter's final flush is quiet
        return 0
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multilr",
        description="Discriminative (layer-wise) learning rates: check a spec against a model, plot rates, "
        "find a rate, run the demo.",
        epilog="examples:\n" + EXAMPLES.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"multilr {multilr.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (_explain, _plot, _lr_find, _demo):
        command.add_parser(sub)
    return parser
