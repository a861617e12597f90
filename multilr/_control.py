"""The runtime controller: schedule, rescale, freeze and unfreeze groups while training.

One object owns every group's rate from the first step: ``rate(g, t) = planned rate of g
x runtime multiplier of g x schedule factor(t)``, and 0 while ``g`` is frozen. Every
change (a new multiplier, a freeze, an unfreeze, the next step) rewrites all of
``optimizer.param_groups[i]["lr"]`` from that formula, so nothing can leave one group at
a stale rate or collapse the ratios, and the optimizer's group list never grows: no
``add_param_group`` (which breaks schedulers and checkpoints: pytorch 62475, Lightning
8720). Frozen means no gradient and rate 0: no update at all, neither weight decay nor
momentum (the optimizers skip a tensor without gradient).

How a tensor loses its gradient is ``freeze_by``, in :mod:`multilr._freezing` (the only
part that touches tensors). What is checked before anything changes (the optimizer, a
saved state) is in :mod:`multilr._controlcheck`, which groups a name or a depth means
in :mod:`multilr._targets`.

Works on the optimizer groups of every backend with per-group ``lr`` (``torch``,
``oneflow`` eager): it only reads and writes the groups' dicts and the tensors'
``requires_grad`` and ``grad``. OneFlow's nn.Graph compiles the rates at its first call,
so the controller refuses ``oneflow-graph`` groups; there a schedule goes through
``multilr_oneflow.graph_scheduler``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from multilr._check import number
from multilr._controlcheck import check_optimizer, check_rates_unchanged, read_state
from multilr._freezing import FreezeBy, Freezing, step_pre_hook
from multilr._freezing import params as _params
from multilr._plantypes import Plan
from multilr._targets import frozen_below, group_index
from multilr._timeline import Program
from multilr.errors import MultiLRError
from multilr.schedules import Schedule

__all__ = ["Controller", "FreezeBy"]


class Controller:
    """Owns the rates of an optimizer built from multilr groups.

    Args:
        optimizer: The optimizer, built from ``multilr.build(...)`` groups (same order).
        plan: The plan (``groups.plan``), or the ``ParamGroups`` themselves.
        schedule: Factor per step applied to every group (default: the spec's
            ``schedule``, else constant 1). Use it instead of a framework scheduler: a
            framework scheduler keeps ratios too, but does not know about freezing,
            stages, groups' own schedules and multipliers changed at run time.
        steps_per_epoch: Optimizer steps per epoch, for spec stages given in epochs.
        freeze_by: ``"requires_grad"`` (default): a frozen tensor has
            ``requires_grad=False``. ``"grad"``: for DistributedDataParallel and FSDP; every
            tensor that may train keeps ``requires_grad=True`` (the spec's stage-frozen
            tensors get it back here, so create the Controller *before* wrapping the
            model), and a pre-step hook of the optimizer drops the gradients of frozen
            tensors; :meth:`close` removes the hook. Groups the spec freezes for good
            (``frozen`` rules, no stage) stay out of autograd (no backward work, and every
            rank's engine skips them alike), so they cannot be unfrozen in this mode.

    The spec's runtime parts apply by themselves: a rule's ``schedule`` multiplies its
    groups' rates, and each of the spec's ``stages`` unfreezes its groups (at
    ``lr_mult`` x their planned rate) when :meth:`step` reaches its step.

    Raises:
        UnsupportedFeatureError: The groups carry ``lr_scale`` (``oneflow-graph``), or
            ``freeze_by="grad"`` and the optimizer has no ``register_step_pre_hook``
            (OneFlow 0.9).
        MultiLRError: The optimizer's groups do not match the plan's.
        SpecError: A stage is given in epochs and ``steps_per_epoch`` is not; an unknown
            ``freeze_by``.

    Example:
        >>> import torch, multilr
        >>> from multilr.schedules import Step
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> spec = {"lr": 0.1, "rules": [{"prefix": "1", "lr_mult": 10, "name": "head"}]}
        >>> groups = multilr.build(model, spec)
        >>> opt = torch.optim.SGD(groups)
        >>> ctl = multilr.Controller(opt, groups, schedule=Step(1, 0.5))
        >>> ctl.groups
        ['default', 'head']
        >>> ctl.freeze("default")
        >>> ctl.step()
        >>> ctl.rates()
        {'default': 0.0, 'head': 0.5}

        For DistributedDataParallel: ``build`` -> optimizer -> ``Controller(...,
        freeze_by="grad")`` -> wrap. Frozen tensors keep ``requires_grad``, and lose their
        gradient just before each optimizer step:

        >>> ctl = multilr.Controller(opt, groups, freeze_by="grad")
        >>> ctl.freeze("default")
        >>> model(torch.ones(1, 2)).sum().backward()
        >>> model[0].weight.requires_grad, model[0].weight.grad is not None
        (True, True)
        >>> opt.step()
        >>> model[0].weight.grad is None
        True
        >>> ctl.close()
    """

    def __init__(
        self,
        optimizer: Any,
        plan: Plan | Any,
        schedule: Schedule | None = None,
        *,
        steps_per_epoch: int | None = None,
        freeze_by: FreezeBy = "requires_grad",
    ) -> None:
        plan = plan if isinstance(plan, Plan) else getattr(plan, "plan", None)
        if not isinstance(plan, Plan):
            raise MultiLRError("Controller needs the plan (groups.plan) or the groups multilr.build returned")
        register_hook = step_pre_hook(optimizer, freeze_by)
        check_optimizer(optimizer, plan)
        self.optimizer = optimizer
        self.plan = plan
        self._program = Program(plan, schedule, steps_per_epoch=steps_per_epoch)
        self.schedule = self._program.schedule
        self.groups: list[str] = [g.name for g in plan.groups]
        self.freeze_by: FreezeBy = freeze_by
        self._freezing = Freezing.of(plan, freeze_by)
        self._mult, self._frozen, self._done = self._program.initial()
        self._step = 0
        self._hook: Any = None
        self._written: list[float] = []  # each group's lr as last written, to spot another driver
        # groups whose model-off tensors an unfreeze naming them switched on (under
        # "requires_grad", not frozen since: Freezing.thawed); in state_dict, so a resumed
        # run trains them too
        self._thawed: frozenset[int] = frozenset()
        self._transition(0, self._mult, self._frozen, self._done, everything=True, check=False)
        if freeze_by == "grad" and callable(register_hook):  # checked above; callable() for mypy
            self._hook = register_hook(self._before_optimizer_step)

    # -- reading -------------------------------------------------------------------------

    @property
    def step_count(self) -> int:
        """Optimizer steps taken (the schedule's current step)."""
        return self._step

    def rates(self) -> dict[str, float]:
        """Each group's rate for the next optimizer step."""
        return {
            name: float(pg["lr"]) for name, pg in zip(self.groups, self.optimizer.param_groups, strict=True)
        }

    def scales(self) -> dict[str, float]:
        """Each group's rate over the spec's ``lr``, before the schedule: planned scale x multiplier.

        0 for a frozen group. What :func:`multilr.lr_find` sweeps when given the Controller.
        """
        base = self.plan.base_lr
        return {
            name: 0.0 if f else g.lr / base * m
            for name, g, m, f in zip(self.groups, self.plan.groups, self._mult, self._frozen, strict=True)
        }

    def frozen(self) -> list[str]:
        """Names of the frozen groups."""
        return [n for n, f in zip(self.groups, self._frozen, strict=True) if f]

    # -- changing ------------------------------------------------------------------------

    def step(self) -> None:
        """Advance by one step (call after ``optimizer.step()``): schedules, then due stages.

        Raises:
            MultiLRError: A group's ``lr`` is not the one the Controller wrote: a framework
                scheduler (or anything else) drives the same optimizer; nothing changes.
                :meth:`set_scale`, :meth:`freeze`, :meth:`unfreeze` and :meth:`freeze_to`
                check the same.
        """
        self._transition(self._step + 1, list(self._mult), list(self._frozen), set(self._done))

    def set_scale(self, group: str, multiplier: float) -> None:
        """Multiply ``group``'s planned rate by ``multiplier`` from now on (1 = as planned).

        ``group`` may also name a parameter that has a group to itself (a ``rates``
        entry, or a rule that selects only it): seed 001's per-tensor rate changes.
        The same holds for :meth:`freeze` and :meth:`unfreeze`.

        Raises:
            SpecError: Unknown name, or a negative or non-finite multiplier.
            MultiLRError: A parameter that shares its group with other tensors.
        """
        i = self._index(group)
        mult = list(self._mult)
        mult[i] = number(multiplier, f"multiplier of group {group!r}")
        self._transition(self._step, mult, self._frozen, self._done)

    def freeze(self, *groups: str) -> None:
        """Freeze groups: no gradient, no update at all, until :meth:`unfreeze`.

        With ``freeze_by="grad"`` their tensors keep ``requires_grad`` and lose their
        gradients before each optimizer step, so this is safe inside DDP and FSDP.

        Raises:
            MultiLRError: No group is named (fastai's ``freeze()``, every group but the
                top, is ``freeze_to(-1)``), or a name is no group (nothing is changed).
        """
        if not groups:
            # a call that would freeze nothing is a fastai habit, not a request for nothing
            raise MultiLRError(
                "freeze() needs the groups to freeze (ctl.groups lists them); fastai's freeze(), "
                "which trains only the top, is ctl.freeze_to(-1)"
            )
        self._set_frozen(groups, True)

    def unfreeze(self, *groups: str, multiplier: float | None = None) -> None:
        """Unfreeze groups, optionally at ``multiplier`` x their planned rate.

        A named group's tensors that the model itself had switched off are switched on
        too: naming the group is asking for it.

        Raises:
            MultiLRError: No group is named (every frozen group, fastai's ``unfreeze()``,
                is :meth:`unfreeze_all`), or a named group is not frozen (nothing is changed).
        """
        if not groups:
            # an empty call unfreezing everything would make ``unfreeze(*some_list)`` with
            # an empty list thaw the whole model: the all-groups call has its own name
            raise MultiLRError(
                "unfreeze() needs the groups to unfreeze (frozen now: "
                f"{self.frozen()}); every frozen group, fastai's unfreeze(), is ctl.unfreeze_all()"
            )
        idx = [self._index(g) for g in groups]
        not_frozen = [self.groups[i] for i in idx if not self._frozen[i]]
        if not_frozen:
            raise MultiLRError(f"cannot unfreeze {not_frozen}: not frozen (frozen now: {self.frozen()})")
        mult, frozen = list(self._mult), list(self._frozen)
        if multiplier is not None:
            m = number(multiplier, "unfreeze multiplier")
            for i in idx:
                mult[i] = m
        for i in idx:
            frozen[i] = False
        # named by the user: tensors the model itself had switched off are switched on too
        self._transition(self._step, mult, frozen, self._done, thaw=idx)

    def unfreeze_all(self, multiplier: float | None = None) -> None:
        """Unfreeze every frozen group (fastai's ``unfreeze()``); nothing when none is.

        :meth:`unfreeze` of :meth:`frozen`: optionally at ``multiplier`` x the planned
        rates, and the tensors the model had switched off in those groups train too.

        Example:
            >>> import torch, multilr
            >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
            >>> spec = {"lr": 0.1, "rules": [{"prefix": "0", "frozen": True, "name": "body"}]}
            >>> groups = multilr.build(model, spec)
            >>> ctl = multilr.Controller(torch.optim.SGD(groups), groups)
            >>> ctl.frozen()
            ['body/frozen']
            >>> ctl.unfreeze_all(multiplier=0.5)  # at half the planned rate
            >>> ctl.frozen(), model[0].weight.requires_grad, ctl.optimizer.param_groups[0]["lr"]
            ([], True, 0.05)
        """
        if multiplier is not None:  # refused even when nothing is frozen
            number(multiplier, "unfreeze multiplier")
        frozen = self.frozen()
        if frozen:
            self.unfreeze(*frozen, multiplier=multiplier)

    def freeze_to(self, n: int) -> None:
        """Freeze every group below depth ``n`` and unfreeze the rest (fastai's ``freeze_to``).

        Depths are :meth:`Plan.block_depths <multilr.Plan.block_depths>`: the plan's
        layer-decay depths, else the model's ``group_matcher()`` (timm: a ViT's final norm
        is in the last block's layer), else the block structure of the names (stem 0,
        blocks 1..N, head N+1). ``n < 0`` counts from the top: ``freeze_to(-1)`` trains
        only the top depth. With the spec's ``train_bn`` the norm layers' groups keep
        training at every ``n``, as fastai's ``freeze_to`` with ``train_bn=True``.

        Raises:
            MultiLRError: A group holds tensors on both sides of ``n`` (the message names
                it; declare layer decay or stages in the spec so that depths get groups).
        """
        self._transition(self._step, self._mult, frozen_below(self.plan, n), self._done)

    def drop_frozen_grads(self) -> None:
        """Set the gradient of every frozen tensor to ``None``.

        With ``freeze_by="grad"`` the optimizer's pre-step hook calls this before every
        step, after the gradients have been all-reduced; call it yourself before
        gradient clipping when the norm should leave frozen tensors out.
        """
        pgs = self.optimizer.param_groups
        for i, f in enumerate(self._frozen):
            if f:
                for p in _params(pgs[i]):
                    p.grad = None

    def close(self) -> None:
        """Remove the optimizer hook of ``freeze_by="grad"`` (a no-op otherwise, or twice).

        Afterwards frozen groups keep rate 0, but their gradients reach the optimizer
        again (momentum and Adam moments then see them).
        """
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _before_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The pre-step hook: torch calls it as ``hook(optimizer, args, kwargs)``."""
        self.drop_frozen_grads()

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Step, multipliers, frozen groups and the stages already applied, by name.

        ``thawed``: the groups whose tensors the model itself had switched off and an
        :meth:`unfreeze` naming them switched on, so a resumed run trains them too.
        """
        return {
            "step": self._step,
            "multipliers": dict(zip(self.groups, self._mult, strict=True)),
            "frozen": self.frozen(),
            "stages_done": sorted(self._done),
            "thawed": [g for i, g in enumerate(self.groups) if i in self._thawed],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (validated first: nothing changes on bad input).

        Raises:
            SpecError: Missing keys, unknown group names or bad values.
        """
        stages = self._program.stages
        saved = read_state(state, self.groups, stages)
        done = saved.stages_done
        if done is None:  # a state from before stages_done: its flags hold every stage due
            done = {s for s, v in stages.items() if v[0] <= saved.step}
        # the stages applied are in the saved flags and not applied again; a stage due by now
        # and not applied (the spec moved it earlier, or steps_per_epoch changed) is applied
        # here, as a step would: left out, its groups would stay frozen for good
        self._transition(
            saved.step,
            saved.multipliers,
            saved.frozen,
            done,
            everything=True,
            check=False,  # the optimizer's rates were just loaded: they are rewritten here
            thaw=saved.thawed,
            replace_thaw=True,  # the saved groups, not these and the ones thawed now
        )

    # -- inside --------------------------------------------------------------------------

    def _index(self, group: str) -> int:
        """A group by its name, or by the name of a tensor that has a group to itself."""
        return group_index(self.plan, self.groups, group)

    def _set_frozen(self, groups: Iterable[str], value: bool) -> None:
        idx = [self._index(g) for g in groups]  # all names checked before anything changes
        frozen = list(self._frozen)
        for i in idx:
            frozen[i] = value
        self._transition(self._step, self._mult, frozen, self._done)

    def _transition(
        self,
        step: int,
        mult: list[float],
        frozen: list[bool],
        done: set[str],
        *,
        everything: bool = False,
        stages: bool = True,
        check: bool = True,
        thaw: Collection[int] = (),
        replace_thaw: bool = False,
    ) -> None:
        """Move to ``step`` with these multipliers and flags, applying the stages due by then.

        Every rate is computed first, so a bad factor raises before anything changes;
        then the state, the groups' ``lr`` and the tensors of the groups whose frozen
        flag changed (of every group, with ``everything``) are written. Under
        ``freeze_by="grad"`` a group the spec froze for good never thaws (checked before
        writing too), and ``requires_grad`` is off only for those groups.

        ``check``: first refuse when a group's ``lr`` is not the one last written (another
        driver). ``thaw``: groups whose tensors the model itself had switched off are
        switched on (those an :meth:`unfreeze` names, or a checkpoint's ``thawed``), added
        to the ones thawed before (``replace_thaw``: in their place); a stage or
        :meth:`freeze_to` leaves such tensors off.
        """
        if check:
            check_rates_unchanged(self.optimizer, self.groups, self._written, self._step)
        if stages:
            mult, frozen, done = self._program.due(step, (mult, frozen, done))
        rates = self._program.rates(step, mult, frozen)  # may raise: nothing written yet
        self._freezing.check_thaw(self.groups, frozen)
        changed = (
            range(len(frozen)) if everything else [i for i, f in enumerate(frozen) if f != self._frozen[i]]
        )
        thawed = self._freezing.thawed((*(() if replace_thaw else self._thawed), *thaw), frozen)
        self._step, self._mult, self._frozen, self._done = step, mult, frozen, done
        self._thawed = thawed
        for pg, rate in zip(self.optimizer.param_groups, rates, strict=True):
            pg["lr"] = rate
        self._written = rates
        self._freezing.write(self.optimizer.param_groups, frozen, changed, thawed)
