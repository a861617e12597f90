"""Harnesses the conformance-suite tests share (``test_testing.py``, ``test_testing_strictness.py``)."""

from __future__ import annotations

from multilr.testing import Case, Observation


class Fixed:
    """A harness that returns a prepared observation (or raises it): a backend's output made by hand."""

    backend = "fixed"

    def __init__(self, obs: Observation | Exception) -> None:
        self.obs = obs

    def run(self, case: Case) -> Observation:
        if isinstance(self.obs, Exception):
            raise self.obs
        return self.obs
