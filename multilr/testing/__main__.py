"""``python -m multilr.testing``: compare traces across environments, list cases.

::

    python -m multilr.testing compare build/conformance --backends torch,oneflow,oneflow-graph
    python -m multilr.testing cases
    python -m multilr.testing figures build/figures
"""

from __future__ import annotations

import argparse
import sys

from multilr.testing._cases import all_cases
from multilr.testing._figures import read_figures
from multilr.testing._trace import compare


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (1 when the comparison fails)."""
    parser = argparse.ArgumentParser(prog="python -m multilr.testing", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="check every backend's traces and every pair; print the matrix")
    cmp.add_argument("directory")
    cmp.add_argument("--backends", required=True, help="comma-separated backends that must all be there")
    sub.add_parser("cases", help="list the shared case ids")
    fig = sub.add_parser("figures", help="print the figures the tests stated (multilr.testing.state_figure)")
    fig.add_argument("directory")
    args = parser.parse_args(argv)
    if args.command == "figures":
        lines = read_figures(args.directory)
        print("\n".join(lines) if lines else "(no figures were stated)")
        return 0
    if args.command == "cases":
        for case in all_cases():
            print(case.id)
        return 0
    result = compare(args.directory, [b for b in args.backends.split(",") if b])
    print(result.matrix())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
