"""``"blocks"`` and ``"outer"`` depth against the definition, on many module trees.

``multilr._depth`` finds stacks through name *shapes* and cuts units with ``map`` over
``str`` methods; ``_by_definition`` below is the plain tree walk the module docstring
describes (the implementation before that speed-up). Both must agree on every tree:
nested stacks, numbered paths inside opened modules, digits other than ASCII, names in
any order, repeated names.
"""

import random
from functools import cache

import pytest

from multilr._depth import infer_depths


def _by_definition(names, outer=False):
    kids = {"": []}
    for name in names:
        parent = ""
        for part in name.split("."):
            path = f"{parent}.{part}" if parent else part
            if path not in kids:
                kids[path] = []
                kids[parent].append(path)
            parent = path

    def before_number(part):  # the part without its trailing number; None when it has none
        end = len(part)
        while end and part[end - 1].isdigit():
            end -= 1
        return part[:end] if end < len(part) else None

    def shape(text):  # digits made 0: names compared as shapes
        return "".join("0" if ch.isdigit() else ch for ch in text)

    def parallel(prefix):  # a branch's name (``branch1``): parallel paths, no stack
        return shape(prefix).rstrip("_-").lower() == "branch"

    @cache
    def in_branch(path):  # a branch, or inside one
        return any(before_number(p) is not None and parallel(before_number(p)) for p in path.split("."))

    def owns_module(child):
        return any(kids[g] for g in kids[child])

    @cache
    def children_prefix(path):  # the one name before the children's numbers, else None
        prefixes = {before_number(c.rpartition(".")[2]) for c in kids[path]}
        return prefixes.pop() if len(prefixes) == 1 else None

    @cache
    def numbered_alike(path):  # 2+ numbers, 3+ name + number, each owning a module
        children, prefix = kids[path], children_prefix(path)
        return (
            prefix is not None
            and len(children) >= (2 if prefix == "" else 3)
            and not parallel(prefix)
            and not in_branch(path)
            and all(owns_module(c) for c in children)
        )

    @cache
    def one_beside_many(path):  # a list of one, beside a sibling list like it (a one-block stage)
        children, prefix = kids[path], children_prefix(path)
        own = before_number(path.rpartition(".")[2])
        if not path or own is None or len(children) != 1 or prefix is None:
            return False
        if parallel(prefix) or in_branch(path) or not owns_module(children[0]):
            return False
        return any(
            s != path
            and numbered_alike(s)
            and before_number(s.rpartition(".")[2]) is not None
            and shape(before_number(s.rpartition(".")[2])) == shape(own)
            and shape(children_prefix(s)) == shape(prefix)
            for s in kids[path.rpartition(".")[0]]
        )

    @cache
    def numbered(path):
        return numbered_alike(path) or one_beside_many(path)

    owners = {name.rpartition(".")[0] for name in names}

    @cache
    def held(path):  # modules with tensors in path's subtree, itself included
        return sum(1 for o in owners if o == path or o.startswith(path + "."))

    @cache
    def is_run(path):  # a run of layers: each element at most two modules with tensors
        return all(held(c) <= 2 for c in kids[path])

    sized = [p for p in kids if numbered(p) and not is_run(p)]  # numbered, no run of layers

    def modules_in(path):  # the modules with tensors in path's subtree, named inside it, as shapes
        return {shape(o[len(path) + 1 :]) for o in owners if o == path or o.startswith(path + ".")}

    @cache
    def alike_blocks(path):  # a run shaped like a stack of blocks, its elements parts of their elements
        bigger = [modules_in(e) for s in sized if path and shape(s) == shape(path) for e in kids[s]]
        return bool(bigger) and all(any(modules_in(c) <= b for b in bigger) for c in kids[path])

    blocky = [p for p in kids if numbered(p) and (not is_run(p) or alike_blocks(p))]
    blocks_exist = bool(sized)

    @cache
    def nested(path):  # inside a numbered module's element
        ancestor, inside = path, False
        while ancestor:
            ancestor = ancestor.rpartition(".")[0]
            inside = inside or numbered(ancestor)
        return inside

    @cache
    def stack_before_pairing(path, outer):
        if not numbered(path):
            return False
        if nested(path) and outer:  # "outer": no stack above it
            return False
        # a run of layers is a stack only at the top of a model with no stack of blocks,
        # or shaped like a stack of blocks whose parts its elements hold
        return not is_run(path) or alike_blocks(path) or not (nested(path) or blocks_exist)

    def elements(path):
        return {c.rpartition(".")[2] for c in kids[path]}

    def adjacent(path, sibling):  # registered one right after the other
        siblings = kids[path.rpartition(".")[0]]
        return abs(siblings.index(path) - siblings.index(sibling)) == 1

    @cache
    def holds_blocks(element):  # such a path at or below it
        return any(p == element or p.startswith(element + ".") for p in blocky)

    # a stack of plain elements beside the one stack of stacks with the same elements
    # goes in with it (PVT's patch_embeddings.i beside block.i.j)
    partner = {}
    for path in kids:
        if path and stack_before_pairing(path, False) and not any(holds_blocks(c) for c in kids[path]):
            siblings = kids[path.rpartition(".")[0]]
            same = [
                c for c in siblings
                if c != path and stack_before_pairing(c, False) and elements(c) == elements(path)
                and all(holds_blocks(e) for e in kids[c])
            ]
            if len(same) == 1 and adjacent(path, same[0]) and stack_before_pairing(same[0], outer):
                partner[path] = same[0]

    def is_stack(path):
        return stack_before_pairing(path, outer) and path not in partner

    # a run of layers that is no stack, beside the one stack of the same elements: its
    # elements go in with that stack's, before them when the run was registered before
    for path in kids:
        run = numbered(path) and is_run(path) and not alike_blocks(path)
        if path and run and (nested(path) or blocks_exist):
            siblings = kids[path.rpartition(".")[0]]
            same = [c for c in siblings if c != path and is_stack(c) and elements(c) == elements(path)]
            if len(same) == 1 and adjacent(path, same[0]):
                partner[path] = same[0]

    def has_stack(path):
        return is_stack(path) or any(has_stack(c) for c in kids[path])

    def layer_beside_blocks(path, child):  # a stem or head conv among a stack's blocks
        elements = [c for c in kids[path] if c not in partner]
        bigger = [c for c in elements if not has_stack(c) and held(c) > 2]
        # unless it is a block with a part left out: its modules all among a bigger one's
        pruned = held(child) > 0 and any(modules_in(child) <= modules_in(c) for c in bigger)
        return held(child) <= 2 and any(has_stack(c) or held(c) > 2 for c in elements) and not pruned

    def units(path):
        out = []
        beside = [
            (run, kids[run.rpartition(".")[0]].index(run) < kids[run.rpartition(".")[0]].index(path))
            for run, stack in partner.items()
            if stack == path
        ]
        for child in kids[path]:
            if child in partner:
                continue
            element = child.rpartition(".")[2]
            out.extend((f"{run}.{element}", False) for run, before in beside if before)
            if is_stack(path) and not has_stack(child):
                out.append((child, not layer_beside_blocks(path, child)))
            elif has_stack(child):
                out.extend(units(child))
            else:
                out.append((child, False))
            out.extend((f"{run}.{element}", False) for run, before in beside if not before)
        return out

    cut = units("")
    n_blocks = sum(1 for _, is_block in cut if is_block)
    if n_blocks == 0:
        order = {}
        return {n: order.setdefault(n.partition(".")[0], len(order)) for n in names}
    unit_depth, depth = {}, 0
    for path, is_block in cut:
        if is_block:
            depth += 1
        elif depth == n_blocks:
            unit_depth[path] = n_blocks + 1
            continue
        unit_depth[path] = depth
    out = {}
    for name in names:
        path = name
        while path not in unit_depth:
            path = path.rpartition(".")[0]
        out[name] = unit_depth[path]
    return out


_PARTS = ["stem", "blocks", "layers", "layer1", "conv0", "norm", "head", "mlp", "attn", "down", "٣", "²", "a b"]


def _random_names(rng):
    names = []

    def module(prefix, depth):
        roll = rng.random() if depth < 5 else 1.0
        if roll < 0.4:
            # numbered children: plain numbers, one name and a number, a digit in the name
            before = rng.choice(["", "", "", "layer", "b1-", "٣x", "branch"])
            children = [f"{before}{i}" for i in rng.sample(range(12), rng.randint(1, 5))]
            if rng.random() < 0.1:
                children.append(rng.choice(["norm", "٣", "²", "layer2", "b2-0", "0x1"]))
        elif roll < 0.5:  # two lists of the same elements side by side (a downsample per stage)
            elements = [str(i) for i in rng.sample(range(12), rng.randint(2, 4))]
            for k, part in enumerate(rng.sample(["down", "stages", "norms"], 2)):
                if k and rng.random() < 0.3:  # something between them: no longer side by side
                    names.append(f"{prefix}{rng.choice(['mid.conv.weight', 'pos'])}")
                # elements: a conv, a plain unit of three modules, a list of those, or anything
                kind = rng.choice(["conv", "plain", "list", "any"])
                for element in elements:
                    if rng.random() < 0.2:
                        kind = rng.choice(["conv", "plain", "list", "any"])
                    at = f"{prefix}{part}.{element}."
                    if kind == "conv":
                        names.append(f"{at}conv.weight")
                    elif kind == "plain":
                        names.extend(f"{at}{m}.weight" for m in ("proj", "norm", "act")[: rng.randint(2, 3)])
                    elif kind == "list":
                        names.extend(f"{at}{j}.{m}.weight" for j in range(rng.randint(1, 3)) for m in "abc")
                    else:
                        module(at, depth + 2)
            children = []
        elif roll < 0.55:  # stages named alike with a number, some of one block
            for stage in sorted(rng.sample(range(1, 6), rng.randint(2, 4))):
                before = rng.choice(["", "", "block"])
                for j in range(rng.choice([1, 1, 2, 3])):
                    at = f"{prefix}stage{stage}.{before}{j}."
                    if rng.random() < 0.7:
                        # blocks, some with a part left out or as small as a run of layers
                        # (a ResNet-18 with frozen norms: conv1, conv2, and a downsample in some)
                        parts = rng.choice([("attn", "mlp", "norm"), ("conv1", "conv2", "down.0"),
                                            ("conv1", "conv2"), ("conv1", "proj")])
                        names.extend(f"{at}{m}.weight" for m in parts)
                    else:
                        module(at, depth + 2)
            children = []
        elif roll < 0.85:
            children = rng.sample(_PARTS, rng.randint(0, 3))
        else:
            children = []
        leaves = [leaf for leaf in rng.sample(["weight", "bias", "0", "1", "g"], rng.choice([0, 0, 1, 2]))
                  if leaf not in children]
        items = [(True, leaf) for leaf in leaves] + [(False, c) for c in children]
        if rng.random() < 0.3:
            rng.shuffle(items)
        for is_leaf, part in items:
            if is_leaf:
                names.append(prefix + part)
            else:
                module(f"{prefix}{part}.", depth + 1)

    module("", 0)
    if rng.random() < 0.15:
        rng.shuffle(names)
    if names and rng.random() < 0.05:
        names.append(rng.choice(names))
    return names


@pytest.mark.parametrize("mode", ["blocks", "outer"])
@pytest.mark.parametrize("seed", range(0, 3000, 1000))
def test_blocks_depth_matches_the_definition(seed, mode):
    for s in range(seed, seed + 1000):
        names = _random_names(random.Random(s))
        expected = _by_definition(names, outer=mode == "outer")
        assert list(infer_depths(names, mode).items()) == list(expected.items()), f"seed {s}: {names}"


@pytest.mark.parametrize(
    "names",
    [
        # stages of blocks whose stage elements are opened: numbered opened paths
        ["patch.w", "layers.0.blocks.0.mlp.w", "layers.0.blocks.1.mlp.w", "layers.0.down.w",
         "layers.1.blocks.0.mlp.w", "layers.1.blocks.1.mlp.w", "layers.1.cls", "norm.w"],
        # the model itself is a stack; a parameter at the root
        ["0.fc.w", "1.fc.w", "2.fc.w"],
        ["cls", "0.fc.w", "1.fc.w"],
        # a parameter directly on an opened module, before and after the blocks
        ["enc.pos", "enc.layer.0.fc.w", "enc.layer.1.fc.w", "enc.cls", "head.w"],
        # a name that is also a module path: one node, as in the tree walk
        ["a.0", "a.0.x.w", "a.1.x.w"],
        # digits other than ASCII, and numbered children that own only tensors
        ["b.٣.m.w", "b.٤.m.w", "p.0.w", "p.1.w"],
        # numbered elements out of order, interleaved with another module
        ["blocks.1.fc.w", "stem.w", "blocks.0.fc.w", "blocks.1.fc.b", "head.w"],
    ],
)
@pytest.mark.parametrize("mode", ["blocks", "outer"])
def test_blocks_depth_edge_cases_match_the_definition(names, mode):
    expected = _by_definition(names, outer=mode == "outer")
    assert list(infer_depths(names, mode).items()) == list(expected.items())
