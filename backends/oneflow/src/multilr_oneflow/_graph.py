"""nn.Graph's traps, handled.

Schedulers it cannot run, rates frozen at the first call, and stale
``param_groups[i]['lr']`` while it trains.

* :func:`add_optimizer` replaces ``graph.add_optimizer``: it refuses groups built for
  eager (a pre-scaled ``lr`` next to an ``lr_scale`` would be scaled twice), schedulers
  the graph cannot run, and float64 parameters; then it guards the optimizer's groups
  so that writing a rate after the graph compiled raises instead of being ignored.
* :func:`rates_at` gives the rate each group really trains at on a given graph step,
  from the schedule; OneFlow never updates ``param_groups[i]['lr']`` inside a graph.
"""

from __future__ import annotations

import bisect
import weakref
from typing import Any

from multilr import Plan, UnsupportedFeatureError
from multilr_oneflow._load import import_oneflow

__all__ = ["GRAPH_SCHEDULERS", "add_optimizer", "check_scheduler", "rates_at"]

#: Schedulers measured to give the same rate sequence inside nn.Graph as in eager
#: mode and in torch (OneFlow 0.9.0). Subclasses are accepted.
GRAPH_SCHEDULERS = (
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "CosineDecayLR",
    "LinearLR",
    "ConstantLR",
    "CosineAnnealingWarmRestarts",
    "PolynomialLR",
    "SequentialLR",
    "WarmupLR",
)

_REFUSED = {
    "LambdaLR": "OneFlow 0.9's nn.Graph cannot run LambdaLR (AttributeError at compile time); "
    "express the schedule with a built-in scheduler (e.g. WarmupLR, LinearLR, "
    "CosineAnnealingLR, SequentialLR of them), or train with the 'oneflow' eager backend",
    "ReduceLROnPlateau": "ReduceLROnPlateau reacts to a metric in Python, which a compiled nn.Graph "
    "cannot do (OneFlow 0.9 fails an assertion); use a fixed schedule such as "
    "MultiStepLR or CosineAnnealingLR, or the 'oneflow' eager backend",
}


def check_scheduler(lr_sch: Any) -> None:
    """Refuse a scheduler nn.Graph cannot run, naming an alternative.

    Raises:
        UnsupportedFeatureError: LambdaLR, ReduceLROnPlateau, or a scheduler not
            known to work inside nn.Graph.

    Example:
        >>> flow = import_oneflow()
        >>> opt = flow.optim.SGD(flow.nn.Linear(2, 2).parameters(), lr=0.1)
        >>> check_scheduler(flow.optim.lr_scheduler.StepLR(opt, step_size=10))  # runs in a graph: no error
        >>> check_scheduler(flow.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.9**t))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multilr.errors.UnsupportedFeatureError: lr_sch LambdaLR: OneFlow 0.9's nn.Graph cannot run LambdaLR...
    """
    if lr_sch is None:
        return
    names = [c.__name__ for c in type(lr_sch).__mro__]
    for refused, why in _REFUSED.items():
        if refused in names:
            raise UnsupportedFeatureError(f"lr_sch {type(lr_sch).__name__}: {why}")
    if not any(n in GRAPH_SCHEDULERS for n in names):
        raise UnsupportedFeatureError(
            f"lr_sch {type(lr_sch).__name__} is not known to run inside nn.Graph; "
            f"use one of {', '.join(GRAPH_SCHEDULERS)}"
        )


def _check_groups(optimizer: Any) -> None:
    flow = import_oneflow()
    lrs = {float(g["lr"]) for g in optimizer.param_groups}
    for i, g in enumerate(optimizer.param_groups):
        # OneFlow's ParamGroup has no .get()
        label = f"param_groups[{i}] ({g['name'] if 'name' in g else 'unnamed'})"  # noqa: SIM401
        if "lr_scale" not in g:
            raise UnsupportedFeatureError(
                f"{label} has no lr_scale: these groups were built for eager mode (per-group lr); "
                "build them with multilr.build(model, spec, backend='oneflow-graph') for nn.Graph"
            )
        if len(lrs) > 1:
            raise UnsupportedFeatureError(
                f"{label} has lr={g['lr']} and lr_scale={g['lr_scale']}, but the groups' lr differ "
                f"({sorted(lrs)}): nn.Graph multiplies lr by lr_scale, so a pre-scaled lr would be "
                "scaled twice; build with backend='oneflow-graph' (one base lr)"
            )
        for p in g.parameters:
            if p.dtype == flow.float64:
                raise UnsupportedFeatureError(
                    f"{label} holds a float64 parameter, which OneFlow 0.9's nn.Graph cannot compile; "
                    "cast the model to float32 or use the 'oneflow' eager backend"
                )


def _guard(optimizer: Any, graph: Any) -> None:
    from oneflow.optim.optimizer import ParamGroup

    ref = weakref.ref(graph)

    class CompiledParamGroup(ParamGroup):  # type: ignore[misc]
        """A ParamGroup that refuses edits once the graph has compiled its rates."""

        def __setitem__(self, key: str, value: Any) -> None:
            g = ref()
            if g is not None and not g.is_compiled and key == "lr" and "initial_lr" in self._options:
                # With a scheduler the graph compiles initial_lr, not lr: keep them together
                # so a write before the first call is honoured rather than ignored.
                super().__setitem__("initial_lr", value)
            if g is not None and g.is_compiled:
                raise UnsupportedFeatureError(
                    f"setting {key!r} of param group {self._options.get('name', '?')!r} to {value!r} after "
                    "the nn.Graph's first call: the graph compiled its rates then, and OneFlow 0.9 would "
                    "silently ignore the change. Drive rates with the lr_sch given to "
                    "multilr_oneflow.add_optimizer, set them before the first call, or use the 'oneflow' "
                    "eager backend"
                )
            super().__setitem__(key, value)

    for group in optimizer.param_groups:
        group.__class__ = CompiledParamGroup


def add_optimizer(graph: Any, optimizer: Any, *, lr_sch: Any = None) -> None:
    """``graph.add_optimizer`` with multilr's checks and the compiled-rate guard.

    Call it in the graph's ``__init__`` instead of ``self.add_optimizer``.

    Args:
        graph: The ``oneflow.nn.Graph``.
        optimizer: A ``flow.optim`` optimizer built from ``backend="oneflow-graph"`` groups.
        lr_sch: Optional scheduler (one of :data:`GRAPH_SCHEDULERS`).

    Raises:
        UnsupportedFeatureError: Eager-style groups, a scheduler the graph cannot run,
            or float64 parameters. Nothing is added to the graph then.

    Example::

        groups = multilr.build(model, spec, backend="oneflow-graph")
        opt = flow.optim.SGD(groups)
        sch = flow.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

        class Train(flow.nn.Graph):
            def __init__(self):
                super().__init__()
                self.model = model
                multilr_oneflow.add_optimizer(self, opt, lr_sch=sch)
    """
    _check_groups(optimizer)
    check_scheduler(lr_sch)
    graph.add_optimizer(optimizer, lr_sch=lr_sch)
    _guard(optimizer, graph)


def _scheduled(lr_sch: Any, base: float, step: int) -> float:
    """The scheduler's rate for ``base`` at ``step``, as the graph computes it.

    ``SequentialLR`` (and ``WarmupLR``, built on it) has no ``get_lr`` of its own:
    pick the active inner scheduler the way its ``step`` does and ask that one.
    """
    if lr_sch is None:
        return base
    schedulers = getattr(lr_sch, "schedulers", None)
    milestones = getattr(lr_sch, "milestones", None)
    if schedulers is not None and milestones is not None:
        i = bisect.bisect_right(milestones, step)
        rescale = getattr(lr_sch, "interval_rescaling", [False] * len(milestones))
        if i > 0 and rescale[i - 1]:
            step -= milestones[i - 1]
        return _scheduled(schedulers[i], base, step)
    return float(lr_sch.get_lr(base, step))


def rates_at(source: Any, step: int, lr_sch: Any = None) -> dict[str, float]:
    """The rate each group trains at on graph step ``step`` (0 = the first call).

    nn.Graph runs the schedule inside the graph and never writes it back to
    ``param_groups[i]['lr']``, so those values are stale; this recomputes the real
    ones from the scheduler's formula and the scales.

    Args:
        source: The plan the groups came from (``groups.plan``), or the optimizer itself
            (then its groups' compiled ``lr``/``initial_lr`` and ``lr_scale`` are read,
            including writes made before the first call).
        step: Graph step, counted from 0 at the first call.
        lr_sch: The scheduler given to :func:`add_optimizer`, if any.

    Returns:
        Group name -> effective rate (0 for frozen groups).

    Example:
        >>> import multilr
        >>> flow = import_oneflow()
        >>> model = flow.nn.Sequential(flow.nn.Linear(2, 2), flow.nn.Linear(2, 1))
        >>> spec = {"lr": 0.1, "rules": [{"prefix": "1", "lr_mult": 10, "name": "head"}]}
        >>> groups = multilr.build(model, spec, backend="oneflow-graph")
        >>> sch = flow.optim.lr_scheduler.StepLR(flow.optim.SGD(groups), step_size=2, gamma=0.5)
        >>> rates_at(groups.plan, 3, sch)  # halved once by step 3
        {'default': 0.05, 'head': 0.5}
    """
    if isinstance(source, Plan):
        base = source.base_lr
        scheduled = _scheduled(lr_sch, base, step)
        return {g.name: scheduled * g.effective_scale for g in source.groups}
    out = {}
    for i, g in enumerate(source.param_groups):
        opts = g.options
        base = opts["initial_lr"] if lr_sch is not None and "initial_lr" in opts else opts["lr"]
        scale = float(opts.get("lr_scale", 1.0))
        out[opts.get("name", str(i))] = _scheduled(lr_sch, float(base), step) * scale
    return out
