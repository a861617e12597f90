"""Depths from the order a model's modules run in: one forward pass, then depth inference.

Depth inference reads the order modules are *registered* in, and some models register a
module far from where it runs: OPT's ``final_layer_norm`` before its layers (inference:
the stem), BART's ``layernorm_embedding`` after them (the head). ``layer_decay.place``
fixes one model by name; :func:`forward_depths` fixes any, by running it once and
handing inference the parameter names in the order their modules first ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from multilr import Selector
from multilr._hints import read_hints
from multilr._runorder import FirstRuns, check_mode, depths_by_run, positional, run_order  # the core's half
from multilr_torch._backend import TorchBackend
from multilr_torch._inner import without_compiled
from multilr_torch._wrappers import peel

__all__ = ["forward_depths", "forward_order"]


def forward_order(model: Any, args: Any = (), kwargs: Mapping[str, Any] | None = None) -> list[str]:
    """Every parameter name, in the order the modules that own them first run.

    ``model(*args, **kwargs)`` runs once, in eval mode and without gradients, with a
    forward pre-hook on every module; afterwards the hooks are gone and every module's
    train/eval flag and the random number generators are as they were (eval mode: no
    batch-norm statistics move, no dropout draws). A tensor whose module never runs
    (a head the forward skips, a weight read by another module) stays right after the
    tensor registered before it; a tensor on a module that runs keeps its place among
    its module's tensors. Tied tensors are listed under every name, first name first.

    Args:
        model: A ``torch.nn.Module`` (DDP, DataParallel and ``torch.compile`` wrappers
            are read through, and the inner module runs).
        args: The forward's positional inputs: a tuple, or one tensor.
        kwargs: Its keyword inputs (a Hugging Face batch: ``kwargs=batch``).

    Returns:
        The names ``multilr.build`` plans, reordered.

    Raises:
        BackendError: Not a module, or the forward raised (chained); nothing changed.

    Example:
        >>> import torch
        >>> class Net(torch.nn.Module):  # registers the norm first, runs it last
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.norm = torch.nn.LayerNorm(4)
        ...         self.fc = torch.nn.Linear(4, 4)
        ...     def forward(self, x):
        ...         return self.norm(self.fc(x))
        >>> forward_order(Net(), torch.zeros(1, 4))
        ['fc.weight', 'fc.bias', 'norm.weight', 'norm.bias']
    """
    infos = TorchBackend().extract(model)  # refuses what build refuses (lazy tensors, FSDP1)
    return [infos[i].name for i in run_order(infos, _first_runs(model, args, kwargs))]


def forward_depths(
    model: Any,
    args: Any = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    mode: str = "blocks",
    within: Selector | str | None = None,
    model_hints: bool = True,
) -> dict[str, int]:
    """Each parameter's depth, inferred from the order the model runs its modules in.

    :func:`forward_order`, then the depth inference of ``LayerDecay(depth=mode)`` on the
    names in that order. Pass the result as ``LayerDecay(decay, depth=...)``: an explicit
    map of every name (tied names share their tensor's depth).

    Args:
        model: A ``torch.nn.Module``.
        args: The forward's positional inputs: a tuple, or one tensor.
        kwargs: Its keyword inputs.
        mode: ``"blocks"``, ``"outer"``, ``"top"`` or ``"tensor"``, as ``LayerDecay.depth``.
        within: Only stacks among these parameters are blocks (a selector or glob), as in
            ``LayerDecay(within=...)``: for towers, one map per tower with that tower's
            ``within``, so each counts its own layers.
        model_hints: A model with timm's ``group_matcher`` keeps the depths it names (in
            ``blocks`` mode without ``within``), as ``LayerDecay("blocks")`` gives them;
            ``False``: run order decides for it too.

    Returns:
        Parameter name -> depth, in ``named_parameters()`` order.

    Raises:
        BackendError: Not a module, ``args`` a mapping, or the forward raised; nothing changed.
        SpecError: An unknown ``mode``.
        CoverageError: ``within`` selects no parameter.

    Example:
        >>> import torch
        >>> from multilr import LayerDecay, Spec
        >>> class Net(torch.nn.Module):  # a final norm registered before the blocks
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.emb = torch.nn.Linear(2, 4)
        ...         self.final_norm = torch.nn.LayerNorm(4)
        ...         self.blocks = torch.nn.ModuleList(
        ...             torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)) for _ in range(2))
        ...     def forward(self, x):
        ...         x = self.emb(x)
        ...         for block in self.blocks:
        ...             x = block(x)
        ...         return self.final_norm(x)
        >>> depths = forward_depths(Net(), torch.zeros(1, 2))
        >>> depths["final_norm.weight"], depths["blocks.1.0.weight"], depths["emb.weight"]
        (3, 2, 0)
        >>> spec = Spec(lr=1e-3, layer_decay=LayerDecay(0.5, depth=depths))
    """
    check_mode(mode)
    infos = TorchBackend().extract(model)
    hints = read_hints(peel(model)[0]) if model_hints else None
    return depths_by_run(infos, _first_runs(model, args, kwargs), mode, within, hints)


def _first_runs(model: Any, args: Any, kwargs: Mapping[str, Any] | None) -> dict[str, int]:
    """Module path -> the index of its first run in one forward pass (paths that ran only)."""
    module, _ = peel(model)
    args = positional(args, lambda x: isinstance(x, torch.Tensor))
    # paths as the backend names the tensors: a compiled submodule's without ``_orig_mod``
    runs = FirstRuns(
        (without_compiled(module, path), sub) for path, sub in module.named_modules(remove_duplicate=False)
    )
    subs = list(module.modules())
    devices = sorted({p.device for p in module.parameters() if p.device.type == "cuda"}, key=str)
    handles = [sub.register_forward_pre_hook(runs.hook) for sub in subs]
    try:
        with FirstRuns.evaluating(subs), torch.random.fork_rng(devices=devices), torch.no_grad():
            module(*args, **(kwargs or {}))
    finally:
        for handle in handles:
            handle.remove()
    return runs.first
