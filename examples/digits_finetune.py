"""Transfer learning on scikit-learn's digits: one uniform rate vs. a multilr spec.

This is ``multilr demo``. Its code is ``multilr_torch/demo.py``
(``backends/torch/src/multilr_torch/demo.py``): the spec is :func:`spec` there, the two
runs are ``_run``; the data, model and loop are the ``_demo_*`` modules beside it.
It ships in the ``multilr-torch`` package so that the installed command can run it.

A small CNN is pretrained on digits 0-4, then fine-tuned on digits 5-9 from 100 images,
twice from the same weights: at one uniform rate, and with the stem frozen and each
block at half the rate of the one above (layer-wise decay). Over seeds 0-7 the spec
averaged 0.957 test accuracy against the uniform rate's 0.937 at the same peak rate;
a uniform rate tuned down to 1e-3 does as well: what the spec buys is robustness to
the rate. See the module docstring of ``multilr_torch.demo`` for the numbers.

Runs on CPU in about 20 seconds (2 idle cores); nothing is downloaded::

    python examples/digits_finetune.py            # = multilr demo (plan, epochs, results, PNGs)
    python examples/digits_finetune.py --quick    # 3 epochs
    multilr lr-find examples/digits_finetune.py:finder_job -o build/demo/finder.png
"""

from __future__ import annotations

import sys

from multilr_torch.demo import finder_job, run, spec

from multilr.cli import main

__all__ = ["finder_job", "run", "spec"]

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
