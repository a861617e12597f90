"""The suite catches wrong backends: real torch backends that apply the scales wrongly.

Each wrong backend is the torch backend with one classic mistake in ``emit``:

* ``scale-gradient`` trains every group at the base rate and multiplies the gradients
  by the scale in a backward hook (the first FastAI.jl implementation, seed 003);
* ``scale-twice`` multiplies the already scaled rate by the scale again (pre-scaled
  ``lr`` plus ``lr_scale``);
* ``drop-scale`` trains every group at the base rate (``lr_scale`` in eager mode).

Every case must fail on each of them, for SGD and for Adam, except one that is not a
mistake: under SGD without weight decay, scaling the gradient *is* scaling the rate
(the update is linear in both), and those cells must pass.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from multilr_torch import TorchBackend

from multilr import Plan
from multilr.testing import Case, TorchLikeHarness, all_cases, check_backend


class _Wrong(TorchBackend):
    def emit(self, model: Any, plan: Plan) -> list[dict[str, Any]]:
        groups = super().emit(model, plan)
        for emitted, group in zip(groups, plan.groups, strict=True):
            if not group.frozen:
                self.mistake(emitted, plan.base_lr, group.scale)
        return groups

    def mistake(self, group: dict[str, Any], base: float, scale: float) -> None:
        raise NotImplementedError


class ScaleGradient(_Wrong):
    name = "scale-gradient"

    def mistake(self, group: dict[str, Any], base: float, scale: float) -> None:
        group["lr"] = base
        for p in group["params"]:
            p.register_hook(lambda grad, s=scale: grad * s)


class ScaleTwice(_Wrong):
    name = "scale-twice"

    def mistake(self, group: dict[str, Any], base: float, scale: float) -> None:
        group["lr"] = group["lr"] * scale


class DropScale(_Wrong):
    name = "drop-scale"

    def mistake(self, group: dict[str, Any], base: float, scale: float) -> None:
        group["lr"] = base


def _equivalent(backend: type[_Wrong], case: Case) -> bool:
    """Whether the mistake changes nothing in this case (then the suite must not flag it)."""
    return backend is ScaleGradient and case.setup.kind == "sgd" and case.setup.weight_decay == 0


@pytest.mark.parametrize("backend", [ScaleGradient, ScaleTwice, DropScale], ids=lambda b: b.name)
@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_wrong_backend_is_caught(backend: type[_Wrong], family: str) -> None:
    cases = [c for c in all_cases() if c.setup.kind.startswith(family)]
    report = check_backend(TorchLikeHarness(torch, backend()), cases=cases)
    for result, case in zip(report.results, cases, strict=True):
        if _equivalent(backend, case):
            assert result.status == "passed", result.describe()
        else:
            assert result.status == "failed", f"{backend.name} was not caught on {case.id}"
            assert any("rate" in m for m in result.messages), result.describe()
    caught = sum(r.status == "failed" for r in report.results)
    assert caught >= len(cases) // 2, f"{backend.name}: only {caught} of {len(cases)} {family} cells failed"


def test_the_correct_backend_passes_the_same_cells() -> None:
    """The control: the unmodified backend, same cells, same harness: all pass."""
    cases = [c for c in all_cases() if c.setup.kind in ("sgd", "adam", "adamw")]
    report = check_backend(TorchLikeHarness(torch, TorchBackend()), cases=cases)
    assert report.ok, report.summary()
