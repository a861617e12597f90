"""Staged unfreezing declared in the spec: at a step (or epoch), these parameters start training.

A stage names rules (``unfreeze: [backbone]``) or a depth (``from_depth: -2``, as
fastai's ``freeze_to``). The parameters a stage reaches are frozen from the first step
until the stage, then train at ``lr_mult`` x their planned rate. The planner gives them
groups of their own, so no group ever holds tensors on both sides of a stage and the
optimizer's group list never grows (schedulers, checkpoints and DDP see the same
groups from the first step); :class:`~multilr.Controller` applies the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multilr._check import MAX_INT, check_keys, number, shown
from multilr.errors import SpecError

__all__ = ["Stage", "stage_of"]

_STAGE_KEYS = ("at", "epoch", "unfreeze", "from_depth", "lr_mult", "name")


@dataclass(frozen=True)
class Stage:
    """One step of staged unfreezing.

    Args:
        unfreeze: Names of the rules whose parameters this stage unfreezes.
        at: The first optimizer step (0-based) on which they train.
        epoch: Instead of ``at``: the first epoch on which they train (the
            :class:`~multilr.Controller` needs ``steps_per_epoch``).
        from_depth: Instead of ``unfreeze``: every parameter at layer depth
            ``>= from_depth`` (negative counts from the top, ``-1`` = the top depth), with
            depths from the spec's ``layer_decay`` or else the model's numbered blocks.
        lr_mult: Multiplier of their planned rate once unfrozen (``0.1`` starts them at a
            tenth); ``Controller.set_scale`` changes it later.
        name: Label in group names and tables (default ``stage<i>``).

    A parameter reached by several stages starts training at the earliest.

    Example:
        >>> Stage(unfreeze=("backbone",), at=100, lr_mult=0.1).when
        'step 100'
        >>> Stage.from_dict({"epoch": 2, "from_depth": -2}).to_dict()
        {'epoch': 2, 'from_depth': -2}
    """

    unfreeze: Sequence[str] = ()
    at: int | None = None
    epoch: int | None = None
    from_depth: int | None = None
    lr_mult: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        where = f"stage {shown(self.name)}" if self.name else "stage"
        if (self.at is None) == (self.epoch is None):
            raise SpecError(f"{where}: give exactly one of 'at' (a step) or 'epoch'")
        for key in ("at", "epoch"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise SpecError(f"{where}: {key} must be an integer >= 0, got {shown(value)}")
            if value is not None and value > MAX_INT:
                raise SpecError(f"{where}: {key} must be <= 2**63 - 1, got {shown(value)}")
        unfreeze = (self.unfreeze,) if isinstance(self.unfreeze, str) else tuple(self.unfreeze)
        if bool(unfreeze) == (self.from_depth is not None):
            raise SpecError(f"{where}: give exactly one of 'unfreeze' (rule names) or 'from_depth'")
        for rule in unfreeze:
            if not isinstance(rule, str) or not rule:
                raise SpecError(f"{where}: unfreeze must list rule names, got {shown(rule)}")
        if len(set(unfreeze)) != len(unfreeze):
            raise SpecError(f"{where}: unfreeze names a rule twice: {list(unfreeze)}")
        fd = self.from_depth
        if fd is not None and (isinstance(fd, bool) or not isinstance(fd, int) or abs(fd) > MAX_INT):
            raise SpecError(f"{where}: from_depth must be an integer (|from_depth| < 2**63), got {shown(fd)}")
        object.__setattr__(self, "unfreeze", unfreeze)
        object.__setattr__(self, "lr_mult", number(self.lr_mult, f"{where}: lr_mult"))
        if not isinstance(self.name, str):
            raise SpecError(f"{where}: name must be a string, got {shown(self.name)}")

    @property
    def when(self) -> str:
        """``"step N"`` or ``"epoch N"``."""
        return f"step {self.at}" if self.at is not None else f"epoch {self.epoch}"

    def start(self, steps_per_epoch: int | None) -> int:
        """The first optimizer step on which the stage's parameters train.

        Raises:
            SpecError: An epoch stage and no ``steps_per_epoch``.
        """
        if self.at is not None:
            return self.at
        if steps_per_epoch is None:
            raise SpecError(
                f"stage {self.name!r} starts at epoch {self.epoch}: give steps_per_epoch "
                "(Controller(..., steps_per_epoch=len(loader)))"
            )
        assert self.epoch is not None
        return self.epoch * steps_per_epoch

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "stage") -> Stage:
        """Build from ``{"at": 100, "unfreeze": ["backbone"], "lr_mult": 0.1}``."""
        if not isinstance(data, Mapping):
            raise SpecError(f"{where} must be a mapping, got {shown(data)}")
        check_keys(data, _STAGE_KEYS, where)
        unfreeze = data.get("unfreeze", ())
        if not isinstance(unfreeze, (str, list, tuple)):
            raise SpecError(f"{where}.unfreeze must be a list of rule names, got {shown(unfreeze)}")
        kwargs = {k: data[k] for k in ("at", "epoch", "from_depth", "lr_mult", "name") if k in data}
        try:
            return cls(unfreeze=tuple(unfreeze) if not isinstance(unfreeze, str) else (unfreeze,), **kwargs)
        except SpecError as exc:  # say which entry of the spec's list it is
            raise SpecError(f"{where}: {str(exc).removeprefix('stage: ')}") from None

    def to_dict(self) -> dict[str, Any]:
        """Mapping form; ``Stage.from_dict(s.to_dict()) == s``."""
        out: dict[str, Any] = {"at": self.at} if self.at is not None else {"epoch": self.epoch}
        if self.unfreeze:
            out["unfreeze"] = list(self.unfreeze)
        else:
            out["from_depth"] = self.from_depth
        if self.lr_mult != 1.0:
            out["lr_mult"] = self.lr_mult
        if self.name:
            out["name"] = self.name
        return out


def stage_of(
    stages: Sequence[Stage], selected: Mapping[str, list[int]], depths: Callable[[], list[int]]
) -> dict[int, int]:
    """Tensor position -> index of the earliest stage that unfreezes it (by start step).

    Args:
        stages: The spec's stages.
        selected: Rule name -> positions it selected (for every rule a stage names).
        depths: Gives each tensor's depth (called only for ``from_depth`` stages).

    Raises:
        SpecError: An epoch stage and a step stage reach the same tensor (their order
            depends on the epoch length, unknown to the planner), unless one of them
            starts at 0.
    """
    out: dict[int, int] = {}
    depth_of: list[int] | None = None
    for k, stage in enumerate(stages):
        if stage.unfreeze:
            reached: set[int] = set()
            for rule in stage.unfreeze:
                reached.update(selected.get(rule, ()))  # an optional rule may select nothing
        else:
            if depth_of is None:
                depth_of = depths()
            assert stage.from_depth is not None
            top = max(depth_of)
            cut = stage.from_depth + top + 1 if stage.from_depth < 0 else stage.from_depth
            reached = {t for t, d in enumerate(depth_of) if d >= cut}
        for t in reached:
            j = out.get(t)
            if j is None:
                out[t] = k
                continue
            other = stages[j]
            # step 0 is epoch 0: a stage at 0 is the earliest whatever the epoch length
            if (other.at is None) != (stage.at is None) and 0 not in (_key(stage), _key(other)):
                raise SpecError(
                    f"stages {other.name!r} ({other.when}) and {stage.name!r} ({stage.when}) both unfreeze "
                    "the same parameters; use steps for both, or epochs for both"
                )
            if _key(stage) < _key(other):
                out[t] = k
    return out


def _key(stage: Stage) -> int:
    return stage.at if stage.at is not None else stage.epoch  # type: ignore[return-value]
