"""Extraction from ``torch.nn.Module`` and emission of ``torch.optim`` groups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.nn.parameter import is_lazy

from multilr import BackendError, ParamInfo, Plan
from multilr.backend import Convention, attach_params

__all__ = ["TorchBackend"]

_TYPE_NAMES: dict[type, tuple[str, ...]] = {}
_DTYPES: dict[Any, str] = {}


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


def _walk(module: torch.nn.Module, prefix: str = "") -> Iterator[tuple[str, torch.nn.Module, str, Any]]:
    """(module path, module, attribute, parameter) for every parameter, ties included.

    The same order as ``named_parameters(remove_duplicate=False)``, read straight from
    each module's own tables: about three times faster than the public generators,
    which matters for 2,000-tensor models.
    """
    for pname, p in module._parameters.items():
        if p is not None:
            yield prefix, module, pname, p
    for cname, child in module._modules.items():
        if child is not None:
            yield from _walk(child, f"{prefix}.{cname}" if prefix else cname)


def _name(mpath: str, pname: str) -> str:
    return f"{mpath}.{pname}" if mpath else pname


class TorchBackend:
    """The ``torch`` backend (convention ``"lr"``)."""

    name = "torch"
    convention: Convention = "lr"

    def extract(self, model: Any) -> list[ParamInfo]:
        """Every named parameter, tied ones under each name (key: tensor identity)."""
        out = []
        for mpath, sub, pname, p in _walk(_require_module(model)):
            if is_lazy(p):
                # a lazy module has no shape until its first forward pass
                raise BackendError(
                    f"parameter {_name(mpath, pname)!r} is uninitialized (lazy module); "
                    "run one forward pass before multilr.build"
                )
            dtype = _DTYPES.get(p.dtype)
            if dtype is None:  # str(dtype) is slow enough to show on 2,000 tensors
                dtype = _DTYPES[p.dtype] = str(p.dtype).removeprefix("torch.")
            out.append(
                ParamInfo(
                    _name(mpath, pname),
                    tuple(p.shape),
                    dtype,
                    mpath,
                    _type_names(type(sub)),
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
        for mpath, _, pname, p in _walk(_require_module(model)):
            name = _name(mpath, pname)
            tensors.setdefault(aliases.get(name, name), p)
        groups = attach_params(plan, self.convention, tensors)
        # Everything is validated; only now touch the model.
        for group in plan.groups:
            if group.frozen:
                for n in group.params:
                    tensors[n].requires_grad_(False)
        return groups
