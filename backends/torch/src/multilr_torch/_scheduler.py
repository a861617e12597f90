"""A torch ``LRScheduler`` that is a :class:`~multilr.Controller`: for trainers that want a scheduler.

Hugging Face's ``Trainer(optimizers=(opt, sched))`` and Lightning's
``configure_optimizers`` take a ``torch.optim.lr_scheduler.LRScheduler`` (Lightning
checks the type) and call its ``step()`` once per optimizer step (Lightning: with
``"interval": "step"``), skipping steps the optimizer skipped. :class:`MultiLRScheduler`
is that scheduler, and each of its steps is one ``Controller.step()``: the schedule,
the spec's rule schedules and stages, freezing and multipliers all apply, and the
group ratios hold. Its ``state_dict`` is the Controller's (names and numbers only, so
``torch.load(weights_only=True)`` reads a trainer's checkpoint back).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from multilr import Controller, MultiLRError, Plan, UnsupportedFeatureError
from multilr.schedules import Schedule

__all__ = ["MultiLRScheduler"]


class MultiLRScheduler(LRScheduler):
    """The torch scheduler face of a :class:`~multilr.Controller`.

    Args:
        optimizer: The optimizer built from ``multilr.build(...)`` groups.
        plan: The groups (``ParamGroups``), their plan, or a :class:`~multilr.Controller`
            already made for ``optimizer`` (then ``schedule`` and ``steps_per_epoch``
            are its own and may not be given again).
        schedule: Factor per step for every group (default: the spec's ``schedule``,
            else constant 1).
        steps_per_epoch: Optimizer steps per epoch, for spec stages given in epochs.

    Attributes:
        controller: The Controller; freeze, unfreeze or rescale groups through it
            while training (``sched.controller.unfreeze("backbone")``).

    ``step()`` advances the Controller by one optimizer step; ``get_last_lr()`` gives
    each group's rate as the optimizer holds it now (the rate of its next step, and
    between ``optimizer.step()`` and ``step()``, of the step just taken); ``last_epoch``
    counts the steps taken. Building it takes no step: the first optimizer step runs at
    the schedule's step 0.

    Raises:
        MultiLRError: A Controller of another optimizer, or ``schedule`` /
            ``steps_per_epoch`` given with a Controller.
        UnsupportedFeatureError: ``step(epoch)`` (torch deprecated it; the Controller
            counts steps itself).

    Example:
        >>> import torch, multilr
        >>> from multilr.schedules import Step
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> spec = {"lr": 0.1, "rules": [{"prefix": "1", "lr_mult": 10, "name": "head"}]}
        >>> groups = multilr.build(model, spec)
        >>> opt = torch.optim.SGD(groups)
        >>> sched = MultiLRScheduler(opt, groups, Step(1, 0.5))
        >>> sched.get_last_lr()
        [0.1, 1.0]
        >>> model(torch.ones(1, 2)).sum().backward()
        >>> opt.step()
        >>> sched.step()
        >>> sched.get_last_lr(), sched.last_epoch
        ([0.05, 0.5], 1)
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        plan: Plan | Controller | Any,
        schedule: Schedule | None = None,
        *,
        steps_per_epoch: int | None = None,
    ) -> None:
        if isinstance(plan, Controller):
            if schedule is not None or steps_per_epoch is not None:
                raise MultiLRError(
                    "MultiLRScheduler: a Controller brings its own schedule and steps_per_epoch; "
                    "give them to the Controller, not here"
                )
            if plan.optimizer is not optimizer:
                raise MultiLRError(
                    "MultiLRScheduler: the Controller drives another optimizer than the one given"
                )
            controller = plan
        else:
            controller = Controller(optimizer, plan, schedule, steps_per_epoch=steps_per_epoch)
        self.controller = controller
        # torch's __init__ takes one step to set the first rates; the Controller already
        # set them, so that step must not advance it (see step)
        self._started = False
        super().__init__(optimizer)
        self.base_lrs = [g.lr for g in controller.plan.groups]  # what the schedule's factor multiplies

    def step(self, epoch: int | None = None) -> None:
        """Advance the Controller by one optimizer step (call after ``optimizer.step()``).

        Raises:
            UnsupportedFeatureError: ``epoch`` is given.
        """
        if epoch is not None:
            raise UnsupportedFeatureError(
                "MultiLRScheduler.step(epoch) is not supported: the Controller counts optimizer steps; "
                "call step() once per optimizer step, or restore a position with load_state_dict"
            )
        if self._started:
            wrapped = hasattr(self.optimizer.step, "_wrapped_by_lr_sched")
            if self._step_count == 1 and wrapped and not getattr(self.optimizer, "_opt_called", False):
                # torch's own check (the step wrapper its __init__ installs sets _opt_called)
                warnings.warn(
                    "MultiLRScheduler.step() was called before optimizer.step(): the rates of step 0 "
                    "were never used; call optimizer.step() first",
                    UserWarning,
                    stacklevel=2,
                )
            self.controller.step()
        self._started = True
        self._step_count += 1
        self._sync()

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """Each group's rate for the next optimizer step (no side effect)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:  # type: ignore[override]
        """Each group's rate as the optimizer holds it now, in group order."""
        return self.get_lr()

    def rates(self) -> dict[str, float]:
        """:meth:`get_last_lr` by group name (``Controller.rates``)."""
        return self.controller.rates()

    def state_dict(self) -> dict[str, Any]:
        """The Controller's state (step, multipliers, frozen groups, stages done) and the step count."""
        return {"controller": self.controller.state_dict(), "step_count": self._step_count}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Restore :meth:`state_dict`: the Controller rewrites every rate and frozen flag.

        Raises:
            SpecError: Unknown groups or stages, or bad values (nothing is changed).
        """
        self.controller.load_state_dict(state_dict["controller"])
        self._step_count = int(state_dict.get("step_count", self.controller.step_count + 1))
        self._sync()

    def _sync(self) -> None:
        """Keep torch's attributes in line with the Controller (trainers and loggers read them)."""
        self.last_epoch = self.controller.step_count
        self._last_lr = self.get_lr()  # type: ignore[assignment]
