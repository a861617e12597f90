"""Schedules that drive every group through its scale, so the spec's ratios always hold.

A schedule is a factor per optimizer step; each group trains at its planned rate times
that factor. On PyTorch and OneFlow eager a schedule *is* a ``LambdaLR`` function::

    from multilr.schedules import OneCycle
    sched = torch.optim.lr_scheduler.LambdaLR(opt, OneCycle(total=1000))

(every group peaks at its own planned rate). Shapes: :class:`Constant`, :class:`Step`,
:class:`MultiStep`, :class:`Exponential`, :class:`Inverse`, :class:`Cosine`, :class:`SGDR`,
:class:`OneCycle`, :class:`Cyclical`, :class:`Polynomial`, :class:`Warmup` (in front of
any other), :class:`Chain` (one after another) and :class:`Function` (any function of
the step). Each has a mapping form for YAML/JSON specs (:func:`schedule_from_dict`).
"""

from multilr.schedules._base import Chain, Schedule
from multilr.schedules._io import KINDS, schedule_from_dict, schedule_to_dict
from multilr.schedules._shapes import (
    SGDR,
    Constant,
    Cosine,
    Cyclical,
    Exponential,
    Function,
    Inverse,
    MultiStep,
    OneCycle,
    Polynomial,
    Step,
    Warmup,
)

__all__ = [
    "KINDS",
    "SGDR",
    "Chain",
    "Constant",
    "Cosine",
    "Cyclical",
    "Exponential",
    "Function",
    "Inverse",
    "MultiStep",
    "OneCycle",
    "Polynomial",
    "Schedule",
    "Step",
    "Warmup",
    "schedule_from_dict",
    "schedule_to_dict",
]
