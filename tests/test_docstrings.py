"""Every public function, and every schedule, shows how it is called: an ``Example:`` doctest.

The examples run as doctests (``--doctest-modules``), so they are checked, not only present;
this test makes sure a new public function does not arrive without one.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import multilr.schedules
from multilr.schedules import Schedule

#: The modules whose ``__all__`` is the public API.
PUBLIC = ("multilr", "multilr.schedules", "multilr.testing", "multilr.backend", "multilr.errors")


def _public_functions() -> list[tuple[str, object]]:
    out = []
    for name in PUBLIC:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isfunction(obj):
                out.append((f"{name}.{attr}", obj))
    return out


def _schedules() -> list[tuple[str, object]]:
    return [
        (f"multilr.schedules.{attr}", obj)
        for attr in multilr.schedules.__all__
        if inspect.isclass(obj := getattr(multilr.schedules, attr)) and issubclass(obj, Schedule)
        and obj is not Schedule
    ]


def has_example(obj: object) -> bool:
    """Whether ``obj``'s own docstring holds a doctest under an ``Example:`` heading."""
    doc = inspect.getdoc(obj) or ""
    return "Example:" in doc and ">>> " in doc.split("Example:", 1)[1]


@pytest.mark.parametrize(
    ("name", "obj"), [pytest.param(name, obj, id=name) for name, obj in _public_functions() + _schedules()]
)
def test_public_api_has_an_example(name: str, obj: object) -> None:
    assert has_example(obj), f"{name}: its docstring has no 'Example:' section with a doctest"


def test_the_check_sees_a_missing_example() -> None:
    def documented() -> None:
        """Does nothing.

        Example:
            >>> documented()
        """

    def undocumented() -> None:
        """Does nothing; ``>>>`` alone in prose is no example."""

    assert has_example(documented) and not has_example(undocumented)
    assert len(_public_functions()) >= 20 and len(_schedules()) >= 12
