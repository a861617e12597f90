"""Layer depth from the module tree, for layer-wise decay.

Depth is computed from *every* parameter name of the model, in the order the model
lists them, never from the trainable subset: freezing a block must not shift the
depth of the others (timm 2691).

``"blocks"`` mode, for any model:

* A *stack* is a module whose children are all numbered (``layer.0``, ``layer.1``, ...;
  two or more) and are themselves modules with submodules: transformer layers,
  residual blocks. A ``Sequential`` of plain layers (a stem, a downsample, a
  classifier) is not a stack.
* The tree is walked in order and cut into units: each stack element is a *block*;
  anything else that contains no stack is a *plain* unit; modules that contain a
  stack are opened up.
* Plain units before the first block are the stem (depth 0); blocks get 1..N in
  order; plain units after the last block are the head (N + 1); a plain unit
  between blocks shares the depth of the block before it.
* A model with no stack gives every top-level child its own depth, in order.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

from multilr.errors import PlanError

__all__ = ["infer_depths"]


def infer_depths(names: Sequence[str], mode: str | Mapping[str, int]) -> dict[str, int]:
    """Depth of each parameter name.

    Args:
        names: Every (deduplicated) parameter name of the model, in model order.
        mode: ``"blocks"``, ``"top"``, ``"tensor"`` or an explicit ``{glob: depth}``.

    Returns:
        Mapping name -> depth (0 = lowest).

    Raises:
        PlanError: An explicit map leaves a parameter without a depth.

    Example:
        >>> infer_depths(["emb.w", "blocks.0.fc.w", "blocks.1.fc.w", "head.w"], "blocks")
        {'emb.w': 0, 'blocks.0.fc.w': 1, 'blocks.1.fc.w': 2, 'head.w': 3}
    """
    if isinstance(mode, Mapping):
        return _explicit(names, mode)
    if mode == "tensor":
        return {n: i for i, n in enumerate(names)}
    if mode == "top":
        order: dict[str, int] = {}
        return {n: order.setdefault(n.partition(".")[0], len(order)) for n in names}
    return _blocks(names)


def _explicit(names: Sequence[str], depth_map: Mapping[str, int]) -> dict[str, int]:
    compiled = [(re.compile(fnmatch.translate(p)), d) for p, d in depth_map.items()]
    out: dict[str, int] = {}
    for name in names:
        for pattern, d in compiled:
            if pattern.match(name):
                out[name] = d
                break
        else:
            raise PlanError(
                f"layer_decay.depth: parameter {name!r} matches no pattern of the depth map "
                f"({', '.join(map(repr, depth_map))}); add it, or a catch-all '*'"
            )
    return out


class _Tree:
    """Module tree rebuilt from dotted names: full child paths in first-seen order."""

    def __init__(self, names: Sequence[str]) -> None:
        kids: dict[str, list[str]] = {"": []}
        for name in names:
            parent = ""
            for part in name.split("."):
                path = f"{parent}.{part}" if parent else part
                if path not in kids:
                    kids[path] = []
                    kids[parent].append(path)
                parent = path
        self.kids = kids
        self._stack: dict[str, bool] = {}
        self._has_stack: dict[str, bool] = {}

    def is_stack(self, path: str) -> bool:
        hit = self._stack.get(path)
        if hit is None:
            kids, children = self.kids, self.kids[path]
            hit = (
                len(children) >= 2
                and all(c.rpartition(".")[2].isdigit() for c in children)
                # every element owns submodules, not just tensors: blocks, not layers
                and all(any(kids[g] for g in kids[c]) for c in children)
            )
            self._stack[path] = hit
        return hit

    def has_stack(self, path: str) -> bool:
        hit = self._has_stack.get(path)
        if hit is None:
            hit = self.is_stack(path) or any(self.has_stack(c) for c in self.kids[path])
            self._has_stack[path] = hit
        return hit

    def units(self, path: str) -> list[tuple[str, bool]]:
        """(unit path, is_block) in model order."""
        out: list[tuple[str, bool]] = []
        stack = self.is_stack(path)
        for child in self.kids[path]:
            if stack and not self.has_stack(child):
                out.append((child, True))
            elif self.has_stack(child):
                out.extend(self.units(child))
            else:
                out.append((child, False))
        return out


def _blocks(names: Sequence[str]) -> dict[str, int]:
    tree = _Tree(names)
    units = tree.units("")
    n_blocks = sum(1 for _, is_block in units if is_block)
    if n_blocks == 0:
        return infer_depths(names, "top")
    unit_depth: dict[str, int] = {}
    depth = 0
    for path, is_block in units:
        if is_block:
            depth += 1
        elif depth == n_blocks:
            # after the last block: the head, one above it
            unit_depth[path] = n_blocks + 1
            continue
        unit_depth[path] = depth  # stem stays 0; mid units share the block before them
    return {name: unit_depth[_unit_of(name, unit_depth)] for name in names}


def _unit_of(name: str, unit_depth: Mapping[str, int]) -> str:
    path = name
    while path not in unit_depth:
        path = path.rpartition(".")[0]
    return path
