"""Test set-up for the torch backend: makes the shared reference models importable.

The reference models live in ``tests/models.py`` at the repository root. pytest runs
with ``--import-mode=importlib``, which does not put test folders on ``sys.path``, so
this conftest adds that folder; the tests then ``import models``.
"""

from __future__ import annotations

import pathlib
import sys

_SHARED_TESTS = pathlib.Path(__file__).resolve().parents[3] / "tests"
if str(_SHARED_TESTS) not in sys.path:
    sys.path.insert(0, str(_SHARED_TESTS))


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Run each test on one intra-op thread.

    The models here are tiny; with several OpenMP threads on a loaded 2-core machine a
    float64 ResNet step took ~100x longer (thread spin-waiting), one thread keeps the
    folder fast. Restored afterwards, so other test folders are unaffected.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
