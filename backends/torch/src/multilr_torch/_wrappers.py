"""torch's model wrappers (DDP, ``DataParallel``, ``torch.compile``): multilr reads the model inside.

A wrapper holds the model's own tensors under a prefix of its own (``module.``,
``_orig_mod.``). Read through it, a spec written for the model would match nothing
and depth inference would see one top-level child, so the backend reads the model
inside, as MMEngine's optimizer constructor does. The groups hold the same tensor
objects, so they train the wrapped model. FSDP2's ``fully_shard`` keeps the names and
tensors and needs nothing. FSDP1 (``FullyShardedDataParallel``) is refused rather
than read through: its names carry ``_fsdp_wrapped_module.``, and between steps its
tensors are flat shards (without ``use_orig_params=True`` concatenations of several
tensors; with it, each tensor's own shard, 1-D: a 2-D weight would land in no_decay's
"other 1-D tensors" class). The groups are built from the model before it is wrapped;
with ``use_orig_params=True`` FSDP1 keeps those tensor objects and trains them at the
plan's rates (the ``fsdp1`` scenario of ``test_distributed.py``).
"""

from __future__ import annotations

import sys
from typing import Any

from torch.nn.parallel import DataParallel, DistributedDataParallel

from multilr import BackendError
from multilr.backend import ParamTable

__all__ = ["DDPTable", "peel", "refuse_ddp_freeze", "refuse_fsdp1", "unwrap"]

_FSDP1_MODULE = "torch.distributed.fsdp.fully_sharded_data_parallel"
_FSDP1_PREFIX = "_fsdp_wrapped_module."


def peel(model: Any) -> tuple[Any, bool]:
    """The model inside every wrapper around ``model``, and whether one of them was DDP.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2)
        >>> peel(torch.nn.DataParallel(net)) == (net, False)
        True
    """
    ddp = False
    while True:
        if isinstance(model, (DataParallel, DistributedDataParallel)):
            ddp = ddp or isinstance(model, DistributedDataParallel)
            model = model.module
            continue
        # torch.compile's class: imported once something was compiled; importing
        # torch._dynamo to check would add seconds to a build that never compiles
        dynamo = sys.modules.get("torch._dynamo.eval_frame")
        if dynamo is not None and isinstance(model, dynamo.OptimizedModule):
            model = model._orig_mod
            continue
        return model, ddp


def unwrap(model: Any) -> Any:
    """The model inside DDP, ``DataParallel`` and ``torch.compile`` wrappers, nested or not.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
        >>> unwrap(torch.nn.DataParallel(torch.nn.DataParallel(net))) is net
        True
    """
    return peel(model)[0]


class DDPTable(ParamTable):
    """A table read through DDP: the emit that follows checks what it may freeze."""

    __slots__ = ()


def refuse_ddp_freeze(names: list[str]) -> None:
    """Refuse to freeze tensors a live DDP registered as trainable.

    DDP lists the tensors that need gradients when it is made and waits for each of
    them in every backward; one frozen afterwards never sends one, and the next
    forward fails with a reduction error far from its cause.

    Raises:
        BackendError: ``names`` (tensors the plan freezes that still require grad) is not empty.
    """
    if not names:
        return
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    raise BackendError(
        f"build from the model before wrapping it in DistributedDataParallel: this plan freezes "
        f"{names[0]!r}{more}, which DDP registered as trainable when it was made and would wait "
        "for gradients from; build, optimizer and Controller come first, then DDP (docs/distributed.md)"
    )


def refuse_fsdp1(names: list[str]) -> None:
    """Refuse a model read through FSDP1, whose names and tensors are not the model's.

    Only looked for once FSDP1 has been imported (it is not, by ``import torch``), so a
    build that never meets it pays nothing.

    Raises:
        BackendError: A name runs through an FSDP1 wrapper (``_fsdp_wrapped_module.``).
    """
    if _FSDP1_MODULE not in sys.modules:
        return
    name = next((n for n in names if _FSDP1_PREFIX in n), None)
    if name is not None:
        raise BackendError(
            f"parameter {name!r} is inside FullyShardedDataParallel (FSDP1), whose names are not the "
            "model's and whose tensors are flat 1-D shards between steps (with use_orig_params=True too): "
            "build from the model before wrapping it, and wrap with use_orig_params=True so the groups "
            "keep its tensors; or shard with FSDP2's fully_shard, which keeps names and shapes "
            "(docs/distributed.md)"
        )
