"""Depths from the order a OneFlow model's modules run in: one eager forward pass.

The OneFlow twin of ``multilr_torch.forward_depths``: depth inference reads the order
modules are *registered* in, and a model that registers a module far from where it runs
(a final norm before its blocks) gets that module's depth wrong. Here the model runs
once; the sorting and the depth inference are the core's (``multilr._runorder``), so
both frameworks give one model the same depths.

Two things differ from torch, both OneFlow 0.9's:

* ``register_forward_pre_hook`` returns no handle and stores the hook under
  ``len(hooks)``, which overwrites a user's hook once any was deleted. The hooks go
  into ``_forward_pre_hooks`` under keys of our own and are popped afterwards.
* There is no ``fork_rng``. The "auto" default generator holds every device's
  generator (CPU and each CUDA device OneFlow set up), so its state is saved before
  the pass and put back after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multilr import BackendError, Selector
from multilr._hints import read_hints
from multilr._runorder import FirstRuns, check_mode, depths_by_run, positional, run_order  # the core's half
from multilr_oneflow._backend import EagerBackend
from multilr_oneflow._load import import_oneflow

__all__ = ["forward_depths", "forward_order"]


def forward_order(model: Any, args: Any = (), kwargs: Mapping[str, Any] | None = None) -> list[str]:
    """Every parameter name, in the order the modules that own them first run.

    ``model(*args, **kwargs)`` runs once in eager mode, in eval mode and without
    gradients, with a forward pre-hook on every module; afterwards the hooks are gone and
    every module's train/eval flag and the random number generators are as they were. A
    tensor whose module never runs stays right after the tensor registered before it.
    Tied tensors are listed under every name.

    Args:
        model: A ``oneflow.nn.Module`` (for ``nn.Graph``, the module the graph holds).
        args: The forward's positional inputs: a tuple, or one tensor.
        kwargs: Its keyword inputs.

    Returns:
        The names ``multilr.build`` plans, reordered.

    Raises:
        BackendError: Not a module, or the forward raised (chained); nothing changed.

    Example:
        >>> import oneflow as flow
        >>> class Net(flow.nn.Module):  # registers the norm first, runs it last
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.norm = flow.nn.LayerNorm(4)
        ...         self.fc = flow.nn.Linear(4, 4)
        ...     def forward(self, x):
        ...         return self.norm(self.fc(x))
        >>> forward_order(Net(), flow.zeros(1, 4))
        ['fc.weight', 'fc.bias', 'norm.weight', 'norm.bias']
    """
    infos = EagerBackend().extract(_module(model))  # refuses what build refuses
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
    names in that order: an explicit map of every name for ``LayerDecay(depth=...)``,
    the same for the ``oneflow`` and ``oneflow-graph`` backends.

    Args:
        model: A ``oneflow.nn.Module``.
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
        >>> import oneflow as flow
        >>> from multilr import LayerDecay, Spec
        >>> class Net(flow.nn.Module):  # a final norm registered before the blocks
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.emb = flow.nn.Linear(2, 4)
        ...         self.final_norm = flow.nn.LayerNorm(4)
        ...         self.blocks = flow.nn.ModuleList(
        ...             [flow.nn.Sequential(flow.nn.Linear(4, 4), flow.nn.Linear(4, 4)) for _ in range(2)])
        ...     def forward(self, x):
        ...         x = self.emb(x)
        ...         for block in self.blocks:
        ...             x = block(x)
        ...         return self.final_norm(x)
        >>> depths = forward_depths(Net(), flow.zeros(1, 2))
        >>> depths["final_norm.weight"], depths["blocks.1.0.weight"], depths["emb.weight"]
        (3, 2, 0)
        >>> spec = Spec(lr=1e-3, layer_decay=LayerDecay(0.5, depth=depths))
    """
    check_mode(mode)
    infos = EagerBackend().extract(_module(model))
    hints = read_hints(model) if model_hints else None
    return depths_by_run(infos, _first_runs(model, args, kwargs), mode, within, hints)


def _module(model: Any) -> Any:
    """``model``, unless it is an ``nn.Graph``: that runs compiled, where no hook sees a module run."""
    if isinstance(model, import_oneflow().nn.Graph):
        raise BackendError(
            f"forward_depths: got the nn.Graph {type(model).__name__}; pass the module it was made from "
            "(the eager module runs once, and its depths serve backend='oneflow-graph' too)"
        )
    return model


def _first_runs(module: Any, args: Any, kwargs: Mapping[str, Any] | None) -> dict[str, int]:
    """Module path -> the index of its first run in one forward pass (paths that ran only)."""
    flow = import_oneflow()
    args = positional(args, lambda x: isinstance(x, flow.Tensor))
    runs = FirstRuns(_all_paths(module, ""))  # OneFlow 0.9's named_modules has no remove_duplicate
    subs = list({id(sub): sub for sub in module.modules()}.values())
    token = object()  # a key no OneFlow-made hook has (they are ints)
    generator = flow._oneflow_internal.default_generator("auto")  # every device's generator
    rng = generator.get_state()
    for sub in subs:
        sub._forward_pre_hooks[token] = runs.hook
    try:
        with FirstRuns.evaluating(subs), flow.no_grad():
            module(*args, **(kwargs or {}))
    finally:
        for sub in subs:
            sub._forward_pre_hooks.pop(token, None)
        generator.set_state(rng)
    return runs.first


def _all_paths(module: Any, prefix: str) -> list[tuple[str, Any]]:
    """``(path, module)`` for every path to every submodule, shared ones under each path."""
    found = [(prefix, module)]
    for name, child in module._modules.items():
        if child is not None:
            found += _all_paths(child, f"{prefix}.{name}" if prefix else name)
    return found
