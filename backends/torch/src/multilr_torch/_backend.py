"""Extraction from ``torch.nn.Module`` and emission of ``torch.optim`` groups."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.parameter import is_lazy

from multilr import BackendError, ParamInfo, Plan
from multilr.backend import Convention, attach_params, class_names, walk_params

__all__ = ["TorchBackend"]

_DTYPES: dict[Any, str] = {}


def _require_module(model: Any) -> torch.nn.Module:
    if not isinstance(model, torch.nn.Module):
        raise BackendError(f"backend 'torch' needs a torch.nn.Module, got {type(model).__name__}")
    return model


class TorchBackend:
    """The ``torch`` backend (convention ``"lr"``)."""

    name = "torch"
    convention: Convention = "lr"

    def extract(self, model: Any) -> list[ParamInfo]:
        """Every named parameter, tied ones under each name (key: tensor identity)."""
        out = []
        for name, mpath, sub, p in walk_params(_require_module(model)):
            if is_lazy(p):
                # a lazy module has no shape until its first forward pass
                raise BackendError(
                    f"parameter {name!r} is uninitialized (lazy module); "
                    "run one forward pass before multilr.build"
                )
            dtype = _DTYPES.get(p.dtype)
            if dtype is None:  # str(dtype) is slow enough to show on 2,000 tensors
                dtype = _DTYPES[p.dtype] = str(p.dtype).removeprefix("torch.")
            out.append(
                ParamInfo(
                    name,
                    tuple(p.shape),
                    dtype,
                    mpath,
                    class_names(type(sub), torch.nn.Module),
                    p.requires_grad,
                    id(p),
                )
            )
        return out

    def emit(self, model: Any, plan: Plan) -> list[dict[str, Any]]:
        """``{'params', 'name', 'lr', 'weight_decay', **hyper}`` per group.

        Raises:
            BackendError: The model's parameters no longer match the plan.
        """
        aliases = plan.aliases
        tensors: dict[str, Any] = {}
        for name, _, _, p in walk_params(_require_module(model)):
            tensors.setdefault(aliases.get(name, name), p)
        groups = attach_params(plan, self.convention, tensors)
        # Everything is validated; only now touch the model.
        for group in plan.groups:
            if group.frozen:
                for n in group.params:
                    tensors[n].requires_grad_(False)
        return groups
