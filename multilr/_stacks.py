"""Which modules of a model are stacks of blocks, read from its parameter names.

The first half of ``"blocks"`` depth inference (:mod:`multilr._depth` has the definition
and numbers the units): a *stack* is a module whose children are numbered alike and
are blocks (transformer layers, residual blocks); a numbered *run of layers* (a conv and
its norm per element) is none beside real blocks; a list running alongside a stack
(ConvNeXt's ``downsample_layers.i``, PVT's ``patch_embeddings.i``) is its *partner*;
an element of a stack holding a layer where the others hold blocks is a plain unit.

Everything here works on the owners' *shapes* (digits made ``0``: a thousand blocks
share one), so Python looks at a few distinct shapes and the per-owner steps are
``map`` over ``str`` methods, in C.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import compress, repeat
from operator import itemgetter
from typing import NamedTuple

__all__ = [
    "LAYER_MODULES",
    "NAMED_RUN",
    "NO_LAYERS",
    "PARALLEL",
    "Owners",
    "find_stacks",
    "layer_elements",
    "outermost",
    "owners_of",
    "paired_stacks",
    "partners",
    "path_shapes",
    "with_owners",
]


#: Every ASCII digit -> "0": a path's *shape*, the same length, its numbers kept as numbers.
_ZEROS = bytes.maketrans(b"123456789", b"000000000")


def path_shapes(paths: list[str]) -> list[str]:
    """Each path with every digit made ``0`` (``blocks.12.mlp`` -> ``blocks.00.mlp``).

    One ``bytes.translate`` over all paths at once for ASCII; ``str.translate`` with every
    character ``str.isdigit`` accepts otherwise.
    """
    text = "\n".join(paths)
    if text.isascii():
        shapes = text.encode().translate(_ZEROS).decode().split("\n")
        if len(shapes) == len(paths):  # no newline inside a path
            return shapes
    digits = {ord(c): "0" for c in set(text) if c.isdigit()}
    return [path.translate(digits) for path in paths]


class Owners(NamedTuple):
    """The module owning each name ("" for the root), and the distinct owners' shapes."""

    of: list[str]
    distinct: list[str]
    shapes: list[str]


def owners_of(names: Sequence[str]) -> Owners:
    owners = list(map(itemgetter(0), map(str.rpartition, names, repeat("."))))
    distinct = list(dict.fromkeys(owners))
    return Owners(owners, distinct, path_shapes(distinct))


def with_owners(names: Sequence[str]) -> tuple[list[str], Owners]:
    """``names`` without repeats, and their owners."""
    unique = list(dict.fromkeys(names))
    return unique, owners_of(unique)


def find_stacks(names: Sequence[str], owners: Owners) -> tuple[set[str], set[str]]:
    """The stacks among the modules of ``names`` (each name once).

    A module is a stack when its children are numbered alike and each owns a module
    (:func:`_is_stack`), unless it is a run of layers (:func:`_layer_runs`). Searched
    through the *shapes* of the owners (:func:`path_shapes`: one shape for all of
    ``blocks.0.mlp`` ... ``blocks.9.mlp``), so Python looks at a few distinct shapes, and
    the per-owner work is ``map`` over ``str`` methods, in C.

    Returns:
        The stacks, and the numbered runs of layers that are none (:func:`_layer_runs`).

    Example:
        >>> names = ["stem.0.w", "stem.1.w", "blocks.0.fc.w", "blocks.1.fc.w"]
        >>> find_stacks(names, owners_of(names))
        ({'blocks'}, set())
    """
    distinct, shapes = owners.distinct, owners.shapes
    # candidates, as shapes: paths that some owner continues with a number and at least
    # one more part (an element that owns a module)
    candidates: set[str] = set()
    for shape in dict.fromkeys(shapes):
        parts = shape.split(".")
        for i in range(len(parts) - 1):
            if parts[i].endswith("0"):  # ends in a number: ``3``, ``denselayer3``, ``block1-3``
                candidates.add(".".join(parts[:i]))
    # path -> its children's name before their number, as a shape (see _is_stack)
    stacks: dict[str, str] = {}
    single: dict[str, str] = {}  # the same, of the paths with one such child
    for shape in candidates:
        # the owners strictly below paths of this shape (the root's: all but itself)
        below = list(map(str.startswith, shapes, repeat(shape + "."))) if shape else list(map(bool, shapes))
        if "0" not in shape:  # one path has this shape: the shape itself
            groups = {shape: (list(compress(distinct, below)), list(compress(shapes, below)))}
        else:  # several may: group the owners by their path of this shape
            groups = {}
            for owner, owner_shape in compress(zip(distinct, shapes, strict=True), below):
                group = groups.setdefault(owner[: len(shape)], ([], []))
                group[0].append(owner)
                group[1].append(owner_shape)
        for path, (inside, shaped) in groups.items():
            verdict = _is_stack(path, inside, shaped)
            if verdict is not None:
                (single if verdict[0] else stacks)[path] = verdict[1]
    # rare: most models skip the parsing
    if any(word in path.lower() for path in (*stacks, *single) for word in PARALLEL):
        for path in [path for path in (*stacks, *single) if _in_branch(path)]:
            stacks.pop(path, None)
            single.pop(path, None)
    owned = set(distinct)  # modules with parameters of their own: leaf children
    for path in (stacks.keys() | single.keys()) & owned:
        if not _leaves_are_modules(path, names, owners):
            stacks.pop(path, None)
            single.pop(path, None)
    if single:
        stacks.update(_singles(single, stacks))
    runs = _layer_runs(stacks.keys(), distinct)
    return stacks.keys() - runs, runs


#: An element of a stack inside a block holding at most this many modules with tensors
#: is one layer of that block (a conv and its norm, a squeeze-excitation's two convs).
LAYER_MODULES = 2


def _layer_runs(stacks: AbstractSet[str], owners: list[str]) -> set[str]:
    """The stacks whose elements are layers, not blocks: those that are no stack.

    A *run of layers* is a stack whose every element holds at most
    :data:`LAYER_MODULES` modules with tensors: a conv with its norm, a
    squeeze-excitation's two convs. A transformer block's sublayers (T5's attention,
    its feed-forward) hold more. A run is no stack

    * inside another stack's element: HF's ResNet keeps the convolutions of a residual
      block in ``layers.j.layer.0`` .. ``.2``, torchvision's EfficientNet those of an
      MBConv in ``block.0`` .. ``.3``; counted as a stack, ResNet-50 would have 48
      depths where it has 16 blocks;
    * anywhere, when the model has a stack of blocks: a stem of conv units
      (``stem.conv1`` .. ``conv3``), wav2vec2's conv feature encoder, an FPN's lateral
      convs are not blocks beside the model's real ones.

    A network of conv units alone keeps its top-level runs: it has no other blocks.

    A run shaped like a stack of blocks, whose elements are parts of that stack's, is a
    stack of blocks with parts left out and stays a stack (:func:`_blocks_alike`).

    Example:
        >>> owners = [f"stages.{i}.layers.{j}.{c}" for i in (0, 1) for j in (0, 1) for c in ("conv", "norm")]
        >>> sorted(_layer_runs({"stages", "stages.0.layers", "stages.1.layers"}, owners))
        ['stages.0.layers', 'stages.1.layers']
        >>> stem = ["stem.conv1.conv", "stem.conv2.conv"]  # with blocks: the stem is no stack
        >>> sorted(_layer_runs({"stem", "stages", "stages.0.layers", "stages.1.layers"}, stem + owners))
        ['stages.0.layers', 'stages.1.layers', 'stem']
        >>> sorted(_layer_runs({"stem"}, stem))  # alone: it is
        []
    """
    if len(stacks) < 2:  # one stack is outermost, and the model's only one: it stays
        return set()
    held: dict[tuple[str, str], int] = {}  # (stack, element) -> modules with tensors in it
    for owner in owners:
        parts = owner.split(".")
        for i in range(len(parts)):  # i = 0: the root, "", when the model itself is a stack
            path = ".".join(parts[:i])
            if path in stacks:
                key = (path, parts[i])
                held[key] = held.get(key, 0) + 1
    blocks = {path for (path, _), count in held.items() if count > LAYER_MODULES}
    runs = set(stacks) - blocks
    if not blocks:
        return runs - outermost(stacks)
    return runs - _blocks_alike(runs, blocks, owners)


def _blocks_alike(runs: AbstractSet[str], blocks: AbstractSet[str], owners: list[str]) -> set[str]:
    """The runs of layers that are stacks of blocks with parts left out.

    A run with the *shape* of a stack of blocks (``layer1`` beside ``layer2``,
    ``stages.0.blocks`` beside ``stages.1.blocks``) whose every element holds only
    modules some element of such a stack holds, by the shapes of their names inside the
    element (as :func:`layer_elements` compares them):
    torchvision's ResNet-18 with frozen norms (``FrozenBatchNorm2d`` keeps buffers, no
    tensors, as in its detection models) has ``conv1`` and ``conv2`` in each of
    ``layer1``'s blocks, where ``layer2.0`` adds ``downsample.0``; read as a run of
    layers, ``layer1`` was the stem. A conv stem's units (``0``, ``1``) share no names
    with a block's.

    Example:
        >>> blocks = [f"layer{i}.{j}.conv{c}" for i in (1, 2) for j in (0, 1) for c in (1, 2)]
        >>> owners = [*blocks, "layer2.0.downsample.0"]
        >>> _blocks_alike({"layer1"}, {"layer2"}, owners)
        {'layer1'}
        >>> _blocks_alike({"stem"}, {"layer2"}, ["stem.0.conv", "stem.1.conv", *owners])
        set()
    """
    alike = [run for run in runs if run]  # the root is no run's sibling of a shape
    if not alike:
        return set()
    paths = [*alike, *blocks]
    shape_of = dict(zip(paths, path_shapes(paths), strict=True))
    by_shape: dict[str, list[str]] = {}
    for path in blocks:
        by_shape.setdefault(shape_of[path], []).append(path)
    alike = [run for run in alike if shape_of[run] in by_shape]
    if not alike:  # the usual case: no run shaped like a stack of blocks
        return set()

    def parts(stack: str) -> list[set[str]]:
        start = len(stack) + 1
        split = [owner[start:].partition(".") for owner in owners if owner.startswith(stack + ".")]
        return list(_parts([(element, rest) for element, _, rest in split]).values())

    # the elements of every stack of blocks of each shape a run has, each found once
    shapes = {shape_of[run] for run in alike}
    bigger = {shape: [p for stack in by_shape[shape] for p in parts(stack)] for shape in shapes}
    return {run for run in alike if all(any(p <= big for big in bigger[shape_of[run]]) for p in parts(run))}


def _parts(inside: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Each element's modules with tensors, as the shapes of their names inside it.

    ``inside``: (element, a module's name inside it, ``""`` for the element itself) pairs.
    Shapes (digits made ``0``): ``conv.1`` and ``conv.2`` are one layer numbered otherwise.

    Example:
        >>> parts = _parts([("f.1", "conv.0.0"), ("f.1", "conv.1"), ("f.2", "conv.2"), ("f.2", "")])
        >>> {element: sorted(shapes) for element, shapes in parts.items()}
        {'f.1': ['conv.0', 'conv.0.0'], 'f.2': ['', 'conv.0']}
    """
    out: dict[str, set[str]] = {}
    for shape, (element, _) in zip(path_shapes([name for _, name in inside]), inside, strict=True):
        out.setdefault(element, set()).add(shape)
    return out


def partners(
    lists: AbstractSet[str], stacks: AbstractSet[str], owners: list[str], names: Sequence[str]
) -> dict[str, str]:
    """Each of ``lists`` that runs alongside a stack: its sibling among ``stacks`` with the same elements.

    ConvNeXt's reference layout keeps a stage's downsample (a run of layers) in
    ``downsample_layers.i`` beside ``stages.i``; HF's PoolFormer keeps
    ``patch_embeddings.i`` beside ``block.i``. Registered as one list before the other,
    the downsamples all landed in the stem; paired, ``downsample_layers.i`` is cut in
    just before ``stages.i`` (after it, when registered after), where torchvision's
    ConvNeXt, with one list, has it. A list with no sibling stack of the same element
    names, or with two, or with one registered apart from it (:func:`_adjacent`), stays
    whole. :func:`paired_stacks` pairs stacks the same way.

    Example:
        >>> owners = [f"{m}.{i}.{c}" for m in ("down", "stages") for i in (0, 1) for c in ("a.0", "b.0", "c")]
        >>> partners({"down"}, {"stages", "stages.0", "stages.1"}, owners, [f"{o}.w" for o in owners])
        {'down': 'stages'}
    """
    known: dict[str, set[str]] = {}

    def elements(path: str) -> set[str]:
        if path not in known:
            known[path] = _elements(path, owners)
        return known[path]

    partner: dict[str, str] = {}
    for path in lists:
        if not path:
            continue  # the root has no sibling
        parent, have = path.rpartition(".")[0], elements(path)
        # (the root, a stack holding every other, is nobody's sibling)
        same = [s for s in stacks if s and s.rpartition(".")[0] == parent and elements(s) == have]
        if len(same) == 1 and _adjacent(path, same[0], names):
            partner[path] = same[0]
    return partner


def paired_stacks(stacks: AbstractSet[str], owners: list[str], names: Sequence[str]) -> dict[str, str]:
    """Each stack of plain elements beside the one sibling stack of stacks with the same elements.

    HF's PVT keeps a stage's patch embedding in ``patch_embeddings.i`` beside its
    blocks in ``block.i.j``. A patch embedding holds three modules with tensors (a
    conv, a norm, its position embedding), so the list is a stack of its own, and its
    elements were the first four blocks. Paired (:func:`partners`, so only when the
    two are registered one right after the other), each goes in just before (or after,
    as registered) the matching element of the other. Decided on the stacks of
    ``blocks`` mode, before ``outer`` drops the inner ones.

    Example:
        >>> owners = [f"{m}.{i}.{c}" for m in ("embed", "block") for i in (0, 1) for c in ("0.a", "1.a")]
        >>> paired_stacks({"embed", "block", "block.0", "block.1"}, owners, [f"{o}.w" for o in owners])
        {'embed': 'block'}
    """
    parents: dict[str, int] = {}
    for path in stacks:
        if path:  # the root has no sibling
            parent = path.rpartition(".")[0]
            parents[parent] = parents.get(parent, 0) + 1
    candidates = [path for path in stacks if path and parents[path.rpartition(".")[0]] > 1]
    if not candidates:
        return {}

    def holds_stack(element: str) -> bool:
        return element in stacks or any(s.startswith(element + ".") for s in stacks)

    elements = {path: _elements(path, owners) for path in candidates}
    plain = {p for p in candidates if not any(holds_stack(f"{p}.{e}") for e in elements[p])}
    nested = {p for p in candidates if all(holds_stack(f"{p}.{e}") for e in elements[p])}
    return partners(plain, nested, owners, names)


def _adjacent(path: str, sibling: str, names: Sequence[str]) -> bool:
    """Whether two siblings come one right after the other among their parent's children.

    The children are the modules and tensors right under the parent, in the order the
    names first reach them. Lists that run side by side are made side by side (one
    loop, or one after the other); HRNet's ``layer1`` (two residual blocks) and its
    ``stage4`` (two modules of branches) merely have the same element names.

    Example:
        >>> names = ["down.0.w", "stages.0.a.w", "head.w", "norms.0.w"]
        >>> _adjacent("down", "stages", names), _adjacent("norms", "stages", names)
        (True, False)
    """
    parent = path.rpartition(".")[0]
    start, under = (len(parent) + 1, parent + ".") if parent else (0, "")
    children = list(dict.fromkeys(name[start:].partition(".")[0] for name in names if name.startswith(under)))
    return abs(children.index(path[start:]) - children.index(sibling[start:])) == 1


def _elements(path: str, owners: list[str]) -> set[str]:
    """The children of ``path`` that own a module or a tensor (the root: ``""``)."""
    start = len(path) + 1 if path else 0
    below = [owner for owner in owners if owner.startswith(path + ".")] if path else owners
    return {owner[start:].partition(".")[0] for owner in below}


def _inside(path: str, stacks: AbstractSet[str]) -> bool:
    """Whether ``path`` lies inside another of ``stacks`` (the root contains every path)."""
    if not path:
        return False
    if "" in stacks:
        return True
    parent = path.rpartition(".")[0]
    while parent:
        if parent in stacks:
            return True
        parent = parent.rpartition(".")[0]
    return False


#: The fewest children named alike with a number (``stage1`` .. ``stage3``) that make a
#: stack. Two are usually a block's halves or parallel branches: GhostNet's ``ghost1`` /
#: ``ghost2``, ShuffleNet's ``branch1`` / ``branch2``, a block's ``conv1`` / ``conv2``.
NAMED_RUN = 3

#: Modules with these names and a number are parallel paths of one block: an Inception
#: module's ``branch1`` .. ``branch4`` (torchvision's GoogLeNet, timm's Inception-v4 and
#: Inception-ResNet ``branch0`` .. ``branch3``) all see the same input. They make no
#: stack, and no list inside one is a stack (a branch's convs are its layers).
PARALLEL = frozenset({"branch"})


def _is_stack(path: str, inside: list[str], shapes: list[str]) -> tuple[bool, str] | None:
    """Whether ``path``'s module children (``inside``: the owners below it) make it a stack.

    Its children must be numbered alike, each owning a module: two or more numbers
    (``3``), or :data:`NAMED_RUN` or more of one name and a number (``denselayer3``,
    ``block1-3``), not named as parallel branches (:data:`PARALLEL`). Parameters
    directly on ``path`` are checked by the caller. Judged on the distinct shapes below
    ``path`` where they suffice, on the owners themselves where not.

    Returns:
        ``None`` when it is no stack; else whether it has a single child (a stack only
        beside a sibling stack, :func:`_singles`) and its children's name before their
        number, as a shape (``""`` for plain numbers).
    """
    start = len(path) + 1 if path else 0
    lone = False  # some owner is a child itself, with nothing below it
    prefix = None
    for shape in dict.fromkeys(shapes):
        child, dot, _ = shape[start:].partition(".")
        stem = child.rstrip("0")  # the shape's digits are all 0: this is the part before the number
        if stem == child or (prefix is not None and stem != prefix):
            return None
        prefix = stem
        lone = lone or not dot
    assert prefix is not None  # ``inside`` is never empty
    if _parallel(prefix):
        return None
    if lone:  # each child needs some owner below it
        rests = [owner[start:].partition(".") for owner in inside]
        owning = {child for child, dot, _ in rests if dot}
        if not all(child in owning for child, _, _ in rests):
            return None
    first = inside[0][start:].partition(".")[0]
    head = inside[0][:start] + first
    if sum(map(str.startswith, inside, repeat(head + "."))) + inside.count(head) == len(inside):
        return True, prefix  # one child only
    if prefix:
        children = {owner[start:].partition(".")[0] for owner in inside}
        if len(children) < NAMED_RUN:
            return None
        if "0" in prefix and len({child[: len(prefix)] for child in children}) > 1:
            return None  # a digit in the prefix (``block1-0``): one shape, not always one prefix
    return False, prefix


def _in_branch(path: str) -> bool:
    """Whether ``path`` is, or lies inside, a parallel branch (:data:`PARALLEL`).

    Example:
        >>> _in_branch("inception3a.branch2"), _in_branch("inception3a.branch2.0"), _in_branch("branches")
        (True, True, False)
    """
    for part in path_shapes(path.split(".")):
        stem = part.rstrip("0")
        if stem != part and _parallel(stem):
            return True
    return False


def _parallel(stem: str) -> bool:
    """Whether a name before its number (as a shape) names a parallel branch: ``branch``, ``branch_``."""
    return stem.rstrip("_-").lower() in PARALLEL


def _singles(single: dict[str, str], stacks: dict[str, str]) -> dict[str, str]:
    """The lists of one numbered child that are stacks: those beside a sibling stack like them.

    A stage of one block is a list of one: CSWin's ``stage1.0`` beside ``stage2.0`` ..
    ``.1``, MNASNet's last ``layers.13.0`` beside ``layers.12.0`` .. ``.3``, RegNet's
    ``block1.block1-0``. Alone it is no stack (a wrapper holding one module), and its
    block would land in the stem or the head. It is one when a sibling stack has the same
    name before its number and children named alike (both as shapes).

    Example:
        >>> _singles({"stage1": "", "wrap": ""}, {"stage2": "", "stage3": ""})
        {'stage1': ''}
    """

    def key(path: str, prefix: str) -> tuple[str, str, str] | None:
        parent, _, last = path.rpartition(".")
        shape = path_shapes([last])[0]
        stem = shape.rstrip("0")
        return None if stem == shape else (parent, stem, prefix)  # None: not numbered

    beside = {key(path, prefix) for path, prefix in stacks.items()}
    return {path: prefix for path, prefix in single.items() if key(path, prefix) in beside - {None}}


def _leaves_are_modules(path: str, names: Sequence[str], owners: Owners) -> bool:
    """Whether every parameter directly on ``path`` is also a module path (then not a leaf).

    Only for odd name lists (``a.0`` and ``a.0.x.w`` both names); torch and OneFlow
    cannot produce one.
    """
    for name, owner in zip(names, owners.of, strict=True):
        if owner == path and not any(o == name or o.startswith(name + ".") for o in owners.distinct):
            return False
    return True


def outermost(stacks: AbstractSet[str]) -> set[str]:
    """The stacks inside no other stack (the root, when it is one, holds every other)."""
    return {path for path in stacks if not _inside(path, stacks)}


NO_LAYERS: frozenset[str] = frozenset()


def layer_elements(
    children: Mapping[str, None],
    opened: set[str],
    held: Mapping[str, int],
    partner: Mapping[str, str],
    owner_unit: Mapping[str, str],
) -> AbstractSet[str]:
    """The elements of a stack that are layers beside its blocks: the stem's and head's convs.

    torchvision's MobileNet and EfficientNet (and flowvision's copies) keep their stem
    conv in ``features.0`` and their last conv in ``features.N``, one list with the
    inverted residuals between: a conv and its norm, two modules with tensors, where
    each block holds four or more. timm groups them as its stem and head; as blocks,
    the stem conv took depth 1 and left the stem empty. An element holding at most
    :data:`LAYER_MODULES` modules with tensors, in a stack where some other element
    holds more (or is opened: it holds stacks), is a plain unit: the stem before the
    first block, the head after the last, and between blocks (torchvision ConvNeXt's
    downsamples in ``features.2``) the depth of the block before it. A stack of such
    elements alone is a run of layers (:func:`_layer_runs`): its elements stay blocks.

    Size alone misreads a stack of small blocks where one block has a part more: with a
    layer scale only in ``blocks.0`` (``fc``, ``norm``, ``scale``), ``blocks.1`` and
    ``blocks.2`` (``fc``, ``norm``) were the head. So an element whose modules, named
    inside it, are all among a bigger element's is a block missing a part, and stays a
    block; a stem conv (``0``, ``1``) shares no names with an inverted residual
    (``conv.0.0`` ..). Names are compared as shapes (digits made ``0``): MobileNetV2's
    first block with frozen norms holds ``conv.0.0`` and ``conv.1``, the next
    ``conv.0.0``, ``conv.1.0`` and ``conv.2``, the same layers numbered otherwise.

    Example:
        >>> kids = dict.fromkeys(["f.0", "f.1", "f.2", "f.3"])
        >>> held = {"f.0": 2, "f.1": 4, "f.2": 4, "f.3": 2}
        >>> inner = {"f.0": ["0", "1"], "f.3": ["0", "1"], "f.1": ["c.0", "c.1", "c.2", "c.3"]}
        >>> inner["f.2"] = inner["f.1"]
        >>> owner_unit = {f"{unit}.{m}": unit for unit, ms in inner.items() for m in ms}
        >>> sorted(layer_elements(kids, set(), held, {}, owner_unit))
        ['f.0', 'f.3']
        >>> layer_elements(kids, set(), dict.fromkeys(kids, 2), {}, owner_unit)  # a run of layers: none
        frozenset()
        >>> scaled = {f"f.{i}.{m}": f"f.{i}" for i in range(3) for m in ("fc", "norm")} | {"f.0.scale": "f.0"}
        >>> sizes = {"f.0": 3, "f.1": 2, "f.2": 2}  # a layer scale only in f.0: three blocks
        >>> layer_elements(dict.fromkeys(sizes), set(), sizes, {}, scaled)
        set()
    """
    sizes = list(map(held.get, children, repeat(0)))
    if min(sizes, default=0) > LAYER_MODULES:  # blocks only: the usual case
        return NO_LAYERS
    # an opened element holds stacks: bigger than any layer (a partner run is cut in
    # beside the elements, no element itself); few modules are opened, a stack may
    # have a thousand elements: look the opened up among the children
    if max(sizes) <= LAYER_MODULES and not any(p in children and p not in partner for p in opened):
        return NO_LAYERS  # a run of layers (a network of conv units): its elements are its blocks
    small = [c for c, n in zip(children, sizes, strict=True) if n <= LAYER_MODULES and c not in opened]
    bigger = [c for c, n in zip(children, sizes, strict=True) if n > LAYER_MODULES and c not in opened]
    if not bigger or not any(map(held.get, small)):
        return set(small)
    # rare (a stack with elements of both sizes): the modules of its elements, by the
    # shapes of their names inside them
    wanted = {*small, *bigger}
    parts = _parts([(unit, owner[len(unit) + 1 :]) for owner, unit in owner_unit.items() if unit in wanted])
    big = [parts[b] for b in bigger if b in parts]
    return {c for c in small if not (c in parts and any(parts[c] <= b for b in big))}
