"""Extraction from ``torch.nn.Module`` and emission of ``torch.optim`` groups."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.parameter import is_lazy

from multilr import BackendError, ParamInfo, Plan
from multilr.backend import Convention, attach_params

__all__ = ["TorchBackend"]

_TYPE_NAMES: dict[type, tuple[str, ...]] = {}


def _type_names(cls: type) -> tuple[str, ...]:
    """The class and its bases up to ``nn.Module``, most derived first (cached per class)."""
    names = _TYPE_NAMES.get(cls)
    if names is None:
        names = tuple(c.__name__ for c in cls.__mro__ if c not in (torch.nn.Module, object))
        _TYPE_NAMES[cls] = names
    return names


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
        module = _require_module(model)
        out = []
        for mpath, sub in module.named_modules(remove_duplicate=False):
            types = _type_names(type(sub))
            for pname, p in sub.named_parameters(recurse=False, remove_duplicate=False):
                if is_lazy(p):
                    # a lazy module has no shape until its first forward pass
                    raise BackendError(
                        f"parameter {f'{mpath}.{pname}' if mpath else pname!r} is uninitialized "
                        "(lazy module); run one forward pass before multilr.build"
                    )
                out.append(
                    ParamInfo(
                        f"{mpath}.{pname}" if mpath else pname,
                        tuple(p.shape),
                        str(p.dtype).removeprefix("torch."),
                        mpath,
                        types,
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
        module = _require_module(model)
        tensors: dict[str, torch.nn.Parameter] = {}
        for name, p in module.named_parameters(remove_duplicate=False):
            tensors.setdefault(plan.aliases.get(name, name), p)
        groups = attach_params(plan, self.convention, tensors)
        # Everything is validated; only now touch the model.
        for group in plan.groups:
            if group.frozen:
                for n in group.params:
                    tensors[n].requires_grad_(False)
        return groups
