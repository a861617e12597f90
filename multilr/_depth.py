"""Layer depth from the module tree, for layer-wise decay.

Depth is computed from *every* parameter name of the model, in the order the model
lists them, never from the trainable subset: freezing a block must not shift the
depth of the others (timm 2691).

``"blocks"`` mode, for any model:

* A *stack* is a module whose children are all numbered alike and are themselves
  modules with submodules: transformer layers, residual blocks. Numbered alike: two or
  more numbers (``layer.0``, ``layer.1``), or three or more of one name and a number
  (torchvision's ``denselayer1``, ``block1-0``; two such, ``ghost1`` / ``ghost2``, are
  the halves of one block). A ``Sequential`` of plain layers (a stem, a downsample, a
  classifier) is not a stack.
* ``branch1`` .. ``branchN`` are an Inception module's parallel branches: no stack, and
  no stack inside one (:data:`PARALLEL`).
* A list of one numbered child is a stack when a sibling stack is numbered like it (same
  name before the number, children named alike): a stage of one block, CSWin's
  ``stage1.0`` beside ``stage2.0`` / ``.1``.
* A numbered run whose elements each hold at most two modules with tensors (a conv and
  its norm, a squeeze-excitation) is a *run of layers*, not a stack, inside another
  stack's element (HF ResNet's ``layers.j.layer.k``, torchvision EfficientNet's
  ``block.k``: ResNet-50 gets 16 block depths, not 48 conv depths) and anywhere in a
  model that has a stack of blocks (wav2vec2's conv feature encoder is the stem, a
  decode head's projections the head). A model of such runs alone keeps its top-level
  ones as stacks (a plain CNN of conv units).
* A run of layers that is no stack, beside the one sibling stack with the same element
  names, goes in with it: ConvNeXt's ``downsample_layers.i`` each just before
  ``stages.i`` (just after, when the run is registered after the stack). So does a stack
  of plain elements beside the one sibling stack of stacks with the same elements: PVT's
  ``patch_embeddings.i`` beside ``block.i.j``.
* An element of a stack holding at most two modules with tensors, where another element
  holds more (or holds stacks), is a layer beside the blocks, a *plain* unit:
  torchvision's MobileNet/EfficientNet stem conv ``features.0`` is the stem and its last
  conv ``features.N`` the head (:func:`multilr._stacks.layer_elements`). Unless its modules are some
  bigger element's, by their names inside it with digits made ``0``: then it is a block
  with a part left out (a layer scale only in ``blocks.0``; MobileNetV2's first block,
  with no expansion conv, when its norms hold no tensors), and stays one. Likewise a run
  of layers shaped like a stack of blocks, its elements parts of that stack's, is one
  (:func:`multilr._stacks._blocks_alike`).
* The tree is walked in order and cut into units: each other stack element is a *block*;
  anything else that contains no stack is a *plain* unit; modules that contain a
  stack are opened up.
* Plain units before the first block are the stem (depth 0); blocks get 1..N in
  order; plain units after the last block are the head (N + 1); a plain unit
  between blocks shares the depth of the block before it.
* A model with no stack gives every top-level child its own depth, in order.

``"outer"`` mode is ``"blocks"`` with only the outermost stacks: a stack inside a
stack's element is not one, so its element stays whole. T5's ``block.3.layer.0`` /
``layer.1`` (self-attention, feed-forward) then share ``block.3``'s depth, where
``"blocks"`` gives each its own (what Swin's ``layers.i.blocks.j`` wants).

How, for 2,000 tensors in about 2 ms: no tree of every path is built. The names are
cut to their owning modules once; stacks are found through the owners' *shapes*
(digits made ``0``, so a thousand blocks share a shape); each owner's unit is its
shortest prefix outside the opened modules; and the units come in the tree's order
from their first appearance. The per-name steps are ``map`` over ``str`` methods, in C.
``tests/test_depth_paths.py`` holds the tree walk of the definition and checks both
agree on thousands of module trees.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import compress

from multilr._select import is_literal
from multilr._stacks import (
    NO_LAYERS,
    Owners,
    find_stacks,
    layer_elements,
    outermost,
    owners_of,
    paired_stacks,
    partners,
    path_shapes,
    with_owners,
)
from multilr.errors import PlanError

__all__ = ["depth_list", "depths_and_head", "infer_depths"]


def infer_depths(names: Sequence[str], mode: str | Mapping[str, int]) -> dict[str, int]:
    """Depth of each parameter name.

    Args:
        names: Every (deduplicated) parameter name of the model, in model order.
        mode: ``"blocks"``, ``"outer"``, ``"top"``, ``"tensor"`` or an explicit ``{glob: depth}``.

    Returns:
        Mapping name -> depth (0 = lowest).

    Raises:
        PlanError: An explicit map leaves a parameter without a depth.

    Example:
        >>> infer_depths(["emb.w", "blocks.0.fc.w", "blocks.1.fc.w", "head.w"], "blocks")
        {'emb.w': 0, 'blocks.0.fc.w': 1, 'blocks.1.fc.w': 2, 'head.w': 3}
    """
    return dict(zip(names, depth_list(names, mode), strict=True))


def depth_list(
    names: Sequence[str], mode: str | Mapping[str, int], stacks_among: Sequence[str] | None = None
) -> list[int]:
    """:func:`infer_depths` as a list aligned with ``names`` (what the planner uses).

    ``stacks_among``: for ``blocks`` and ``outer``, only stacks of these names count as
    blocks (``layer_decay.within``: a segmentation head's stacks do not shift the
    backbone's depths); the units are still cut over all ``names``.

    Example:
        >>> depth_list(["stem.w", "head.w"], "top")
        [0, 1]
        >>> names = ["body.0.f.w", "body.1.f.w", "neck.0.f.w", "neck.1.f.w"]
        >>> depth_list(names, "blocks"), depth_list(names, "blocks", stacks_among=names[:2])
        ([1, 2, 3, 4], [1, 2, 3, 3])
    """
    return depths_and_head(names, mode, stacks_among)[0]


def depths_and_head(
    names: Sequence[str], mode: str | Mapping[str, int], stacks_among: Sequence[str] | None = None
) -> tuple[list[int], int]:
    """:func:`depth_list` and the depth of the head.

    In ``blocks`` and ``outer`` mode the head is one above the last block, whether or
    not the model has anything after it (OPT's tied ``lm_head`` leaves nothing there):
    what ``layer_decay.place`` puts at ``"head"``. Otherwise it is the highest depth.

    Example:
        >>> depths_and_head(["emb.w", "layer.0.fc.w", "layer.1.fc.w"], "blocks")
        ([0, 1, 2], 3)
        >>> depths_and_head(["emb.w", "fc.w"], "top")
        ([0, 1], 1)
    """
    if isinstance(mode, Mapping):
        depths = _explicit(names, mode)
    elif mode == "tensor":
        depths = list(range(len(names)))
    elif mode == "top":
        depths = _top(names)
    else:
        return _blocks(names, outer=mode == "outer", stacks_among=stacks_among)
    return depths, max(depths, default=0)


def _top(names: Sequence[str]) -> list[int]:
    order: dict[str, int] = {}
    return [order.setdefault(n.partition(".")[0], len(order)) for n in names]


def _explicit(names: Sequence[str], depth_map: Mapping[str, int]) -> list[int]:
    """Each name's depth: its first pattern in map order (a glob, or a name as it is).

    A pattern without ``*``, ``?`` or ``[`` matches one name only and is looked up in a
    dict: a map of every name (``multilr_torch.forward_depths``) costs one lookup per
    name, not a scan of thousands of patterns. Globs before it in the map still win.

    Example:
        >>> _explicit(["a.w", "b.w", "c.w"], {"b.w": 5, "*.w": 1, "c.w": 9})
        [1, 5, 1]
    """
    literal: dict[str, tuple[int, int]] = {}  # name -> (position in the map, depth)
    globs: list[tuple[int, re.Pattern[str], int]] = []
    for i, (pattern, depth) in enumerate(depth_map.items()):
        if is_literal(pattern):
            literal.setdefault(pattern, (i, depth))
        else:
            globs.append((i, re.compile(fnmatch.translate(pattern)), depth))
    out: list[int] = []
    for name in names:
        hit = literal.get(name)
        limit = len(depth_map) if hit is None else hit[0]
        # the first glob before the name's own entry that matches it, else that entry
        found = next((depth for i, compiled, depth in globs if i < limit and compiled.match(name)), None)
        if found is None:
            if hit is None:
                shown = ", ".join(map(repr, list(depth_map)[:8]))
                more = f", ... ({len(depth_map)} patterns)" if len(depth_map) > 8 else ""
                raise PlanError(
                    f"layer_decay.depth: parameter {name!r} matches no pattern of the depth map "
                    f"({shown}{more}); add it, or a catch-all '*'"
                )
            found = hit[1]
        out.append(found)
    return out


def _blocks(
    names: Sequence[str], outer: bool = False, stacks_among: Sequence[str] | None = None
) -> tuple[list[int], int]:
    """``"blocks"`` depths and the head's: find the stacks, cut the tree into units, number them.

    ``outer``: only the outermost stacks count (``"outer"`` mode). ``stacks_among``: the
    stacks are looked for among these names only (see :func:`depth_list`).

    Example:
        >>> sub = [f"{m}.w" for m in ("q", "k", "v")]  # T5-like: blocks of sublayers of 3 layers
        >>> names = ["emb.w", *(f"block.{i}.layer.{j}.{w}" for i in (0, 1) for j in (0, 1) for w in sub)]
        >>> (depths, head), (outer, outer_head) = _blocks(names), _blocks(names, outer=True)
        >>> depths[::3], head, outer[::3], outer_head
        ([0, 1, 2, 3, 4], 5, [0, 1, 1, 2, 2], 3)
    """
    unique = names if len(set(names)) == len(names) else list(dict.fromkeys(names))
    owners = owners_of(unique)
    # the names the stacks are looked for among, and their owners
    among, among_owners = (unique, owners) if stacks_among is None else with_owners(stacks_among)
    stacks, runs = find_stacks(among, among_owners)
    paired = paired_stacks(stacks, among_owners.distinct, among) if len(stacks) > 2 else {}
    stacks -= paired.keys()
    if outer:
        stacks = outermost(stacks)
        paired = {path: stack for path, stack in paired.items() if stack in stacks}
    if not stacks:  # no stack: top-level order
        top = _top(names)
        return top, max(top, default=0)
    partner = partners(runs, stacks, owners.distinct, unique) if runs else {}
    partner.update(paired)
    opened = _around(stacks) | partner.keys()
    unit_of, kids, held, owner_unit = _units(unique, owners, opened)
    units: list[tuple[str, bool]] = []  # (unit path, is_block) in model order
    # each stack's partner runs, cut in with its elements: before them when registered before
    alongside: dict[str, list[tuple[str, bool]]] = {}
    for run, stack in partner.items():
        siblings = list(kids[stack.rpartition(".")[0]])
        alongside.setdefault(stack, []).append((run, siblings.index(run) < siblings.index(stack)))

    def cut(path: str) -> None:
        stack = path in stacks
        layers = layer_elements(kids[path], opened, held, partner, owner_unit) if stack else NO_LAYERS
        runs_here = alongside.get(path)
        for child in kids[path]:
            if child in partner:
                continue  # cut in with its stack's elements
            if runs_here:  # rare: only a stack with partner runs pays for the element names
                element = child.rpartition(".")[2]
                units.extend((f"{run}.{element}", False) for run, before in runs_here if before)
            if child in opened:
                cut(child)
            else:
                units.append((child, stack and child not in layers))
            if runs_here:
                units.extend((f"{run}.{element}", False) for run, before in runs_here if not before)

    cut("")
    n_blocks = sum(1 for _, is_block in units if is_block)
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
    depths = list(map(unit_depth.__getitem__, unit_of))
    if unique is not names:
        depths = list(map(dict(zip(unique, depths, strict=True)).__getitem__, names))
    return depths, n_blocks + 1


def _around(stacks: set[str]) -> set[str]:
    """The stacks and every module containing one: the modules opened up into units."""
    opened: set[str] = set()
    for path in stacks:
        while path not in opened:
            opened.add(path)
            if not path:
                break
            path = path.rpartition(".")[0]
    return opened


def _units(
    names: Sequence[str], owners: Owners, opened: set[str]
) -> tuple[list[str], dict[str, dict[str, None]], Counter[str], dict[str, str]]:
    """The unit of each name, the children of each opened module, the modules in each unit.

    A name's unit is its shortest prefix that is not opened up: its owner's unit, or
    the name itself when its owner is opened. The children lists come from the units
    in order of first appearance. Then how many modules with tensors each unit holds
    (what :func:`layer_elements` reads; a unit that is a tensor's name holds none),
    and the unit of each module with tensors that is not opened.
    """
    owner_unit = _owner_units(owners, opened)
    # a parameter directly on an opened module is a unit itself
    unit_of = list(map(owner_unit.get, owners.of, names))
    kids: dict[str, dict[str, None]] = {path: {} for path in opened}
    placed = {""}  # opened modules already among their parent's children
    for unit in dict.fromkeys(unit_of):
        parent = unit.rpartition(".")[0]
        kids[parent][unit] = None
        if parent not in placed:
            _place(parent, kids)
            placed.add(parent)
    return unit_of, kids, Counter(owner_unit.values()), owner_unit


def _owner_units(owners: Owners, opened: set[str]) -> dict[str, str]:
    """The unit of each owner that is not opened: its shortest prefix that is not.

    When no opened path has a digit (``blocks``, ``encoder.layer``: the usual case),
    whether a prefix is opened depends only on the owner's shape, so the length of the
    unit is found once per shape and the units are cut with ``map``, in C. Otherwise
    each owner is followed down from the root.
    """
    if not any("0" in shape for shape in path_shapes(list(opened))):  # no digit in any opened path
        length: dict[str, int | None] = {}
        for shape in dict.fromkeys(owners.shapes):
            length[shape] = None if shape in opened else len(_unit_in(shape, opened))
        cut = list(map(length.__getitem__, owners.shapes))
        kept = [n is not None for n in cut]
        cuts = zip(compress(owners.distinct, kept), map(slice, compress(cut, kept)), strict=True)
        return {owner: owner[where] for owner, where in cuts}
    return {owner: _unit_in(owner, opened) for owner in owners.distinct if owner not in opened}


def _unit_in(path: str, opened: set[str]) -> str:
    """The shortest prefix of ``path`` (itself not opened) that is not opened."""
    end = path.find(".")
    prefix = path if end < 0 else path[:end]
    while prefix in opened:
        end = path.find(".", end + 1)
        prefix = path if end < 0 else path[:end]
    return prefix


def _place(path: str, kids: dict[str, dict[str, None]]) -> None:
    """Add ``path`` and its ancestors to their parents' children, up to one already there."""
    while path:
        parent = path.rpartition(".")[0]
        if path in kids[parent]:
            return
        kids[parent][path] = None
        path = parent
