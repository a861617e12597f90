"""How the Controller keeps a frozen tensor from updating: the two ``freeze_by`` modes.

How a tensor loses its gradient is ``freeze_by``. ``"requires_grad"`` (the default)
turns autograd off for it: no backward work, but a data-parallel engine decides at wrap
time which tensors it synchronises (those with ``requires_grad``), so under
DistributedDataParallel a tensor unfrozen after wrapping is never all-reduced (the
ranks drift apart silently) and one frozen after wrapping stops the reducer (Lightning
20340). ``"grad"`` keeps ``requires_grad=True`` on every tensor that may train, so the
engine registers and all-reduces all of them on every rank, and drops the gradients of
frozen tensors in a pre-step hook of the optimizer, just before it updates
(``docs/distributed.md``).

Apart from :mod:`multilr._control`, which decides which groups are frozen and at what
rate each trains: this is the only part that touches tensors (``requires_grad`` and
``grad``) and the only part that differs between the two modes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from multilr._plantypes import Plan
from multilr.errors import MultiLRError, SpecError, UnsupportedFeatureError

__all__ = ["FreezeBy", "Freezing", "params", "step_pre_hook"]

#: How the Controller keeps a frozen tensor from updating (see the module docstring).
FreezeBy = Literal["requires_grad", "grad"]
_FREEZE_BY = ("requires_grad", "grad")


def step_pre_hook(optimizer: Any, freeze_by: str) -> Any:
    """Check ``freeze_by``; the optimizer's ``register_step_pre_hook``, or ``None`` if it has none.

    Raises:
        SpecError: An unknown ``freeze_by``.
        UnsupportedFeatureError: ``freeze_by="grad"`` and the optimizer has no
            ``register_step_pre_hook`` (OneFlow 0.9).
    """
    if freeze_by not in _FREEZE_BY:
        raise SpecError(f"freeze_by must be one of {list(_FREEZE_BY)}, got {freeze_by!r}")
    register_hook = getattr(optimizer, "register_step_pre_hook", None)
    if freeze_by == "grad" and not callable(register_hook):
        raise UnsupportedFeatureError(
            f"freeze_by='grad' drops frozen tensors' gradients in an optimizer step pre-hook, and "
            f"{type(optimizer).__module__}.{type(optimizer).__name__} has no register_step_pre_hook "
            "(OneFlow 0.9 has none); use freeze_by='requires_grad' (the default) there"
        )
    return register_hook


@dataclass(frozen=True)
class Freezing:
    """A plan's tensors under one ``freeze_by`` mode.

    Attributes:
        by: The mode.
        for_good: Per group: the spec freezes it for good (a ``frozen`` rule, no stage)
            and the mode is ``"grad"``.
        model_off: Per group, per tensor: the model had switched it off before build.
    """

    by: FreezeBy
    for_good: tuple[bool, ...]
    model_off: tuple[tuple[bool, ...], ...]

    @classmethod
    def of(cls, plan: Plan, by: FreezeBy) -> Freezing:
        """The flags of ``plan``'s groups and tensors under mode ``by``."""
        # frozen by a spec rule and by no stage: under "grad" these stay out of autograd, so
        # a wrapping engine skips them on every rank and never has to learn about them later
        for_good = tuple(by == "grad" and g.frozen and g.stage is None for g in plan.groups)
        # tensors the model itself had switched off before build (the table's "off"): the
        # spec does not own them, so only an explicit unfreeze of their group turns them on
        own = {p.name: p.requires_grad for p in plan.params}
        model_off = tuple(tuple(not own.get(n, True) for n in g.params) for g in plan.groups)
        return cls(by, for_good, model_off)

    def check_thaw(self, groups: Sequence[str], frozen: Sequence[bool]) -> None:
        """Refuse new ``frozen`` flags that thaw a group the spec froze for good.

        Raises:
            MultiLRError: Such a group would thaw (only under ``freeze_by="grad"``).
        """
        thawed = [n for n, f, good in zip(groups, frozen, self.for_good, strict=True) if good and not f]
        if thawed:
            raise MultiLRError(
                f"cannot unfreeze {thawed} with freeze_by='grad': the spec freezes them for good, so they "
                "stay out of autograd and a DDP/FSDP wrapper never synchronises them; to train them later, "
                "unfreeze them with a spec stage, or leave them unfrozen in the spec and freeze them with "
                "Controller.freeze (which keeps them in autograd in this mode)"
            )

    def thawed(self, groups: Iterable[int], frozen: Sequence[bool]) -> frozenset[int]:
        """Which of ``groups`` (thawed by an unfreeze) stay thawed under the new ``frozen`` flags.

        Under ``"requires_grad"`` freezing a group switches its tensors off, which ends
        its thaw; under ``"grad"`` freezing keeps ``requires_grad`` on (a wrapping engine
        must keep seeing them), so a thaw lasts.
        """
        if self.by == "grad":
            return frozenset(groups)
        return frozenset(i for i in groups if not frozen[i])

    def write(
        self,
        pgs: Sequence[Any],
        frozen: Sequence[bool],
        changed: Iterable[int],
        thawed: Collection[int] = (),
    ) -> None:
        """Set the tensors of the groups ``changed`` for their new ``frozen`` flags.

        A frozen tensor loses its gradient; ``requires_grad`` is off under
        ``"requires_grad"`` for the frozen groups, under ``"grad"`` only for the groups
        frozen for good. A tensor the model had switched off is on only in a group of
        ``thawed`` (an unfreeze named it, see :meth:`thawed`), and is put back off
        otherwise (a state loaded over a thawed one); a tensor that cannot have a gradient
        (an integer buffer kept as a parameter) is never switched on.
        """
        by_flag = self.by == "requires_grad"
        for i in changed:
            trains = not (frozen[i] if by_flag else self.for_good[i])
            thaw = i in thawed
            for p, model_off in zip(params(pgs[i]), self.model_off[i], strict=True):
                if frozen[i]:
                    p.grad = None  # a leftover gradient would still move it in some optimizers
                on = trains and (thaw or not model_off) and _differentiable(p)
                if bool(p.requires_grad) != on:
                    p.requires_grad_(on)


def _differentiable(p: Any) -> bool:
    """Whether ``p`` can have a gradient: a floating-point (or complex) tensor."""
    is_complex = getattr(p, "is_complex", None)
    return bool(p.is_floating_point() or (is_complex is not None and is_complex()))


def params(group: Any) -> list[Any]:
    """A group's tensors: torch's dict ``["params"]``, OneFlow's ``ParamGroup.parameters``."""
    return list(group["params"] if "params" in group else group.parameters)  # noqa: SIM401 - OneFlow
