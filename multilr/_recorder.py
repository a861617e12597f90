"""The audit recorder: every group's effective rate at every optimizer step, as JSON.

fastai's recorder keeps the last group's rate; this one keeps all of them, in the
:class:`~multilr.RateHistory` shape that plots and ``planned_rates`` share.

**Which rate is "the rate of step t".** The rate the optimizer *used* on its step ``t``.
The optimizer's groups hold it from just before ``optimizer.step()`` until the
scheduler (or :class:`~multilr.Controller`) steps, so :meth:`Recorder.record` belongs
right after ``optimizer.step()`` and before ``scheduler.step()`` / ``controller.step()``
(right before ``optimizer.step()`` reads the same values). Called after the scheduler,
it would log the next step's rate under this step's number: :meth:`Recorder.attach`
avoids the question on optimizers with step hooks (PyTorch) by recording inside
``optimizer.step()`` itself.

**nn.Graph.** OneFlow compiles the rates into the graph and never writes them back,
so ``param_groups[i]["lr"]`` is stale there; groups carrying ``lr_scale`` are refused
here, and ``multilr_oneflow.graph_recorder`` records the real rates through
``multilr_oneflow.rates_at`` (a rate source: any ``step -> {group: rate}`` callable).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from multilr._check import number
from multilr._history import RateHistory
from multilr.errors import MultiLRError, SpecError, UnsupportedFeatureError

__all__ = ["RateSource", "Recorder"]

#: ``step -> {group name: rate the optimizer uses on that step}``.
RateSource = Callable[[int], Mapping[str, float]]


class Recorder:
    """Logs each group's effective rate at every (``every``-th) optimizer step.

    Give it the optimizer (built from ``multilr.build`` groups: each group's ``"name"``
    names it, ``"lr"`` is read; groups without a name are called by their index) or a
    rate ``source``. Call :meth:`record` once per optimizer step, after
    ``optimizer.step()`` and before ``scheduler.step()`` / ``controller.step()``
    (see the module docstring), or let :meth:`attach` do it.

    Args:
        optimizer: A PyTorch or OneFlow eager optimizer (per-group ``lr``).
        source: Instead of ``optimizer``: ``step -> {group: rate}`` (the rate used on step
            ``step``); ``multilr_oneflow.graph_recorder`` passes ``rates_at`` here.
        groups: Group names, in order (default: the optimizer's, or the first source result's).
        every: Keep every ``every``-th step (steps ``start``, ``start + every``, ...).
        start: Number of the first step (to continue a resumed run).
        meta: Extra JSON-able facts for the history (model, run id, ...); they win over
            the recorder's own (``recorder``, ``source``, ``backend``, ``optimizer``, ``every``).

    Raises:
        UnsupportedFeatureError: The optimizer's groups carry ``lr_scale`` (OneFlow
            ``nn.Graph``, where ``lr`` is stale): use ``multilr_oneflow.graph_recorder``.
        SpecError: Neither or both of ``optimizer`` and ``source``, ``every`` < 1,
            ``start`` < 0, repeated group names.

    Example:
        >>> from types import SimpleNamespace  # stands in for a torch / OneFlow optimizer
        >>> opt = SimpleNamespace(param_groups=[{"name": "body", "lr": 0.01}, {"name": "head", "lr": 0.1}])
        >>> rec = Recorder(opt)
        >>> for step in range(3):
        ...     # forward, backward, opt.step() ...
        ...     rec.record()  # ... the rates step `step` used ...
        ...     for g in opt.param_groups:  # ... then the scheduler halves them
        ...         g["lr"] /= 2
        >>> rec.history().rates["head"]
        (0.1, 0.05, 0.025)
        >>> rec.history().meta["source"]
        'optimizer'
    """

    def __init__(
        self,
        optimizer: Any = None,
        *,
        source: RateSource | None = None,
        groups: Sequence[str] | None = None,
        every: int = 1,
        start: int = 0,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if (optimizer is None) == (source is None):
            raise SpecError("Recorder needs exactly one of an optimizer or a rate source (source=)")
        self.every = _count(every, "every", 1)
        self._start = self._step = _count(start, "start", 0)
        own: dict[str, Any] = {"recorder": "multilr.Recorder", "every": self.every}
        self._optimizer = optimizer
        if optimizer is not None:
            names = _optimizer_names(optimizer)
            if groups is not None and list(groups) != names:
                raise SpecError(f"groups {list(groups)} are not the optimizer's groups {names}")
            self._source: RateSource = self._read_optimizer
            kind = type(optimizer)
            own |= {
                "source": "optimizer",
                "backend": kind.__module__.partition(".")[0],
                "optimizer": kind.__name__,
            }
            self._groups: list[str] | None = names
        else:
            assert source is not None
            if not callable(source):
                raise SpecError(f"source must be a callable step -> {{group: rate}}, got {source!r}")
            self._source = source
            own["source"] = getattr(source, "__qualname__", type(source).__name__)
            self._groups = list(groups) if groups is not None else None
        if self._groups is not None and len(set(self._groups)) != len(self._groups):
            raise SpecError(f"recorder: a group name appears twice in {self._groups}")
        self.meta: dict[str, Any] = {**own, **dict(meta or {})}
        self._rows: list[tuple[int, list[float]]] = []
        self._hook: Any = None

    # -- recording -----------------------------------------------------------------------

    @property
    def step(self) -> int:
        """The number the next :meth:`record` call gives its step."""
        return self._step

    @property
    def groups(self) -> list[str]:
        """Group names, in order (empty until known: a source without ``groups=``)."""
        return list(self._groups or [])

    def record(self) -> None:
        """Log the rates of the optimizer step just taken (every ``every``-th), then count it.

        Raises:
            MultiLRError: The optimizer's groups changed (``add_param_group``), or the
                source named other groups. Nothing is recorded then.
            SpecError: A rate that is negative or not a finite number.
        """
        step = self._step
        if (step - self._start) % self.every == 0:
            self._rows.append((step, self._rates(step)))
        self._step = step + 1

    def attach(self) -> Recorder:
        """Record from inside every ``optimizer.step()`` (a step pre-hook), instead of :meth:`record`.

        The hook reads the rates the step is about to use, wherever the scheduler's
        ``step()`` is called. Returns the recorder.

        Raises:
            UnsupportedFeatureError: The optimizer has no ``register_step_pre_hook``
                (OneFlow 0.9), or this is a source recorder: call :meth:`record`.
            MultiLRError: Already attached.
        """
        if self._hook is not None:
            raise MultiLRError("this recorder is already attached to its optimizer")
        register = getattr(self._optimizer, "register_step_pre_hook", None)
        if register is None:
            what = "a rate source" if self._optimizer is None else type(self._optimizer).__name__
            raise UnsupportedFeatureError(
                f"cannot hook into {what}'s step (no register_step_pre_hook): call recorder.record() "
                "after each optimizer.step(), before the scheduler's step()"
            )
        self._hook = register(lambda *_: self.record())
        self.meta["timing"] = "step pre-hook"
        return self

    def detach(self) -> None:
        """Remove the hook :meth:`attach` added (no effect if none)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # -- results -------------------------------------------------------------------------

    def history(self) -> RateHistory:
        """Everything recorded so far, as a :class:`~multilr.RateHistory`."""
        return RateHistory.from_rows(self.groups, self._rows, self.meta)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`history` as JSON (``RateHistory.load`` reads it back); returns the path."""
        return self.history().save(path)

    def __len__(self) -> int:
        return len(self._rows)

    # -- inside --------------------------------------------------------------------------

    def _read_optimizer(self, step: int) -> dict[str, float]:
        pgs = self._optimizer.param_groups
        names = _optimizer_names(self._optimizer)
        if names != self._groups:
            raise MultiLRError(
                f"the optimizer's groups changed since the recorder started: {self._groups} -> {names} "
                "(keep multilr's groups; no add_param_group)"
            )
        return {n: float(g["lr"]) for n, g in zip(names, pgs, strict=True)}

    def _rates(self, step: int) -> list[float]:
        got = dict(self._source(step))
        if self._groups is None:
            self._groups = list(got)
        if set(got) != set(self._groups):
            raise MultiLRError(
                f"step {step}: the rate source gave groups {sorted(got)}, the recorder has {self._groups}"
            )
        return [number(got[g], f"rate of group {g!r} at step {step}") for g in self._groups]


def _optimizer_names(optimizer: Any) -> list[str]:
    pgs = getattr(optimizer, "param_groups", None)
    if pgs is None:
        raise SpecError(f"{type(optimizer).__name__} has no param_groups: not an optimizer")
    for i, g in enumerate(pgs):
        if "lr_scale" in g:
            label = g["name"] if "name" in g else i  # noqa: SIM401 - OneFlow's ParamGroup has no .get
            raise UnsupportedFeatureError(
                f"param group {label!r} carries lr_scale (convention 'lr_scale', as backend='oneflow-graph' "
                "emits): its lr is the base rate, not the group's, and nn.Graph compiles the rates and "
                "never writes them back, so it is stale; record the real rates with "
                "multilr_oneflow.graph_recorder(optimizer, lr_sch=scheduler)"
            )
    return [str(g["name"]) if "name" in g else str(i) for i, g in enumerate(pgs)]


def _count(value: Any, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"recorder: {what} must be an integer >= {low}, got {value!r}")
    return value

