"""Depths from the order a model's modules first ran: the framework-free half of ``forward_depths``.

Depth inference reads the order modules are *registered* in. A backend runs its model
once with :class:`FirstRuns`'s hook on every module (and its eval-mode and error
handling); :func:`run_order` sorts the extracted parameters by their modules' first run
and :func:`depths_by_run` hands depth inference the names in that order. The backend
keeps only what is its framework's: installing and removing the hooks, and the random
generators. So ``multilr_torch.forward_depths`` and ``multilr_oneflow.forward_depths``
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from multilr._check import did_you_mean
from multilr._depth import depths_and_head
from multilr._hints import ModelHints
from multilr._layerdecay import within_positions
from multilr._params import ParamInfo, ParamTable
from multilr._rules import DEPTH_MODES
from multilr._select import Glob, Selector
from multilr._tensors import Tensors
from multilr.errors import BackendError, SpecError

__all__ = ["FirstRuns", "check_mode", "depths_by_run", "positional", "run_order"]


def check_mode(mode: object) -> str:
    """``mode`` if it is one of ``LayerDecay``'s inferred depth modes, else a SpecError with a did-you-mean.

    Example:
        >>> check_mode("outer")
        'outer'
    """
    if not isinstance(mode, str) or mode not in DEPTH_MODES:
        modes = ", ".join(map(repr, DEPTH_MODES))
        raise SpecError(f"forward_depths: mode must be one of {modes}, got {mode!r}"
                        f"{did_you_mean(str(mode), DEPTH_MODES)}")  # fmt: skip
    return mode


class FirstRuns:
    """What a backend's forward pass records: each module path's first run.

    :meth:`hook` is the forward pre-hook the backend puts on every module; afterwards
    :attr:`first` maps each path that ran to the index of its first run (a module
    shared under several paths counts for each, at its first run).

    Example:
        >>> shared = object()
        >>> runs = FirstRuns([("a", shared), ("b", object()), ("c", shared)])
        >>> runs.hook(shared, ()); runs.first
        {'a': 0, 'c': 1}
    """

    def __init__(self, named: Iterable[tuple[str, Any]]) -> None:
        self.paths: dict[int, list[str]] = {}  # id(module) -> its paths, as the backend names them
        for path, module in named:
            self.paths.setdefault(id(module), []).append(path)
        self.first: dict[str, int] = {}

    def hook(self, module: Any, _inputs: Any) -> None:
        """Forward pre-hook: note ``module``'s paths on its first run."""
        for path in self.paths.get(id(module), ()):
            self.first.setdefault(path, len(self.first))

    @staticmethod
    @contextmanager
    def evaluating(modules: Sequence[Any]) -> Iterator[None]:
        """Run the pass in eval mode and put every module's flag back after, whatever happens.

        The flags are set by attribute, not with ``eval()``/``train()``: an override with
        side effects (one that flips ``requires_grad``) stays out. A forward that raises
        becomes a :class:`BackendError` naming the cause (chained).
        """
        flags = [module.training for module in modules]
        try:
            for module in modules:
                module.training = False
            yield
        except Exception as exc:
            raise BackendError(
                f"forward_depths: running the model raised {type(exc).__name__}: {exc}; pass the inputs "
                "its forward takes (args=(x,) or kwargs=batch); nothing was changed"
            ) from exc
        finally:
            for module, flag in zip(modules, flags, strict=True):
                module.training = flag


def positional(args: Any, is_tensor: Callable[[Any], bool]) -> tuple[Any, ...]:
    """The forward's positional inputs as a tuple (one tensor alone is one input).

    A mapping is refused: ``model(*batch)`` would pass its *keys* (a tokenizer's output
    given as ``args`` fails deep in the model with "'str' object has no attribute ...").

    Example:
        >>> positional([1, 2], lambda x: False)
        (1, 2)
    """
    if isinstance(args, Mapping):
        raise BackendError(
            f"forward_depths: args is a mapping ({type(args).__name__}: a tokenizer's output?); "
            "pass it as kwargs=batch, or its values as args=(...); nothing was run"
        )
    return (args,) if is_tensor(args) else tuple(args)


def run_order(infos: Sequence[ParamInfo], first_run: Mapping[str, int]) -> list[int]:
    """Positions of ``infos`` sorted by the first run of the module that owns each tensor.

    A tensor whose module never ran (a head the forward skips, a weight another module
    reads) takes the key of the tensor registered right before it, so it stays beside
    that one; tensors of one module keep their registration order.

    Example:
        >>> from multilr import ParamInfo
        >>> infos = [ParamInfo(n + ".w", (4,), "float32", n, (), True, n) for n in ("norm", "fc", "aux")]
        >>> run_order(infos, {"fc": 0, "norm": 1})  # aux never ran: it follows fc
        [1, 2, 0]
    """
    keys: list[int] = []
    for info in infos:
        keys.append(first_run.get(info.module, keys[-1] if keys else -1))
    return sorted(range(len(infos)), key=lambda i: (keys[i], i))


def depths_by_run(
    infos: Sequence[ParamInfo],
    first_run: Mapping[str, int],
    mode: str,
    within: Selector | str | None = None,
    hints: ModelHints | None = None,
) -> dict[str, int]:
    """Every name's depth under ``mode``, inferred from the names in run order.

    Each tensor is placed where it first ran under any of its names (a tied embedding
    runs first as the embedding, whichever name was registered first) and inferred
    under its first registered name, as the planner keeps it; every name of a tensor
    gets that depth. ``within``: only stacks among these tensors are blocks, as in
    ``LayerDecay(within=...)``: one map per tower. ``hints``: a model that names its own
    layers (timm's ``group_matcher``) gets those in ``blocks`` mode without ``within``,
    as ``LayerDecay("blocks")`` gives them: run order does not matter to its regexes.

    Returns:
        Name -> depth, in ``infos`` order: an explicit map for ``LayerDecay(depth=...)``.

    Raises:
        SpecError: An unknown ``mode``.
        CoverageError: ``within`` selects no parameter.

    Example:
        >>> from multilr import ParamInfo
        >>> infos = [ParamInfo(n + ".w", (4,), "float32", n, (), True, n)
        ...          for n in ("emb", "final_norm", "blocks.0.fc", "blocks.1.fc")]
        >>> depths_by_run(infos, {"emb": 0, "blocks.0.fc": 1, "blocks.1.fc": 2, "final_norm": 3}, "blocks")
        {'emb.w': 0, 'final_norm.w': 3, 'blocks.0.fc.w': 1, 'blocks.1.fc.w': 2}
    """
    check_mode(mode)
    table = ParamTable.from_infos(list(infos))
    tensors = Tensors(table)  # tied names folded into the first registered one, as the planner does
    names = tensors.names
    canonical = table.names if tensors.position is None else [names[t] for t in tensors.position]
    if hints is not None and mode == "blocks" and within is None:
        hinted = hints.depths(names)
        if hinted is not None:
            by_name = dict(zip(names, hinted, strict=True))
            return {info.name: by_name[canonical[i]] for i, info in enumerate(infos)}
    ordered = list(dict.fromkeys(canonical[i] for i in run_order(infos, first_run)))
    among = None
    if within is not None:
        selector = Glob(within) if isinstance(within, str) else within
        chosen = {names[t] for t in within_positions(selector, "forward_depths", table, tensors)}
        among = [name for name in ordered if name in chosen]
    depths, _ = depths_and_head(ordered, mode, stacks_among=among)
    depth = dict(zip(ordered, depths, strict=True))
    return {info.name: depth[canonical[i]] for i, info in enumerate(infos)}
