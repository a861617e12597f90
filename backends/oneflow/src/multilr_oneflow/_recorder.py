"""The audit recorder for nn.Graph: the rates the graph really trains at, not the stale ``lr``.

Inside a graph OneFlow runs the schedule itself and never writes it back to
``param_groups[i]["lr"]`` (nor ``get_last_lr()``), so :class:`multilr.Recorder` refuses
``lr_scale`` groups; :func:`graph_recorder` gives it :func:`~multilr_oneflow.rates_at`
as its rate source instead: the scheduler's formula at the step, times each group's scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multilr import Plan, Recorder, UnsupportedFeatureError
from multilr_oneflow._graph import rates_at

__all__ = ["graph_recorder"]


def graph_recorder(
    source: Any,
    lr_sch: Any = None,
    *,
    every: int = 1,
    start: int = 0,
    meta: Mapping[str, Any] | None = None,
) -> Recorder:
    """A :class:`multilr.Recorder` of the rates an ``nn.Graph`` trains at.

    Call its ``record()`` once after every graph call (the graph steps its scheduler
    inside the call; the recorder numbers the calls 0, 1, ... from ``start``).

    Args:
        source: The optimizer given to :func:`~multilr_oneflow.add_optimizer` (its groups'
            compiled ``lr``/``initial_lr`` and ``lr_scale`` are read, so writes made
            before the first call count), or the plan (``groups.plan``).
        lr_sch: The scheduler given to ``add_optimizer``, if any.
        every: Keep every ``every``-th graph step.
        start: Number of the first graph step (a resumed run's step count).
        meta: Extra facts for the history.

    Raises:
        UnsupportedFeatureError: An optimizer whose groups have no ``lr_scale`` (built
            for eager mode, where ``multilr.Recorder(optimizer)`` reads the real rates).

    Example::

        groups = multilr.build(model, spec, backend="oneflow-graph")
        opt = flow.optim.SGD(groups)
        sch = multilr_oneflow.graph_scheduler(opt, Warmup(Cosine(1000), steps=50))
        graph = Train()                      # multilr_oneflow.add_optimizer(self, opt, lr_sch=sch)
        rec = multilr_oneflow.graph_recorder(opt, sch)
        for x, y in loader:
            graph(x, y)
            rec.record()
        rec.save("rates.json")
    """
    if not isinstance(source, Plan):
        pgs = getattr(source, "param_groups", None)
        if pgs is None:
            raise UnsupportedFeatureError(
                f"graph_recorder needs the optimizer or the plan (groups.plan), got {type(source).__name__}"
            )
        if not all("lr_scale" in g for g in pgs):
            raise UnsupportedFeatureError(
                "these optimizer groups have no lr_scale: they were built for eager mode, whose "
                "param_groups hold the real rates; record them with multilr.Recorder(optimizer)"
            )
    first = rates_at(source, 0, lr_sch)  # also checks that rates_at can follow this scheduler

    def graph_rates(step: int) -> dict[str, float]:
        return rates_at(source, step, lr_sch)

    own: dict[str, Any] = {
        "backend": "oneflow-graph",
        "source": "multilr_oneflow.rates_at",
        "optimizer": "plan" if isinstance(source, Plan) else type(source).__name__,
        "scheduler": type(lr_sch).__name__ if lr_sch is not None else None,
    }
    return Recorder(
        source=graph_rates, groups=list(first), every=every, start=start, meta={**own, **dict(meta or {})}
    )
