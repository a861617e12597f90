"""The plan for flowvision 0.2.1's resnet18 and mobilenet_v2 equals a plan written down here.

``RESNET18_PLAN`` and ``MOBILENET_V2_PLAN`` are backend-neutral: the parameter names and
module types (``Conv2d``, ``BatchNorm2d``, ``Linear``) are the same in torchvision, so the
same literals must describe the torch models too.

How the literals follow from ``SPEC`` (rules in ``multilr/_depth.py``'s docstring):

resnet18, 62 tensors. ``layer1``..``layer4`` each hold two numbered residual blocks with
submodules, so they are stacks and their 8 elements are blocks, depths 1..8
(``layer{i}.{j}`` -> ``2 * (i - 1) + j + 1``); ``conv1`` and ``bn1`` come before the first
block: the stem, depth 0; ``fc`` comes after the last: the head, depth 9 = max depth. Rate
``1e-3 * 0.75 ** (9 - depth)``, and ``fc`` x10 at depth 9: ``1e-2``. Convolution weights
decay (0.05); BatchNorm weights and biases and ``fc.bias`` do not. The stem rule freezes
``conv1.weight`` (decay) and ``bn1.*`` (no decay). Each block has 2 convolutions and 2
BatchNorms (2 + 4 tensors); the first block of layer2..4 also has a downsample
convolution + BatchNorm (3 + 6).

mobilenet_v2, 158 tensors. ``features`` has 19 numbered children that all own submodules
(``features.0`` is Conv/BN/ReLU6, 1..17 are inverted residuals, 18 is Conv/BN/ReLU6), so it
is a stack. Its elements 1..17 hold four or six modules with tensors: blocks 1..17
(``features.{i}`` -> ``i``). ``features.0`` and ``features.18`` hold two (a conv and its
BatchNorm): layers beside the blocks, not blocks, so the first is the stem (depth 0) and the
last goes with ``classifier`` to the head, depth 18, as timm groups its MobileNetV2's
``conv_stem`` and ``conv_head``. Inside the blocks nothing is a stack: ``features.{i}.conv``
has numbered children, but some of those are plain layers (a bare Conv2d or BatchNorm2d owns
only tensors). ``features.1`` (expansion 1) has a depthwise Conv/BN/ReLU6, a Conv2d and a
BatchNorm (2 + 4 tensors); ``features.2``..``17`` add the expansion Conv/BN/ReLU6 (3 + 6). The
stem rule matches nothing here (optional), so nothing is frozen; ``classifier.1`` is x10.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

import multilr
from multilr import LayerDecay, Prefix, Regex, Rule, Spec

LR, WD, DECAY = 1e-3, 0.05, 0.75

SPEC = Spec(
    lr=LR,
    weight_decay=WD,
    no_decay=("bias", "norm"),
    rules=[
        Rule(Prefix("fc"), lr_mult=10, name="head", optional=True),
        Rule(Prefix("classifier"), lr_mult=10, name="head2", optional=True),
        Rule(Regex(r"^(conv1|bn1)\."), frozen=True, name="stem", optional=True),
    ],
    layer_decay=LayerDecay(DECAY),
)

# Per group, in plan order: (name, number of tensors, lr once trainable, weight decay, frozen).
# A frozen group keeps its would-be rate in Group.lr and trains at 0 (Plan.lr_of).
RESNET18_PLAN: dict[str, Any] = {
    "tensors": 62,
    "max_depth": 9,
    "groups": [
        ("stem/depth0/frozen", 1, LR * DECAY**9, WD, True),
        ("stem/depth0/no_decay/frozen", 2, LR * DECAY**9, 0.0, True),
        ("depth1", 2, LR * DECAY**8, WD, False),
        ("depth1/no_decay", 4, LR * DECAY**8, 0.0, False),
        ("depth2", 2, LR * DECAY**7, WD, False),
        ("depth2/no_decay", 4, LR * DECAY**7, 0.0, False),
        ("depth3", 3, LR * DECAY**6, WD, False),  # layer2.0: + downsample
        ("depth3/no_decay", 6, LR * DECAY**6, 0.0, False),
        ("depth4", 2, LR * DECAY**5, WD, False),
        ("depth4/no_decay", 4, LR * DECAY**5, 0.0, False),
        ("depth5", 3, LR * DECAY**4, WD, False),  # layer3.0
        ("depth5/no_decay", 6, LR * DECAY**4, 0.0, False),
        ("depth6", 2, LR * DECAY**3, WD, False),
        ("depth6/no_decay", 4, LR * DECAY**3, 0.0, False),
        ("depth7", 3, LR * DECAY**2, WD, False),  # layer4.0
        ("depth7/no_decay", 6, LR * DECAY**2, 0.0, False),
        ("depth8", 2, LR * DECAY**1, WD, False),
        ("depth8/no_decay", 4, LR * DECAY**1, 0.0, False),
        ("head/depth9", 1, LR * 10, WD, False),
        ("head/depth9/no_decay", 1, LR * 10, 0.0, False),
    ],
    "depths": {
        "conv1.weight": 0,
        "bn1.bias": 0,
        "layer1.0.conv1.weight": 1,
        "layer1.1.bn2.weight": 2,
        "layer2.0.downsample.0.weight": 3,
        "layer3.1.conv2.weight": 6,
        "layer4.0.downsample.1.bias": 7,
        "layer4.1.bn2.bias": 8,
        "fc.weight": 9,
        "fc.bias": 9,
    },
    "frozen": ["conv1.weight", "bn1.weight", "bn1.bias"],
}

MOBILENET_V2_PLAN: dict[str, Any] = {
    "tensors": 158,
    "max_depth": 18,
    "groups": [
        ("depth0", 1, LR * DECAY**18, WD, False),  # features.0: Conv/BN/ReLU6, the stem
        ("depth0/no_decay", 2, LR * DECAY**18, 0.0, False),
        ("depth1", 2, LR * DECAY**17, WD, False),  # features.1: expansion 1
        ("depth1/no_decay", 4, LR * DECAY**17, 0.0, False),
        *[  # features.2 .. features.17: expansion, depthwise, projection
            (name, n, LR * DECAY ** (18 - d), wd, False)
            for d in range(2, 18)
            for name, n, wd in ((f"depth{d}", 3, WD), (f"depth{d}/no_decay", 6, 0.0))
        ],
        ("depth18", 1, LR, WD, False),  # features.18: Conv/BN/ReLU6, the head
        ("depth18/no_decay", 2, LR, 0.0, False),
        ("head2/depth18", 1, LR * 10, WD, False),
        ("head2/depth18/no_decay", 1, LR * 10, 0.0, False),
    ],
    "depths": {
        "features.0.0.weight": 0,
        "features.0.1.bias": 0,
        "features.1.conv.0.0.weight": 1,
        "features.1.conv.2.weight": 1,
        "features.2.conv.3.bias": 2,
        "features.9.conv.1.1.weight": 9,
        "features.17.conv.2.weight": 17,
        "features.18.0.weight": 18,
        "features.18.1.bias": 18,
        "classifier.1.weight": 18,
        "classifier.1.bias": 18,
    },
    "frozen": [],
}


def resnet18_depth(name: str) -> int:
    """Depth of every resnet18 tensor by the rules in the module docstring."""
    if name.startswith(("conv1.", "bn1.")):
        return 0
    if name.startswith("fc."):
        return 9
    m = re.match(r"layer(\d)\.(\d)\.", name)
    assert m, name
    return 2 * (int(m[1]) - 1) + int(m[2]) + 1


def mobilenet_v2_depth(name: str) -> int:
    if name.startswith(("classifier.", "features.18.")):
        return 18
    m = re.match(r"features\.(\d+)\.", name)
    assert m, name
    return int(m[1])


MODELS = [
    pytest.param("resnet18", RESNET18_PLAN, resnet18_depth, id="resnet18"),
    pytest.param("mobilenet_v2", MOBILENET_V2_PLAN, mobilenet_v2_depth, id="mobilenet_v2"),
]

_built: dict[str, Any] = {}


def model(name: str) -> Any:
    """Each flowvision model once per session (building resnet18 costs ~1 s of init)."""
    if name not in _built:
        import flowvision.models
        from multilr_oneflow import import_oneflow

        import_oneflow().manual_seed(0)
        _built[name] = getattr(flowvision.models, name)()
    return _built[name]


def planned_units(name: str, unit: str) -> tuple[Any, list[set[int]]]:
    """flowvision's ``name`` planned under layer decay, and the depths of each unit, in order.

    A unit is what the regex ``unit`` matches at the start of a parameter name; names it
    does not match are left out.
    """
    plan = multilr.plan(model(name), Spec(lr=1.0, layer_decay=LayerDecay(0.5)), backend="oneflow")
    depths: dict[str, set[int]] = {}
    for p in plan.params:
        found = re.match(unit, p.name)
        if found:
            depths.setdefault(found.group(0), set()).add(p.depth)
    return plan, list(depths.values())


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


@pytest.mark.parametrize(("name", "want", "depth_of"), MODELS)
def test_plan_equals_written_plan(name: str, want: dict[str, Any], depth_of: Any) -> None:
    plan = multilr.plan(model(name), SPEC, backend="oneflow")
    assert len(plan.params) == want["tensors"], (
        f"got {len(plan.params)} tensors, should be {want['tensors']} [{name}]"
    )
    assert plan.max_depth == want["max_depth"], (
        f"got max depth {plan.max_depth}, should be {want['max_depth']} [{name}]"
    )
    got = [(g.name, len(g.params), g.lr, g.weight_decay, g.frozen) for g in plan.groups]
    assert [g[0] for g in got] == [g[0] for g in want["groups"]], (
        f"got groups {[g[0] for g in got]}, should be {[g[0] for g in want['groups']]} [{name}]"
    )
    for g, w in zip(got, want["groups"], strict=True):
        assert g[1] == w[1], f"got {g[1]} tensors in {g[0]!r}, should be {w[1]} [{name}]"
        assert close(g[2], w[2]), f"got lr {g[2]!r} in {g[0]!r}, should be {w[2]!r} [{name}]"
        assert g[3] == w[3], f"got weight decay {g[3]} in {g[0]!r}, should be {w[3]} [{name}]"
        assert g[4] is w[4], f"got frozen={g[4]} for {g[0]!r}, should be {w[4]} [{name}]"
        assert plan.lr_of(plan.group(g[0])) == (0.0 if w[4] else g[2]), (
            f"got lr_of {plan.lr_of(plan.group(g[0]))} for {g[0]!r}, should be {0.0 if w[4] else g[2]} [{name}]"
        )
    frozen = [p.name for p in plan.params if p.frozen]
    assert frozen == want["frozen"], f"got frozen {frozen}, should be {want['frozen']} [{name}]"


@pytest.mark.parametrize(("name", "want", "depth_of"), MODELS)
def test_depths_follow_the_block_rules(name: str, want: dict[str, Any], depth_of: Any) -> None:
    plan = multilr.plan(model(name), SPEC, backend="oneflow")
    for pname, depth in want["depths"].items():
        got = plan.param(pname).depth
        assert got == depth, f"got depth {got} for {pname}, should be {depth} [{name}]"
    wrong = [(p.name, p.depth, depth_of(p.name)) for p in plan.params if p.depth != depth_of(p.name)]
    assert not wrong, (
        f"got depths differing from the block rule for {len(wrong)} tensors, e.g. {wrong[:5]} [{name}]"
    )
    for p in plan.params:  # each tensor's rate is its group's and follows its depth
        scale = (10.0 if p.name.startswith(("fc.", "classifier.")) else 1.0) * DECAY ** (
            plan.max_depth - p.depth
        )
        assert close(p.lr, LR * scale), (
            f"got lr {p.lr!r} for {p.name}, should be {LR * scale!r} [depth {p.depth}]"
        )
        assert close(p.scale, scale), f"got scale {p.scale!r} for {p.name}, should be {scale!r}"


@pytest.mark.parametrize(("name", "want", "depth_of"), MODELS)
def test_graph_backend_plans_the_same_and_emits_scales(
    name: str, want: dict[str, Any], depth_of: Any
) -> None:
    eager_plan = multilr.plan(model(name), SPEC, backend="oneflow")
    graph_plan = multilr.plan(model(name), SPEC, backend="oneflow-graph")
    assert graph_plan.to_dict() == eager_plan.to_dict(), (
        f"got different plans for oneflow and oneflow-graph [{name}]"
    )
    emitted = multilr.build(model(name), SPEC, backend="oneflow-graph")
    assert len(emitted) == len(want["groups"]), (
        f"got {len(emitted)} groups, should be {len(want['groups'])} [{name}]"
    )
    for g, (gname, n, lr, wd, frozen) in zip(emitted, want["groups"], strict=True):
        assert g["lr"] == LR, f"got lr {g['lr']} in {gname!r}, should be the base {LR} [oneflow-graph]"
        scale = 0.0 if frozen else lr / LR
        assert close(g["lr_scale"], scale), (
            f"got lr_scale {g['lr_scale']!r} in {gname!r}, should be {scale!r}"
        )
        assert len(g["params"]) == n and g["weight_decay"] == wd, (
            f"got {len(g['params'])} tensors, wd {g['weight_decay']} in {gname!r}"
        )
        assert all(p.requires_grad is not frozen for p in g["params"]), (
            f"got requires_grad == frozen in {gname!r}"
        )
    # the build froze exactly the plan's frozen tensors, and nothing else (restore for the other tests)
    for pname, p in model(name).named_parameters():
        assert p.requires_grad is (pname not in want["frozen"]), (
            f"got requires_grad={p.requires_grad} on {pname}"
        )
        p.requires_grad = True


@pytest.mark.parametrize(
    ("name", "blocks", "last"),
    [
        # features.0 (stem conv), 11 inverted residuals, features.12 (last conv)
        pytest.param("mobilenet_v3_small", 11, 12, id="mobilenet_v3_small"),
        # features.0, 16 MBConvs (features.1 holds one, so it is that block), features.8
        pytest.param("efficientnet_b0", 16, 8, id="efficientnet_b0"),
    ],
)
def test_an_inverted_residuals_run_of_conv_layers_is_one_block(name: str, blocks: int, last: int) -> None:
    # Each block keeps its layers in a numbered run (features.i[.j].block.0..3: a conv
    # with its norm, a squeeze-excitation): that run is the block's, not a stack, so every
    # tensor of one block shares a depth (44 and 66 depths before, one per conv layer).
    # The stem conv (features.0) and the last conv, a conv and its norm each in the same
    # list as the blocks, are the stem and the head, as timm groups them (they were
    # blocks 1 and N + 2, and the stem was empty).
    plan = multilr.plan(model(name), Spec(lr=1.0, layer_decay=LayerDecay(0.5)), backend="oneflow")
    unit_depths: dict[str, set[int]] = {}
    for p in plan.params:
        if p.name.startswith("classifier."):
            unit = "classifier"
        else:
            unit = p.name.split(".block.")[0] if ".block." in p.name else ".".join(p.name.split(".")[:2])
        unit_depths.setdefault(unit, set()).add(p.depth)
    units = list(unit_depths.items())
    assert units[0] == ("features.0", {0}), units[0]
    assert [depths for _, depths in units[1:-2]] == [{d} for d in range(1, blocks + 1)], unit_depths
    assert units[-2:] == [(f"features.{last}", {blocks + 1}), ("classifier", {blocks + 1})], units[-2:]
    assert plan.max_depth == blocks + 1


@pytest.mark.parametrize(
    ("name", "blocks"),
    [
        # features.denseblockI.denselayerJ: 6 + 12 + 24 + 16 dense layers
        pytest.param("densenet121", 58, id="densenet121"),
        # trunk_output.blockI.blockI-J: 1 + 3 + 6 + 6 residual blocks
        pytest.param("regnet_y_400mf", 16, id="regnet_y_400mf"),
    ],
)
def test_blocks_named_with_a_number_are_blocks(name: str, blocks: int) -> None:
    # torchvision's layout names its blocks with a word and a number, not a number alone:
    # they were no stack, and the whole body shared the stem's depth (max depth 1 and 2)
    unit = r"features\.denseblock\d+\.denselayer\d+\.|trunk_output\.block\d\.block\d-\d+\."
    plan, unit_depths = planned_units(name, unit)
    assert unit_depths == [{d} for d in range(1, blocks + 1)], unit_depths
    assert plan.params[0].depth == 0 and plan.params[-1].depth == blocks + 1 == plan.max_depth


def test_convnexts_downsample_list_goes_in_with_its_stages() -> None:
    # flowvision's ConvNeXt (the reference layout): downsample_layers.i registered as one
    # list before stages.i. Each downsample shares the depth of the block before its stage
    # (the stem for the first); before, all four were blocks 1..4 and the stages 5..22.
    plan = multilr.plan(model("convnext_tiny_224"), Spec(lr=1.0, layer_decay=LayerDecay(0.5)), backend="oneflow")
    depth = {p.name: p.depth for p in plan.params}
    last_blocks = [depth[f"stages.{i}.{j}.gamma"] for i, j in ((0, 2), (1, 2), (2, 8))]
    assert last_blocks == [3, 6, 15]
    assert [depth[f"downsample_layers.{i}.0.weight"] for i in range(4)] == [0, *last_blocks]
    assert depth["stages.0.0.gamma"] == 1 and depth["stages.3.2.gamma"] == 18 and plan.max_depth == 19


@pytest.mark.parametrize(
    ("name", "stages", "head"),
    [
        # stage1 .. stage4 hold 1, 2, 21 and 1 blocks
        pytest.param("cswin_tiny_224", r"stage\d\.\d+\.", 26, id="cswin_tiny_224"),
        # layers.8 .. layers.13 hold 3, 3, 3, 2, 4 and 1 inverted residuals
        pytest.param("mnasnet0_5", r"layers\.(?:[89]|1[0-3])\.\d\.", 17, id="mnasnet0_5"),
    ],
)
def test_a_stage_of_one_block_is_a_stack_beside_stages_like_it(name: str, stages: str, head: int) -> None:
    # A list of one block, beside lists of several: alone it would be no stack, and its
    # block landed in the stem (CSWin's stage1) or the head (CSWin's stage4, MNASNet's
    # layers.13), beside the real head's layers
    plan, unit_depths = planned_units(name, stages)
    assert unit_depths == [{d} for d in range(1, head)], unit_depths
    assert plan.params[0].depth == 0 and plan.params[-1].depth == head == plan.max_depth


def test_googlenets_inception_branches_are_no_blocks() -> None:
    # inceptionNx.branch1 .. branch4 all read the module's input: one module is one unit.
    # With no stack in the model, each top-level child has its own depth, in order (as
    # timm groups Inception models); before, each module was 4 blocks (37 depths).
    plan, tops = planned_units("googlenet", r"[^.]+")
    assert tops == [{d} for d in range(len(tops))], tops
    inceptions = list(dict.fromkeys(p.name.partition(".")[0] for p in plan.params))[3:12]
    assert inceptions == [f"inception{m}" for m in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
