"""multilr schedules inside OneFlow's nn.Graph: compiled to schedulers the graph can run.

Eager OneFlow runs any :class:`multilr.schedules.Schedule` as a ``LambdaLR`` function,
but nn.Graph cannot run ``LambdaLR``: it compiles the schedule into the graph at the first
call. So :func:`graph_scheduler` rewrites the schedule as a ``SequentialLR`` of the
built-in schedulers the graph runs, each giving exactly the schedule's factors on its
stretch of steps. With ``oneflow-graph`` groups every group holds the same base ``lr``
(its scale is in ``lr_scale``), so a floor or end rate given to OneFlow as an absolute
value (``eta_min``, ``end_learning_rate``) is ``factor x base`` and still per group.

What has no exact built-in form (a cosine that rises, as in ``OneCycle(anneal="cos")``;
an exponential warm-up; cyclical rates; a Python function) is tabulated when the run's
length is given (``total_steps``): one ``ConstantLR`` per run of equal factors. Without
it, those are refused with an alternative named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from multilr import UnsupportedFeatureError
from multilr.schedules import (
    SGDR,
    Chain,
    Constant,
    Cosine,
    Exponential,
    MultiStep,
    OneCycle,
    Polynomial,
    Schedule,
    Step,
    Warmup,
)
from multilr_oneflow._load import import_oneflow

__all__ = ["graph_scheduler"]

#: ``ConstantLR``'s ``total_iters`` for "for ever" (int64 in the graph's config).
_FOREVER = 2**62

Make = Callable[[Any, float], Any]  # (optimizer, base lr) -> scheduler


@dataclass(frozen=True)
class _Segment:
    make: Make
    length: int | None  # None: runs to the end
    factors: tuple[float, ...] = ()  # what ConstantLR / LinearLR are given: each must be in [0, 1]


def graph_scheduler(optimizer: Any, schedule: Schedule, *, total_steps: int | None = None) -> Any:
    """A OneFlow scheduler that nn.Graph runs, giving ``schedule``'s factors exactly.

    Pass it to :func:`multilr_oneflow.add_optimizer` as ``lr_sch``.

    Args:
        optimizer: A ``flow.optim`` optimizer built from ``backend="oneflow-graph"`` groups.
        schedule: The multilr schedule.
        total_steps: Length of the run; lets shapes without a built-in form be tabulated
            (after it, a tabulated schedule holds its last value).

    Returns:
        A OneFlow ``LRScheduler`` (a ``SequentialLR`` when the schedule has several pieces).

    Raises:
        UnsupportedFeatureError: The groups do not share one base ``lr`` (not built for
            ``oneflow-graph``), the schedule has no built-in form and ``total_steps``
            was not given (the message names an alternative), or it needs a factor
            above 1, which OneFlow's ``ConstantLR`` / ``LinearLR`` refuse. The optimizer
            is left as it was.

    Example:
        >>> import multilr, multilr_oneflow
        >>> from multilr.schedules import Cosine, Warmup
        >>> flow = multilr_oneflow.import_oneflow()
        >>> model = flow.nn.Linear(2, 2)
        >>> opt = flow.optim.SGD(multilr.build(model, {"lr": 0.1}, backend="oneflow-graph"))
        >>> type(graph_scheduler(opt, Warmup(Cosine(100), steps=10))).__name__
        'SequentialLR'
    """
    bases = {float(g["lr"]) for g in optimizer.param_groups}
    if len(bases) != 1:
        raise UnsupportedFeatureError(
            f"graph_scheduler needs groups that share one base lr (backend='oneflow-graph'), got lr values "
            f"{sorted(bases)}; for eager groups use flow.optim.lr_scheduler.LambdaLR(optimizer, schedule)"
        )
    segments = _segments(schedule, total_steps)
    flow = import_oneflow()
    sch = flow.optim.lr_scheduler
    (base,) = bases
    over = [f for seg in segments for f in seg.factors if not 0.0 <= f <= 1.0]
    if over:
        raise UnsupportedFeatureError(
            f"{schedule.describe()} reaches factor {max(over, key=abs):.6g}; nn.Graph runs it with OneFlow's "
            "ConstantLR / LinearLR, which take factors in [0, 1]. Raise the spec's lr so the schedule "
            "peaks at 1 (Constant(2.0) at lr 0.1 is Constant(1.0) at lr 0.2)"
        )
    # A scheduler sets each group's lr and initial_lr as it is made: a failure half-way
    # would leave the optimizer changed, and a retry would read the changed lr as its base.
    milestones, at = [], 0
    for seg in segments[:-1]:
        assert seg.length is not None
        at += seg.length
        milestones.append(at)
    saved = [dict(g.options) for g in optimizer.param_groups]
    try:
        if len(segments) == 1:
            return segments[0].make(optimizer, base)
        return sch.SequentialLR(
            optimizer,
            [seg.make(optimizer, base) for seg in segments],
            milestones=milestones,
            interval_rescaling=True,  # each piece from its own step 0, as multilr's Chain
        )
    except BaseException:
        for group, options in zip(optimizer.param_groups, saved, strict=True):
            group.options.clear()
            group.options.update(options)
        raise


def _lr() -> Any:
    return import_oneflow().optim.lr_scheduler


def _constant(value: float, length: int | None = None) -> _Segment:
    return _Segment(lambda o, b: _lr().ConstantLR(o, factor=value, total_iters=_FOREVER), length, (value,))


def _linear(start: float, end: float, length: int) -> _Segment:
    return _Segment(
        lambda o, b: _lr().LinearLR(o, start_factor=start, end_factor=end, total_iters=length),
        length,
        (start, end),
    )


def _segments(schedule: Schedule, total: int | None) -> list[_Segment]:
    s = schedule
    if isinstance(s, Constant):
        return [_constant(s.value)]
    if isinstance(s, Step):
        return [_Segment(lambda o, b: _lr().StepLR(o, step_size=s.step_size, gamma=s.gamma), None)]
    if isinstance(s, MultiStep):
        return [
            _Segment(lambda o, b: _lr().MultiStepLR(o, milestones=list(s.milestones), gamma=s.gamma), None)
        ]
    if isinstance(s, Exponential):
        return [_Segment(lambda o, b: _lr().ExponentialLR(o, gamma=s.gamma), None)]
    if isinstance(s, Cosine):
        return [_Segment(lambda o, b: _lr().CosineDecayLR(o, decay_steps=s.total, alpha=s.final), None)]
    if isinstance(s, SGDR):
        return [
            _Segment(
                lambda o, b: _lr().CosineAnnealingWarmRestarts(
                    o, T_0=s.period, T_mult=s.period_mult, eta_min=s.final * b, decay_rate=s.cycle_mult
                ),
                None,
            )
        ]
    if isinstance(s, Polynomial):
        return [
            _Segment(
                lambda o, b: _lr().PolynomialLR(
                    o, decay_batch=s.total, end_learning_rate=s.final * b, power=s.power, cycle=False
                ),
                None,
            )
        ]
    if isinstance(s, OneCycle) and s.anneal == "linear" and float(s.pct_start * s.total).is_integer():
        return _one_cycle_linear(s)
    if isinstance(s, Warmup) and s.mode == "linear":
        target = s.inner.factor(0)
        return [_linear(s.start * target, target, s.steps), *_segments(s.inner, _rest(total, s.steps))]
    if isinstance(s, Chain):
        return _chain(s, total)
    if total is not None:
        return _tabulate(s, total)
    raise UnsupportedFeatureError(
        f"{s.describe()} has no built-in form that OneFlow's nn.Graph can run; pass total_steps= to "
        "graph_scheduler to tabulate it, or use a built-in shape (OneCycle(anneal='linear'), "
        "Warmup(Cosine(...)), SGDR, Step, Polynomial)"
    )


def _rest(total: int | None, used: int) -> int | None:
    return None if total is None else max(1, total - used)


def _one_cycle_linear(s: OneCycle) -> list[_Segment]:
    start = 1.0 / s.div
    low = start / s.final_div
    up = int(s.pct_start * s.total) - 1
    if s.three_phase:
        return [
            _linear(start, 1.0, up),
            _linear(1.0, start, up),
            _linear(start, low, s.total - 1 - 2 * up),
            _constant(low),
        ]
    return [_linear(start, 1.0, up), _linear(1.0, low, s.total - 1 - up), _constant(low)]


def _chain(s: Chain, total: int | None) -> list[_Segment]:
    out: list[_Segment] = []
    starts = (0, *s.milestones)
    for i, part in enumerate(s.parts):
        length = s.milestones[i] - starts[i] if i < len(s.milestones) else None
        inner = _segments(part, length if length is not None else _rest(total, starts[i]))
        if length is None:
            out += inner
            continue
        used = 0  # cut the part's own pieces at its milestone
        for seg in inner:
            if used >= length:
                break
            take = length - used if seg.length is None else min(seg.length, length - used)
            out.append(_Segment(seg.make, take, seg.factors))
            used += take
    return out


def _tabulate(s: Schedule, total: int) -> list[_Segment]:
    """One ``ConstantLR`` per run of equal factors over ``total`` steps, then the last factor."""
    values = s.factors(total)
    out: list[_Segment] = []
    start = 0
    for t in range(1, total + 1):
        if t == total or values[t] != values[start]:
            out.append(_constant(values[start], t - start))
            start = t
    out[-1] = _constant(values[-1])  # the last value holds after the run
    return out
