"""Harnesses: how a backend runs a case.

:class:`TorchLikeHarness` serves every framework with PyTorch's module, optimizer and
scheduler API (PyTorch itself, OneFlow eager): it is handed the framework module, so
this file imports none. :class:`ReferenceHarness` runs the NumPy reference as if it
were a backend: the suite's own baseline, and, with a ``mistake``, the deliberately
wrong backends the suite must catch without any framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import numpy as np

from multilr._build import build
from multilr._build import plan as make_plan
from multilr._control import Controller
from multilr.backend import Backend
from multilr.testing._cases import Case, Module
from multilr.testing._check import Adjust, Array, Observation, Unsupported, planned, reference_run

__all__ = ["MISTAKES", "ReferenceHarness", "TorchLikeHarness"]

#: Optimizer class of each reference kind, in PyTorch and OneFlow.
OPTIMIZER_CLASSES: Mapping[str, str] = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
}


class TorchLikeHarness:
    """Runs cases on a framework with PyTorch's API (``torch``, ``oneflow`` eager).

    The gradients reach the parameters through autograd (``loss = sum <p, G_t>``), so a
    backend that hooks or rescales gradients is seen doing so.

    Args:
        framework: The framework module (``torch`` or ``oneflow``).
        backend: Backend name or instance passed to :func:`multilr.build`.
        name: Name in test ids and traces (default: the backend's name).

    Example:
        >>> import torch
        >>> from multilr.testing import TorchLikeHarness, case_by_id, check_cell
        >>> check_cell(TorchLikeHarness(torch, "torch"), case_by_id("sgd-step-frozen")).status
        'passed'
    """

    def __init__(self, framework: Any, backend: str | Backend, name: str | None = None) -> None:
        self.fw = framework
        self.build_backend = backend
        self.backend = name or (backend if isinstance(backend, str) else backend.name)

    # -- the model ----------------------------------------------------------------------

    def make_model(self, case: Case) -> Any:
        """The case's model with its initial weights, in the case's dtype.

        A tied module's ``weight`` is set to its target's (one tensor, two names); a
        module that is not trainable has ``requires_grad`` off, as a user would leave it.
        """
        nn = self.fw.nn
        root = nn.Module()
        for m in case.layout:
            parent = root
            *parents, leaf = m.path.split(".")
            for part in parents:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            module = self._leaf(m)
            if m.tied_to is not None:
                module.weight = _module(root, m.tied_to).weight
            parent.add_module(leaf, module)
        if case.dtype == "float64":
            root = root.double()
        initial = case.initial()
        with self.fw.no_grad():
            for name, p in root.named_parameters():
                p.copy_(self.fw.tensor(initial[name], dtype=p.dtype))
        for m in case.layout:
            if not m.trainable:
                for p in _module(root, m.path).parameters():
                    p.requires_grad_(False)
        return root

    def _leaf(self, m: Module) -> Any:
        nn = self.fw.nn
        base = nn.Module if m.base_class is None else getattr(nn, m.base_class)
        cls = base if m.cls is None else _own_class(m.cls, base)
        if m.kind == "linear":
            return cls(*m.dims)
        if m.kind == "layernorm":
            return cls(m.dims[0])
        if m.kind == "scale":
            module = cls()
            module.gamma = nn.Parameter(self.fw.ones(*m.dims))
            return module
        return cls(*m.dims)

    # -- optimizer and schedule ---------------------------------------------------------

    def make_optimizer(self, case: Case, groups: Any) -> Any:
        """The framework optimizer over the built groups (all settings come from the groups)."""
        return getattr(self.fw.optim, OPTIMIZER_CLASSES[case.setup.kind])(groups)

    def make_scheduler(self, case: Case, opt: Any, factors: list[float]) -> Any:
        """The framework scheduler that realises ``case.sched`` (``None`` for constant).

        Args:
            case: The case.
            opt: The optimizer.
            factors: ``f_g`` per group (``group_decay`` only).
        """
        sch, p = self.fw.optim.lr_scheduler, case.sched.params
        kind = case.sched.kind
        if kind == "constant":
            return None
        if kind == "step":
            return sch.StepLR(opt, step_size=p["step_size"], gamma=p["gamma"])
        if kind == "cosine_restarts":
            return sch.CosineAnnealingWarmRestarts(opt, T_0=p["T_0"], T_mult=p["T_mult"], eta_min=0.0)
        if kind == "one_cycle":
            return self._one_cycle(case, opt)
        if kind == "inverse":  # seed 001: lr / (i + 1), but per group
            return sch.LambdaLR(opt, lambda t: 1.0 / (t + 1))
        if kind == "group_decay":  # seed 002: each group decays by its own factor every few steps
            every = int(p["every"])
            return sch.LambdaLR(opt, [_power(f, every) for f in factors])
        if kind == "multilr":  # a multilr schedule is a LambdaLR function: every group x its factor
            return sch.LambdaLR(opt, p["schedule"])
        raise Unsupported(f"schedule kind {kind!r}")

    def _one_cycle(self, case: Case, opt: Any) -> Any:
        sch, p = self.fw.optim.lr_scheduler, case.sched.params
        if hasattr(sch, "OneCycleLR"):
            # the per-group peaks: each group's own planned rate (a scalar max_lr would
            # give every group the same rate)
            return sch.OneCycleLR(
                opt,
                max_lr=[g["lr"] for g in opt.param_groups],
                total_steps=p["total_steps"],
                pct_start=p["pct_start"],
                anneal_strategy="linear",
                div_factor=p["div_factor"],
                final_div_factor=p["final_div_factor"],
                three_phase=False,
                cycle_momentum=False,
            )
        # OneFlow has no OneCycleLR: the same linear up-then-down, as two LinearLR in sequence.
        # interval_rescaling=True restarts the second at its own step 0, as PyTorch's
        # SequentialLR always does; OneFlow's default (False) runs it at the global step.
        up = int(p["pct_start"] * p["total_steps"]) - 1
        down = int(p["total_steps"]) - 1 - up
        start = 1.0 / p["div_factor"]
        return sch.SequentialLR(
            opt,
            [
                sch.LinearLR(opt, start_factor=start, end_factor=1.0, total_iters=up),
                sch.LinearLR(
                    opt, start_factor=1.0, end_factor=start / p["final_div_factor"], total_iters=down
                ),
            ],
            milestones=[up],
            interval_rescaling=True,
        )

    def make_controller(self, case: Case, opt: Any, groups: Any) -> Any:
        """The :class:`multilr.Controller` of a controlled case, driven by the case's schedule.

        Raises:
            UnsupportedFeatureError: The Controller refuses these groups (``oneflow-graph``).
        """
        return Controller(opt, groups, schedule=case.sched.shape())

    # -- training -----------------------------------------------------------------------

    def snapshot(self, model: Any) -> dict[str, Array]:
        """Every parameter as a float64 NumPy array."""
        return {n: np.array(p.detach().cpu().numpy(), dtype=np.float64) for n, p in model.named_parameters()}

    def train(self, case: Case, model: Any, groups: Any) -> list[dict[str, Array]]:
        """Eager training: per step, backward of ``sum <p, G_t>``, ``opt.step()``, ``sched.step()``.

        A controlled case runs under a :class:`multilr.Controller` instead of a framework
        scheduler: before step ``t`` the case's events for ``t`` are applied to it, after
        ``opt.step()`` it steps. Frozen tensors (``requires_grad=False``) are left out of
        the loss, so they get no gradient.
        """
        opt = self.make_optimizer(case, groups)
        ctl = self.make_controller(case, opt, groups) if case.controlled else None
        sched = None if ctl else self.make_scheduler(case, opt, case.sched.group_factors(groups.plan))
        params = dict(model.named_parameters())
        snaps = [self.snapshot(model)]
        for t in range(case.steps):
            if ctl is not None:
                for event in case.events:
                    if event.at == t:
                        event.apply(ctl, ctl.groups)
            grads = case.gradient(t)
            opt.zero_grad()
            loss = sum(
                (p * self.fw.tensor(grads[n], dtype=p.dtype)).sum()
                for n, p in params.items()
                if p.requires_grad
            )
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if ctl is not None:
                ctl.step()
            snaps.append(self.snapshot(model))
        return snaps

    def run(self, case: Case) -> Observation:
        """Build, train, report (see :class:`~multilr.testing.Harness`)."""
        model = self.make_model(case)
        groups = build(model, case.spec, backend=self.build_backend)
        flags = {n: bool(p.requires_grad) for n, p in model.named_parameters()}
        snaps = self.train(case, model, groups)
        return Observation(snaps, planned(groups.plan), flags)


@cache
def _own_class(name: str, base: type) -> type:
    """A class of the model's own, ``class <name>(base)``, made once per name and base.

    Once: a backend caches what it learns per class (its names), and one class per
    model made would grow that cache with every case run.
    """
    return type(name, (base,), {"__module__": __name__})


def _module(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def _power(factor: float, every: int) -> Callable[[int], float]:
    return lambda t: factor ** (t // every)


#: The deliberately wrong ways to apply a plan's scales, for :class:`ReferenceHarness`.
MISTAKES = ("scale_gradient", "scale_twice", "drop_scale")


class ReferenceHarness:
    """The NumPy reference run as a backend; optionally with one classic mistake.

    Args:
        mistake: ``None`` (correct), or one of :data:`MISTAKES`: ``scale_gradient``
            multiplies each tensor's gradient by its scale and trains at the base rate
            (seed 003), ``scale_twice`` trains at ``rate x scale``, ``drop_scale`` at the base rate.

    Example:
        >>> from multilr.testing import case_by_id, check_cell
        >>> check_cell(ReferenceHarness("drop_scale"), case_by_id("adam-step-layer_decay")).status
        'failed'
    """

    def __init__(self, mistake: str | None = None) -> None:
        if mistake is not None and mistake not in MISTAKES:
            raise ValueError(f"mistake {mistake!r} unknown; known: {MISTAKES}")
        self.mistake = mistake
        self.backend = "reference" if mistake is None else f"reference_{mistake}"

    def run(self, case: Case) -> Observation:
        """Train the case with the reference optimizer (and the mistake, if any)."""
        plan = make_plan(case.infos(), case.spec)
        scale = {n: g.scale for g in plan.groups for n in g.params}
        mistakes: dict[str, Adjust] = {
            "scale_gradient": lambda n, rate, g: (rate / scale[n], g * scale[n]),  # base rate, g x scale
            "scale_twice": lambda n, rate, g: (rate * scale[n], g),
            "drop_scale": lambda n, rate, g: (rate / scale[n], g),
        }
        traj, _ = reference_run(case, plan, mistakes[self.mistake] if self.mistake else None)
        return Observation(traj, planned(plan))
