"""Test set-up for the torch backend.

The reference models live in ``examples/models.py``; pytest's ``pythonpath`` setting
(pyproject.toml) puts ``examples/`` on ``sys.path``, so the tests ``import models``.
"""

from __future__ import annotations

import pytest
import torch


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
