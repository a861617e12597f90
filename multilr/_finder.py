"""The learning-rate range test (fastai's ``lr_find``), with every group kept at its ratio.

The base rate grows exponentially from ``start_lr`` to ``end_lr``, one training step per
rate; each group trains at its planned ratio times the base rate (frozen groups at 0), so
the curve measures the spec as it will train and the suggestion is a value for the
spec's ``lr``. Losses are smoothed as fastai does (exponential moving average with bias
correction, ``beta = 0.98``); the run stops early when the smoothed loss exceeds
``diverge`` x the best so far, or a loss is not finite. Afterwards the model's parameters
and buffers, the optimizer's state and hyperparameters, each group's rate, every tensor's
gradient and every module's train/eval flag are put back exactly as they were, also
when ``step_fn`` raises.

Framework-neutral: it only uses ``model.state_dict()``/``load_state_dict()``,
``model.modules()``, the optimizer's ``state_dict()``/``load_state_dict()`` and its
groups' ``"lr"`` (torch, OneFlow eager, anything with PyTorch's API).

This module runs the test; what it returns (:class:`FinderResult`) is in
:mod:`multilr._finderresult`, the suggestion rules (:func:`suggest`, :data:`METHODS`) in
:mod:`multilr._suggest`; both are re-exported here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multilr._check import number
from multilr._control import Controller
from multilr._finderresult import FinderResult
from multilr._freezing import params as _params
from multilr._history import RateHistory
from multilr._plantypes import Plan
from multilr._suggest import METHODS, suggest
from multilr.errors import MultiLRError, SpecError, UnsupportedFeatureError

__all__ = ["METHODS", "FinderJob", "FinderResult", "lr_find", "suggest"]

BETA = 0.98  # fastai's smoothing factor


@dataclass(frozen=True)
class FinderJob:
    """Everything :func:`lr_find` needs, as one value (what ``multilr lr-find TARGET`` calls for).

    Attributes:
        model: The model (its ``state_dict`` is saved and restored).
        optimizer: The optimizer built from the model's groups.
        step_fn: One training step on the next batch; returns the loss.
        plan: The plan or the ``ParamGroups`` (keeps the planned ratios), a
            :class:`~multilr.Controller` (its groups as they are now: staged groups not yet
            unfrozen stay at 0, multipliers count), or ``None``.
        options: Default keyword arguments for :func:`lr_find` (``num_it``, ``end_lr``, ...).
    """

    model: Any
    optimizer: Any
    step_fn: Callable[[], Any]
    plan: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def run(self, **options: Any) -> FinderResult:
        """Run :func:`lr_find`; ``options`` override :attr:`options`."""
        kwargs = {**self.options, **options}
        return lr_find(self.model, self.optimizer, self.step_fn, plan=self.plan, **kwargs)


def lr_find(
    model: Any,
    optimizer: Any,
    step_fn: Callable[[], Any],
    *,
    plan: Any = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    diverge: float | None = 4.0,
    method: str = "valley",
) -> FinderResult:
    """Find a learning rate: train ``num_it`` steps at rising rates, then undo them all.

    ``step_fn()`` runs one training step on the next batch (zero the gradients, forward,
    backward, ``optimizer.step()``) and returns the loss (a number or a one-element
    tensor); the finder sets every group's ``lr`` before each call. A closure over your
    data iterator is all it takes, and it can do whatever your loop does (mixed precision,
    clipping, accumulation).

    With ``plan`` (the ``ParamGroups`` from :func:`multilr.build`, or their ``.plan``),
    step ``i`` trains group ``g`` at ``planned rate of g / spec lr x lrs[i]`` (frozen groups
    at 0), so the suggestion is a value for the spec's ``lr``: apply it with
    ``spec.with_lr(result.suggestion)``, which moves the spec's absolute rates (a rule's
    ``lr``, a spread, ``rates``) with it, as the sweep did. With a
    :class:`~multilr.Controller` as ``plan``, its groups as they are now (stages not yet
    reached stay at 0, multipliers count). Without it, the groups keep the ratios of their
    current rates and the base is the fastest group's rate.

    The suggestion follows fastai: ``valley`` (default) takes the longest stretch over
    which the smoothed loss keeps falling and returns a rate about halfway down it; it
    is far less sensitive to noise than ``steep`` (the steepest single descent) and less
    timid than ``minimum`` (the rate of the lowest loss / 10). All three are returned.
    The first 10 % of the steps and the last 5 are left out of the suggestion, as fastai
    does (rates too low to move, and the divergence).

    Args:
        model: The model; its state is saved first and restored at the end.
        optimizer: An optimizer with per-group ``lr`` (torch, OneFlow eager).
        step_fn: One training step on the next batch; returns the loss.
        plan: The ``ParamGroups`` or ``Plan`` the optimizer was built from.
        start_lr: First base rate (> 0).
        end_lr: Last base rate (> ``start_lr``).
        num_it: Steps, one rate each (>= 2; rates are spaced evenly on a log scale).
        diverge: Stop when the smoothed loss exceeds this x the best (> 1; ``None``: never;
            only for positive losses).
        method: The rule :attr:`FinderResult.suggestion` follows, one of :data:`METHODS`.

    Returns:
        A :class:`FinderResult`: ``.suggestion``, ``.plot(path)``, ``.summary()``.

    Raises:
        SpecError: A bad argument (named; checked before anything is touched).
        UnsupportedFeatureError: ``oneflow-graph`` groups (run the finder in eager mode).
        MultiLRError: ``plan`` does not match the optimizer, or ``step_fn`` returned no loss.

    Example:
        >>> import itertools, torch, multilr
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> groups = multilr.build(model, {"lr": 1e-3, "rules": [{"prefix": "2", "lr_mult": 10}]})
        >>> opt = torch.optim.SGD(groups)
        >>> x = torch.randn(64, 4); y = x.sum(1, keepdim=True)
        >>> def step():
        ...     opt.zero_grad()
        ...     loss = torch.nn.functional.mse_loss(model(x), y)
        ...     loss.backward()
        ...     opt.step()
        ...     return loss.item()
        >>> before = [p.clone() for p in model.parameters()]
        >>> result = multilr.lr_find(model, opt, step, plan=groups, num_it=50)
        >>> 1e-7 < result.suggestion < 10
        True
        >>> result.ratios["prefix:2"]
        10.0
        >>> all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        True
    """
    start = number(start_lr, "start_lr", positive=True)
    end = number(end_lr, "end_lr", positive=True)
    if end <= start:
        raise SpecError(f"end_lr must be > start_lr, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    if isinstance(num_it, bool) or not isinstance(num_it, int) or num_it < 2:
        raise SpecError(f"num_it must be an integer >= 2, got {num_it!r}")
    div = None if diverge is None else number(diverge, "diverge", positive=True)
    if div is not None and div <= 1:
        raise SpecError(f"diverge must be > 1 (or None), got {diverge!r}")
    if method not in METHODS:
        raise SpecError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not callable(step_fn):
        raise SpecError(f"step_fn must be callable (one training step returning the loss), got {step_fn!r}")
    for obj, what in ((model, "model"), (optimizer, "optimizer")):
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise SpecError(f"{what} must have state_dict() and load_state_dict(), got {type(obj).__name__}")
    pgs = list(getattr(optimizer, "param_groups", None) or [])
    if not pgs:
        raise SpecError(f"optimizer must have param_groups, got {type(optimizer).__name__}")
    if any("lr_scale" in g for g in pgs) or getattr(plan, "backend", None) == "oneflow-graph":
        raise UnsupportedFeatureError(
            "lr_find needs per-group rates it can change every step; these groups carry lr_scale "
            "(backend='oneflow-graph'), whose rates nn.Graph compiles at its first call. Run the finder "
            "in eager mode: build the same spec with backend='oneflow', find the rate, then train in the "
            "graph with that lr (the plan's ratios and rates carry over unchanged)"
        )
    names, ratios = _ratios(pgs, plan)

    lrs, losses, smoothed, rows = [], [], [], []
    stop = "completed"
    saved = _Saved(model, optimizer, pgs)
    try:
        avg, best = 0.0, math.inf
        for i in range(num_it):
            base = start * (end / start) ** (i / (num_it - 1))
            row = [base * r for r in ratios]
            for pg, lr in zip(optimizer.param_groups, row, strict=True):
                pg["lr"] = lr
            loss = _loss(step_fn(), i)
            lrs.append(base)
            losses.append(loss)
            rows.append((i, row))
            if not math.isfinite(loss):
                smoothed.append(math.nan)
                stop = "non-finite"
                break
            avg = BETA * avg + (1 - BETA) * loss
            smooth = avg / (1 - BETA ** (i + 1))
            smoothed.append(smooth)
            best = min(best, smooth)
            if div is not None and best > 0 and smooth > div * best:
                stop = "diverged"
                break
    finally:
        saved.restore()

    history = RateHistory.from_rows(
        names, rows, {"source": "lr_find", "start_lr": start, "end_lr": end, "num_it": num_it}
    )
    return FinderResult(
        lrs=tuple(lrs),
        losses=tuple(losses),
        smoothed=tuple(smoothed),
        rates=history,
        ratios=dict(zip(names, ratios, strict=True)),
        suggestions=suggest(lrs, smoothed, skip_start=num_it // 10),
        method=method,
        stop=stop,
        num_it=num_it,
        meta={
            "start_lr": start,
            "end_lr": end,
            "diverge": div,
            "planned": plan is not None,
            "absolute_rates": _has_absolute_rates(plan),
        },
    )


def _has_absolute_rates(plan: Any) -> bool:
    """Whether the plan's spec sets rates that its ``lr`` does not move (see ``Spec.with_lr``)."""
    found = getattr(plan, "plan", plan)  # a Controller or ParamGroups hold their Plan
    if not isinstance(found, Plan):
        return False
    spec = found.spec
    return bool(spec.rates or spec.spread is not None or any(r.lr is not None for r in spec.rules))


def _ratios(pgs: list[Any], plan: Any) -> tuple[list[str], list[float]]:
    """Group names and each group's rate / base rate."""
    if plan is None:
        names = [str(pg["name"]) if "name" in pg else f"group{i}" for i, pg in enumerate(pgs)]
        if len(set(names)) != len(names):
            names = [f"group{i}" for i in range(len(pgs))]
        current = [number(pg["lr"], f"lr of optimizer group {i}") for i, pg in enumerate(pgs)]
        top = max(current)
        if top == 0:
            raise MultiLRError("every optimizer group has lr 0: nothing to sweep (pass plan= for its rates)")
        return names, [lr / top for lr in current]
    if isinstance(plan, Controller):  # its frozen groups and multipliers as they are now
        if len(plan.groups) != len(pgs):
            raise MultiLRError(
                f"the optimizer has {len(pgs)} param groups, the Controller {len(plan.groups)}"
            )
        return list(plan.groups), list(plan.scales().values())
    found = plan if isinstance(plan, Plan) else getattr(plan, "plan", None)
    if not isinstance(found, Plan):
        raise SpecError(
            f"plan must be a multilr Plan or the groups multilr.build returned, got {type(plan).__name__}"
        )
    if len(found.groups) != len(pgs):
        raise MultiLRError(
            f"the optimizer has {len(pgs)} param groups, the plan {len(found.groups)}: build the "
            "optimizer from exactly the groups multilr.build returned"
        )
    for i, (pg, g) in enumerate(zip(pgs, found.groups, strict=True)):
        if "name" in pg and pg["name"] != g.name:
            raise MultiLRError(f"optimizer group {i} is {pg['name']!r}, the plan's group {i} is {g.name!r}")
    return [g.name for g in found.groups], [found.lr_of(g) / found.base_lr for g in found.groups]


def _loss(value: Any, step: int) -> float:
    if hasattr(value, "detach"):  # a tensor that still requires grad (torch warns on float() of it)
        value = value.detach()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MultiLRError(
            f"step_fn must return the batch's loss (a number or one-element tensor); "
            f"got {type(value).__name__} at step {step}"
        ) from None


class _Saved:
    """Deep copies of everything a training step changes; :meth:`restore` puts them back."""

    def __init__(self, model: Any, optimizer: Any, pgs: list[Any]) -> None:
        self.model, self.optimizer = model, optimizer
        self.model_state = copy.deepcopy(model.state_dict())
        self.opt_state = copy.deepcopy(optimizer.state_dict())
        self.groups = list(pgs)
        self.lrs = [pg["lr"] for pg in pgs]
        modules = model.modules() if hasattr(model, "modules") else []
        self.training = [(m, m.training) for m in modules]
        tensors = [p for pg in pgs for p in _params(pg)]
        self.grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in tensors]

    def restore(self) -> None:
        self.model.load_state_dict(self.model_state)
        self.optimizer.load_state_dict(self.opt_state)
        now = self.optimizer.param_groups
        for i, (old, lr) in enumerate(zip(self.groups, self.lrs, strict=True)):
            if now[i] is not old and isinstance(old, dict):
                # torch's load_state_dict makes new group dicts: refill the user's own (the
                # ParamGroups list, a scheduler's view) and put them back in their places
                old.clear()
                old.update(now[i])
                now[i] = old
            now[i]["lr"] = lr
        for m, flag in self.training:
            m.training = flag
        for p, g in self.grads:
            p.grad = g

