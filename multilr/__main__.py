"""``python -m multilr``: the command line (see :mod:`multilr.cli`)."""

import sys

from multilr.cli import main

if __name__ == "__main__":
    sys.exit(main())
