"""The conformance suite on ``torch``: every shared case, checked against the NumPy reference.

PyTorch's formulas are the reference's, so no cell is an expected failure here. With
``MULTILR_TRACES`` set, every cell is recorded for the cross-environment comparison.
"""

from __future__ import annotations

import pytest
import torch

from multilr.testing import Cell, TorchLikeHarness, assert_conformance, conformance_cells

HARNESS = TorchLikeHarness(torch, "torch")

#: None: PyTorch 2.13 matches the reference in every case.
EXPECTED: dict[str, str] = {}


@pytest.mark.parametrize("cell", conformance_cells("torch", EXPECTED))
def test_conformance(cell: Cell) -> None:
    assert_conformance(HARNESS, cell)
