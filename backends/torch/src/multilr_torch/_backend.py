"""Extraction from ``torch.nn.Module`` and emission of ``torch.optim`` groups."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import torch
from torch.nn.parameter import UninitializedTensorMixin, is_lazy  # type: ignore[attr-defined]

from multilr import BackendError, ParamInfo, Plan
from multilr.backend import (
    Convention,
    ParamTable,
    attach_params,
    attach_table,
    frozen_params,
    frozen_tensors,
)
from multilr_torch._inner import read_model
from multilr_torch._wrappers import DDPTable, peel, refuse_ddp_freeze, refuse_fsdp1, unwrap

__all__ = ["TorchBackend"]

_DTYPES: dict[Any, str] = {}
_SHAPE = attrgetter("shape")
_DTYPE = attrgetter("dtype")
_REQUIRES_GRAD = attrgetter("requires_grad")


def _require_module(model: Any) -> tuple[torch.nn.Module, bool]:
    """The model inside its wrappers, and whether DDP was one of them."""
    if not isinstance(model, torch.nn.Module):
        raise BackendError(f"backend 'torch' needs a torch.nn.Module, got {type(model).__name__}")
    return peel(model)


def _dtype_name(dtype: Any) -> str:
    name = _DTYPES.get(dtype)
    if name is None:  # str(dtype) is slow enough to show on 2,000 tensors
        name = _DTYPES[dtype] = str(dtype).removeprefix("torch.")
    return name


class TorchBackend:
    """The ``torch`` backend (convention ``"lr"``)."""

    name = "torch"
    convention: Convention = "lr"

    def unwrap(self, model: Any) -> Any:
        """The model a DDP, ``DataParallel`` or ``torch.compile`` wrapper holds.

        ``build`` and ``plan`` read the model's timm hints from it; ``extract`` and
        ``emit`` read through wrappers too, so a wrapper and its model give the same
        plan and groups holding the same tensors (``multilr_torch._wrappers``).
        """
        return unwrap(model)

    def extract(self, model: Any) -> list[ParamInfo]:
        """Every named parameter, tied ones under each name (key: tensor identity)."""
        return self.extract_table(model).infos()

    def extract_table(self, model: Any) -> ParamTable:
        """:meth:`extract` as columns, with the tensors: one walk of the model.

        Each attribute is read for all tensors at once (``map`` with ``attrgetter``),
        which keeps the per-tensor Python work to the walk itself.
        """
        module, ddp = _require_module(model)
        (names, modules, module_types, tensors), attributes = read_model(module)
        refuse_fsdp1(names)
        # is_lazy is an isinstance check: asked once per tensor class, not once per tensor
        if any(issubclass(cls, UninitializedTensorMixin) for cls in set(map(type, tensors))):
            name = next(n for n, p in zip(names, tensors, strict=True) if is_lazy(p))
            # a lazy module has no shape until its first forward pass
            raise BackendError(
                f"parameter {name!r} is uninitialized (lazy module); "
                "run one forward pass before multilr.build"
            )
        return (DDPTable if ddp else ParamTable)(
            names,
            list(map(_SHAPE, tensors)),  # torch.Size, a tuple; records get plain tuples
            lambda: list(map(_dtype_name, map(_DTYPE, tensors))),  # made only if ParamInfos are
            modules,
            module_types,
            list(map(_REQUIRES_GRAD, tensors)),
            list(map(id, tensors)),
            tensors,
            attributes,
        )

    def emit(self, model: Any, plan: Plan) -> list[dict[str, Any]]:
        """``{'params', 'name', 'lr', 'weight_decay', **hyper}`` per group.

        Raises:
            BackendError: The model's parameters no longer match the plan.
        """
        module, ddp = _require_module(model)
        walk, _ = read_model(module)
        refuse_fsdp1(walk.names)
        return self._emit(plan, walk.names, walk.tensors, ddp)

    def emit_table(self, table: ParamTable, plan: Plan) -> list[dict[str, Any]]:
        """:meth:`emit` with the tensors of the table :meth:`extract_table` just read."""
        groups = attach_table(plan, self.convention, table)  # tensors by position when it can
        frozen = frozen_tensors(plan, groups)
        if isinstance(table, DDPTable):
            trainable = {id(p) for p in frozen if p.requires_grad}
            named = zip(table.names, table.tensors or (), strict=True)
            refuse_ddp_freeze([n for n, p in named if id(p) in trainable])
        # Everything is validated; only now touch the model.
        for p in frozen:
            p.requires_grad_(False)
        return groups

    def _emit(
        self, plan: Plan, names: Sequence[str], tensors: Sequence[Any], ddp: bool
    ) -> list[dict[str, Any]]:
        aliases = plan.aliases
        by_name: dict[str, Any] = {}
        if aliases:
            for name, p in zip(names, tensors, strict=True):
                by_name.setdefault(aliases.get(name, name), p)
        else:
            by_name = dict(zip(names, tensors, strict=True))
        groups = attach_params(plan, self.convention, by_name)
        frozen = frozen_params(plan)
        if ddp:
            refuse_ddp_freeze([n for n in frozen if by_name[n].requires_grad])
        # Everything is validated; only now touch the model.
        for name in frozen:
            by_name[name].requires_grad_(False)
        return groups
