"""Deep bit-for-bit equality of nested state, for tests on any framework.

Tests of exact restoration (a failed call changed nothing, a finder put everything back,
a resume equals the uninterrupted run) compare snapshots: dicts, lists and tuples of
plain values and arrays. Tensors are compared through NumPy (``detach().cpu().numpy()``:
torch and OneFlow both have it), dtype included, so one helper serves both environments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["assert_bit_identical"]


def _array(value: Any) -> np.ndarray | None:
    """``value`` as an array when it is one (NumPy, or a framework tensor), else ``None``."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        tensor = value.detach()
        return np.asarray((tensor.cpu() if hasattr(tensor, "cpu") else tensor).numpy())
    return None


def assert_bit_identical(got: Any, want: Any, where: str = "") -> None:
    """Assert ``got`` equals ``want``: same nesting and types, arrays/tensors bit for bit.

    Args:
        got: The state now.
        want: The state it must equal (the snapshot taken before).
        where: A label for the top level; the message names the first difference
            below it (``state.opt.state[0].exp_avg``).

    Raises:
        AssertionError: At the first difference, naming where it is.

    Example:
        >>> import numpy as np
        >>> assert_bit_identical({"w": np.ones(2), "step": 3}, {"w": np.ones(2), "step": 3})
        >>> assert_bit_identical({"w": np.zeros(2)}, {"w": np.ones(2)}, "state")
        Traceback (most recent call last):
        AssertionError: got state.w changed, should be bit-identical
    """
    # explicit raises, not assert statements: they hold under ``python -O`` and keep
    # the message as written (pytest rewrites asserts in modules it imports)
    expected = _array(want)
    if expected is not None:
        actual = _array(got)
        if actual is None or actual.dtype != expected.dtype:
            raise AssertionError(
                f"got {where} as {type(got).__name__} {getattr(actual, 'dtype', '')}, should be a "
                f"{expected.dtype} array or tensor"
            )
        if not np.array_equal(actual, expected):
            raise AssertionError(f"got {where} changed, should be bit-identical")
    elif isinstance(want, dict):
        if not isinstance(got, dict) or got.keys() != want.keys():
            shown = sorted(map(str, got)) if isinstance(got, dict) else repr(got)
            raise AssertionError(f"got keys {shown} at {where}, should be {sorted(map(str, want))}")
        for k in want:
            assert_bit_identical(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, (list, tuple)):
        if type(got) is not type(want) or len(got) != len(want):
            raise AssertionError(
                f"got {where} changed ({got!r:.80}), should be a {type(want).__name__} of {len(want)}"
            )
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_bit_identical(a, b, f"{where}[{i}]")
    elif got != want:
        raise AssertionError(f"got {where} = {got!r}, should be {want!r}")
