"""Depths from the order a model's modules first ran: the framework-free half of ``forward_depths``.

Depth inference reads the order modules are *registered* in. A backend that can run its
model once records each module path's first run (``first_run``: path -> its index among
the runs); these functions sort the extracted parameters by that and hand depth
inference the names in the new order. Each backend only records the runs (hooks, train
flags and random generators are its own business); the sorting and the depths are here
once, so ``multilr_torch.forward_depths`` and ``multilr_oneflow.forward_depths`` cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from multilr._check import did_you_mean
from multilr._depth import infer_depths
from multilr._params import ParamInfo
from multilr.errors import SpecError

__all__ = ["MODES", "check_mode", "depths_by_run", "run_order"]

#: The inferred modes of ``LayerDecay.depth`` (an explicit map needs no forward pass).
MODES = ("blocks", "outer", "top", "tensor")


def check_mode(mode: object) -> str:
    """``mode`` if it is one of :data:`MODES`, else a SpecError with a did-you-mean.

    Example:
        >>> check_mode("outer")
        'outer'
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise SpecError(f"forward_depths: mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}"
                        f"{did_you_mean(str(mode), MODES)}")  # fmt: skip
    return mode


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


def depths_by_run(infos: Sequence[ParamInfo], first_run: Mapping[str, int], mode: str) -> dict[str, int]:
    """Every name's depth under ``mode``, inferred from the names in run order.

    Tied tensors are inferred once, under their first registered name (as the planner
    keeps them), and every name of a tensor gets that depth.

    Returns:
        Name -> depth, in ``infos`` order: an explicit map for ``LayerDecay(depth=...)``.

    Example:
        >>> from multilr import ParamInfo
        >>> infos = [ParamInfo(n + ".w", (4,), "float32", n, (), True, n)
        ...          for n in ("emb", "final_norm", "blocks.0.fc", "blocks.1.fc")]
        >>> depths_by_run(infos, {"emb": 0, "blocks.0.fc": 1, "blocks.1.fc": 2, "final_norm": 3}, "blocks")
        {'emb.w': 0, 'final_norm.w': 3, 'blocks.0.fc.w': 1, 'blocks.1.fc.w': 2}
    """
    canonical: dict[object, str] = {}  # tensor -> its first name
    for info in infos:
        canonical.setdefault(info.key, info.name)
    ordered = [infos[i].name for i in run_order(infos, first_run) if canonical[infos[i].key] == infos[i].name]
    depth = infer_depths(ordered, check_mode(mode))
    return {info.name: depth[canonical[info.key]] for info in infos}
