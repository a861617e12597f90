"""Framework-neutral learning-rate schedules and the per-group factors they produce.

A schedule multiplies each group's planned rate by a factor per step, so the rate of
group ``g`` at step ``t`` (counted from 0) is ``plan rate of g x factor[t, g]``. Most
schedules use one factor for every group, which keeps the groups' ratios: what the
framework schedulers do when each group carries its own ``lr`` (and what a scheduler
that writes one scalar into every group, or a ``OneCycleLR`` with a scalar ``max_lr``,
gets wrong). Seed 002's per-group decay gives each group its own factor.

A harness turns a :class:`Schedule` into its framework's scheduler (``kind`` and
``params`` say which); the reference takes the factors of the matching
:mod:`multilr.schedules` shape (:meth:`Schedule.shape`), whose formulas are PyTorch's:

* ``constant``: 1.
* ``step``: ``StepLR(step_size, gamma)``: ``gamma ** (t // step_size)``.
* ``cosine_restarts``: ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min=0)``.
* ``one_cycle``: ``OneCycleLR(max_lr=<each group's rate>, total_steps, pct_start,
  anneal_strategy="linear", div_factor, final_div_factor, three_phase=False)``: linear from
  ``1/div`` up to 1 at step ``pct_start * total - 1``, then linear down to
  ``1/(div * final_div)`` at step ``total - 1``.
* ``inverse``: seed 001's ``lr / (t + 1)``, per group.
* ``group_decay``: seed 002's per-group decay factor: ``f_g ** (t // every)``, ``f_g`` chosen by
  the group's first parameter name prefix.
* ``multilr``: a :mod:`multilr.schedules` schedule (``params["schedule"]``): on PyTorch and
  OneFlow eager it runs as ``LambdaLR``, in OneFlow's nn.Graph through
  ``multilr_oneflow.graph_scheduler``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from multilr import schedules as ml
from multilr._plantypes import Plan

__all__ = ["FRAMEWORK_SCHEDULES", "SCHEDULES", "Schedule"]


@dataclass(frozen=True)
class Schedule:
    """A schedule by kind and parameters.

    Attributes:
        kind: ``constant``, ``step``, ``cosine_restarts``, ``one_cycle``, ``inverse`` or ``group_decay``.
        params: The kind's parameters (see the module docstring).

    Example:
        >>> Schedule("step", {"step_size": 2, "gamma": 0.5}).factor(3)
        0.5
    """

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def factor(self, step: int, group_factor: float = 1.0) -> float:
        """The factor at ``step`` (``group_factor`` is ``f_g`` for ``group_decay``)."""
        if self.kind == "group_decay":
            return float(group_factor ** (step // int(self.params["every"])))
        return self.shape().factor(step)

    def shape(self) -> ml.Schedule:
        """The same factors as a :mod:`multilr.schedules` shape (all kinds but ``group_decay``).

        Those shapes are checked against PyTorch's schedulers step by step
        (``backends/torch/tests/test_schedule_shapes.py``), so the reference does not
        repeat their formulas.
        """
        p = self.params
        if self.kind == "constant":
            return ml.Constant()
        if self.kind == "step":
            return ml.Step(int(p["step_size"]), float(p["gamma"]))
        if self.kind == "cosine_restarts":
            return ml.SGDR(int(p["T_0"]), int(p["T_mult"]))
        if self.kind == "one_cycle":
            return ml.OneCycle(
                int(p["total_steps"]),
                pct_start=float(p["pct_start"]),
                div=float(p["div_factor"]),
                final_div=float(p["final_div_factor"]),
                anneal="linear",
            )
        if self.kind == "inverse":
            return ml.Function(lambda t: 1.0 / (t + 1), name="1/(t+1)")
        if self.kind == "multilr":
            shape: ml.Schedule = p["schedule"]
            return shape
        raise ValueError(f"schedule kind {self.kind!r} has no single shape")

    def group_factors(self, plan: Plan) -> list[float]:
        """``f_g`` for every group of ``plan`` (1.0 for every schedule but ``group_decay``).

        ``params["factors"]`` maps name prefixes to factors; a group takes the factor of
        the first prefix its first parameter starts with, else ``params["default"]``.
        """
        if self.kind != "group_decay":
            return [1.0] * len(plan.groups)
        factors: Mapping[str, float] = self.params["factors"]
        default = float(self.params["default"])
        out = []
        for group in plan.groups:
            first = group.params[0]
            out.append(next((float(f) for pre, f in factors.items() if first.startswith(pre)), default))
        return out

    def factors(self, plan: Plan, steps: int) -> NDArray[np.float64]:
        """Factor per step and group: shape ``(steps, len(plan.groups))``."""
        per_group = self.group_factors(plan)
        return np.array([[self.factor(t, f) for f in per_group] for t in range(steps)], dtype=np.float64)


#: The schedules the shared cases use, by name. Every one but ``constant`` changes the
#: rate at every step of the cases' six (seed 002 decays every 10 batches; here every step).
SCHEDULES: Mapping[str, Schedule] = {
    "constant": Schedule("constant"),
    "step": Schedule("step", {"step_size": 1, "gamma": 0.7}),
    "cosine_restarts": Schedule("cosine_restarts", {"T_0": 2, "T_mult": 2}),
    "one_cycle": Schedule(
        "one_cycle", {"total_steps": 6, "pct_start": 0.5, "div_factor": 4.0, "final_div_factor": 2.0}
    ),
    "inverse": Schedule("inverse"),
    "group_decay": Schedule("group_decay", {"every": 1, "factors": {"head.": 0.6}, "default": 0.85}),
    # multilr's own schedules (issue 5): exact built-in forms in the graph ...
    "ml_warmup_cosine": Schedule(
        "multilr", {"schedule": ml.Warmup(ml.Cosine(4, final=0.1), steps=2, start=0.25)}
    ),
    "ml_sgdr": Schedule("multilr", {"schedule": ml.SGDR(2, period_mult=2, cycle_mult=0.7, final=0.1)}),
    # ... and tabulated there (no built-in form): a rising cosine, cyclical rates, seed 001's function
    "ml_one_cycle": Schedule("multilr", {"schedule": ml.OneCycle(6, pct_start=0.5, div=4, final_div=2)}),
    "ml_cyclical": Schedule("multilr", {"schedule": ml.Cyclical(0.3, 1.0, step_up=2, mode="triangular2")}),
    "ml_function": Schedule("multilr", {"schedule": ml.Function(lambda t: 1.0 / (t + 1), name="1/(i+1)")}),
}

#: The framework schedulers' cases (every optimizer) and multilr's (a few optimizers).
FRAMEWORK_SCHEDULES = tuple(k for k, v in SCHEDULES.items() if v.kind != "multilr")
