import re

import pytest

from multilr import LayerDecay, PlanError, Spec, plan
from multilr._depth import infer_depths

from ._infos import bert_like, info, resnet_like, tied_lm


def depths(infos, mode="blocks"):
    return infer_depths([i.name for i in infos], mode)


def test_resnet_blocks_stem_zero_head_top():
    d = depths(resnet_like())
    assert d["conv1.weight"] == 0 and d["bn1.bias"] == 0, f"got {d['conv1.weight']}, should be 0 [stem]"
    assert d["layer1.0.conv1.weight"] == 1
    assert d["layer1.1.bn2.bias"] == 2
    # downsample is a Sequential of plain layers inside a block: same depth as its block
    assert d["layer2.0.downsample.0.weight"] == d["layer2.0.conv1.weight"] == 3
    assert d["layer4.1.conv2.weight"] == 8
    assert d["fc.weight"] == d["fc.bias"] == 9, f"got {d['fc.weight']}, should be 9 [head = blocks + 1]"


def test_bert_embeddings_layers_head():
    d = depths(bert_like(layers=3))
    assert d["bert.embeddings.word_embeddings.weight"] == 0
    assert [d[f"bert.encoder.layer.{i}.output.dense.weight"] for i in range(3)] == [1, 2, 3]
    assert d["bert.pooler.dense.weight"] == d["classifier.bias"] == 4


def test_top_mode_is_seed_000_block_recipe():
    d = depths(resnet_like(), "top")
    order = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    for i, top in enumerate(order):
        got = {v for k, v in d.items() if k.split(".")[0] == top}
        assert got == {i}, f"got {got}, should be {{{i}}} [{top}]"


def test_tensor_mode_counts_every_tensor():
    infos = resnet_like()
    assert depths(infos, "tensor") == {p.name: i for i, p in enumerate(infos)}


def test_no_stack_falls_back_to_top_level_order():
    d = infer_depths(["layer1.weight", "layer1.bias", "layer2.weight"], "blocks")
    assert d == {"layer1.weight": 0, "layer1.bias": 0, "layer2.weight": 1}


def test_sequential_of_plain_layers_is_not_a_stack():
    # stem = Sequential(conv, bn): numbered, but its elements are layers, not blocks
    names = ["stem.0.weight", "stem.1.weight", "blocks.0.fc.weight", "blocks.1.fc.weight", "head.weight"]
    assert infer_depths(names, "blocks") == {
        "stem.0.weight": 0,
        "stem.1.weight": 0,
        "blocks.0.fc.weight": 1,
        "blocks.1.fc.weight": 2,
        "head.weight": 3,
    }


def test_nested_stacks_and_mid_units():
    # swin-like: stages of blocks, a downsample between stages shares the depth before it
    block = ("attn.qkv.weight", "mlp.fc1.weight", "mlp.fc2.weight")
    names = [
        "patch.weight",
        *(f"layers.0.blocks.0.{t}" for t in block),
        *(f"layers.0.blocks.1.{t}" for t in block),
        "layers.0.down.proj.weight",
        *(f"layers.1.blocks.0.{t}" for t in block),
        *(f"layers.1.blocks.1.{t}" for t in block),
        "norm.weight",
    ]
    d = infer_depths(names, "blocks")
    assert [d[n] for n in names] == [0, *[1] * 3, *[2] * 3, 2, *[3] * 3, *[4] * 3, 5], f"got {d}"


def _bottleneck(prefix, shortcut):
    convs = [f"{prefix}.layer.{k}.{m}.{t}" for k in range(3) for m, t in
             (("convolution", "weight"), ("normalization", "weight"), ("normalization", "bias"))]
    return [f"{prefix}.shortcut.convolution.weight"] * shortcut + convs


def test_a_run_of_conv_layers_inside_a_block_is_the_block():
    # HF ResNet: stages.i.layers.j (residual blocks).layer.k (conv + norm): one depth per
    # residual block, not one per convolution
    names = [
        "embedder.convolution.weight",
        *_bottleneck("encoder.stages.0.layers.0", True),
        *_bottleneck("encoder.stages.0.layers.1", False),
        *_bottleneck("encoder.stages.1.layers.0", True),
        *_bottleneck("encoder.stages.1.layers.1", False),
        "pooler_head.weight",
    ]
    d = infer_depths(names, "blocks")
    by_block: dict[str, set[int]] = {}
    for n in names[1:-1]:  # encoder.stages.i.layers.j....
        by_block.setdefault(".".join(n.split(".")[:5]), set()).add(d[n])
    assert by_block == {
        "encoder.stages.0.layers.0": {1},
        "encoder.stages.0.layers.1": {2},
        "encoder.stages.1.layers.0": {3},
        "encoder.stages.1.layers.1": {4},
    }
    assert d[names[0]] == 0 and d[names[-1]] == 5
    # three modules with tensors in one element make it a block: each conv a depth again
    heavy = [n.replace("normalization", "norm_a") for n in names] + [
        n.replace("normalization.weight", "extra.weight") for n in names if n.endswith("normalization.weight")
    ]
    assert max(infer_depths(heavy, "blocks").values()) == 13
    # a top-level run of conv units is a stack of blocks (a plain CNN of them)
    plain = [f"features.{i}.{m}.weight" for i in range(3) for m in ("conv", "bn")]
    assert [infer_depths(plain, "blocks")[n] for n in plain] == [1, 1, 2, 2, 3, 3]


def test_a_top_level_run_of_layers_beside_blocks_is_no_stack():
    # wav2vec2: a conv feature encoder (conv_layers.k: a conv and its norm) before the
    # transformer layers is the stem; a segmentation head's projections (linear_c.k: one
    # layer each) after the blocks are the head. Counted as stacks, the encoder pushed
    # every transformer layer up by its length and the head pushed them down.
    names = [
        *(f"feature_extractor.conv_layers.{k}.{m}.weight" for k in range(3) for m in ("conv", "layer_norm")),
        "feature_projection.projection.weight",
        *(f"encoder.layers.{i}.{m}.weight" for i in range(2) for m in ("attention.q_proj", "attention.k_proj",
                                                                         "feed_forward.dense", "layer_norm")),
        *(f"decode_head.linear_c.{k}.proj.weight" for k in range(4)),
        "decode_head.classifier.weight",
    ]  # fmt: skip
    d = infer_depths(names, "blocks")
    assert {d[n] for n in names[:7]} == {0}  # the encoder and the projection: the stem
    assert [d[f"encoder.layers.{i}.layer_norm.weight"] for i in range(2)] == [1, 2]
    assert {d[n] for n in names[-5:]} == {3}  # the head: one above the last layer
    assert infer_depths(names, "outer") == d
    # the same run with no stack of blocks in the model is one (a plain CNN of conv units)
    alone = names[:6]
    assert [infer_depths(alone, "blocks")[n] for n in alone] == [1, 1, 2, 2, 3, 3]


def _conv(path: str) -> list[str]:  # torchvision's Conv2dNormActivation: a conv and its norm
    return [f"{path}.0.weight", f"{path}.1.weight", f"{path}.1.bias"]


def _inverted_residual(path: str, expand: bool = True) -> list[str]:
    # torchvision's MobileNetV2 block: [expansion conv,] depthwise conv, projection conv + norm
    convs = [*(_conv(f"{path}.conv.0") if expand else []), *_conv(f"{path}.conv.{int(expand)}")]
    return [*convs, f"{path}.conv.{int(expand) + 1}.weight", f"{path}.conv.{int(expand) + 2}.weight"]


def test_the_stem_and_last_conv_beside_blocks_in_one_list_are_stem_and_head():
    # torchvision's MobileNetV2 keeps its stem conv in features.0 and its last conv in
    # features.18, one list with the 17 inverted residuals between. timm groups them as
    # its stem and head; as blocks, the stem conv took depth 1 and the stem was empty.
    names = [
        *_conv("features.0"),
        *_inverted_residual("features.1", expand=False),
        *(n for i in range(2, 5) for n in _inverted_residual(f"features.{i}")),
        *_conv("features.5"),
        "classifier.1.weight",
    ]
    d = infer_depths(names, "blocks")
    assert {d[n] for n in _conv("features.0")} == {0}
    assert [d[f"features.{i}.conv.0.0.weight"] for i in range(1, 5)] == [1, 2, 3, 4]
    assert {d[n] for n in _conv("features.5")} == {d["classifier.1.weight"]} == {5}
    assert infer_depths(names, "outer") == d
    # torchvision's EfficientNet: features.1..7 are stages (lists of MBConv blocks), the
    # stem and last conv the same two-module elements around them
    mbconv = [f"block.{k}.{m}.weight" for k, m in ((0, 0), (0, 1), (1, "fc1"), (1, "fc2"), (2, 0), (2, 1))]
    effnet = [
        *_conv("features.0"),
        *(f"features.{i}.{j}.{w}" for i, blocks in ((1, 1), (2, 2), (3, 2)) for j in range(blocks) for w in mbconv),
        *_conv("features.4"),
        "classifier.1.weight",
    ]
    d = infer_depths(effnet, "blocks")
    assert [d[f"features.{i}.{j}.block.0.0.weight"] for i, j in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1))] == [
        1, 2, 3, 4, 5,
    ]  # fmt: skip
    assert {d[n] for n in _conv("features.0")} == {0} and {d[n] for n in _conv("features.4")} == {6}
    outer = infer_depths(effnet, "outer")  # one depth per stage
    assert [outer[f"features.{i}.0.block.0.0.weight"] for i in (1, 2, 3)] == [1, 2, 3]
    assert outer["features.0.0.weight"] == 0 and outer["features.4.0.weight"] == outer["classifier.1.weight"] == 4
    # torchvision's ConvNeXt: the downsamples between the stages (a norm and a conv) share
    # the depth of the block before them, as the reference layout's separate list does
    cnblock = [f"{w}" for w in ("layer_scale", "block.0.weight", "block.2.weight", "block.3.weight", "block.5.weight")]
    convnext = [
        *(f"features.0.{k}.weight" for k in (0, 1)),
        *(f"features.1.{j}.{w}" for j in range(2) for w in cnblock),
        *(f"features.2.{k}.weight" for k in (0, 1)),
        *(f"features.3.{j}.{w}" for j in range(2) for w in cnblock),
        "classifier.0.weight",
        "classifier.2.weight",
    ]
    d = infer_depths(convnext, "blocks")
    assert [d[f"features.{i}.0.weight"] for i in (0, 2)] == [0, 2]
    assert [d[f"features.{i}.{j}.layer_scale"] for i in (1, 3) for j in range(2)] == [1, 2, 3, 4]
    assert d["classifier.2.weight"] == 5
    # controls: a list of conv units alone is a plain CNN's blocks; an element of three
    # other modules (a depthwise conv, its norm, a projection) is a block beside the
    # two-module ones, which are the stem and the head
    plain = [n for i in range(3) for n in _conv(f"features.{i}")]
    assert [infer_depths(plain, "blocks")[f"features.{i}.0.weight"] for i in range(3)] == [1, 2, 3]
    heavier = [*_conv("features.0"), *_inverted_residual("features.1", expand=False), *_conv("features.2")]
    d = infer_depths(heavier, "blocks")
    assert [d["features.0.0.weight"], d["features.1.conv.0.0.weight"], d["features.2.0.weight"]] == [0, 1, 2]


def test_a_block_with_a_part_more_leaves_the_others_blocks():
    """Blocks of two modules where one holds a third (a layer scale only in ``blocks.0``, a
    squeeze-excitation in one conv unit) are one kind of block: the two-module ones hold
    the same modules, by their names inside the block, less one. Read by size alone they
    were layers beside a block, and ``blocks.1``/``.2`` went to the head with a depth of
    its (the conformance suite's ``subclassed`` model had 3 depths where it has 5).
    """
    block = ("fc", "norm")
    plain = ["embed.weight", *(f"blocks.{i}.{m}.weight" for i in range(3) for m in block), "head.weight"]
    scaled = [*plain[:3], "blocks.0.scale.gamma", *plain[3:]]
    for mode in ("blocks", "outer"):
        d = infer_depths(scaled, mode)
        assert [d[f"blocks.{i}.fc.weight"] for i in range(3)] == [1, 2, 3]
        assert d["blocks.0.scale.gamma"] == 1 and d["embed.weight"] == 0 and d["head.weight"] == 4
        assert {n: d[n] for n in plain} == infer_depths(plain, mode)
    # a squeeze-excitation in one of three conv units: three blocks, as without it
    se = [*_conv("features.0"), *_conv("features.1"), "features.1.se.weight", *_conv("features.2")]
    assert [infer_depths(se, "blocks")[f"features.{i}.0.weight"] for i in range(3)] == [1, 2, 3]
    # torchvision's ResNet-18 with FrozenBatchNorm2d (buffers only), as detection models build
    # it: layerK.1 holds conv1 and conv2, layerK.0 a downsample conv more. They were layers
    # beside layerK.0, and layer4.1 went to the head with fc; now each is a block, as timm
    # groups them (layer1: the next test).
    d = infer_depths(_frozen_bn_resnet18(), "blocks")
    assert [d[f"layer{k}.{b}.conv1.weight"] for k in (2, 3, 4) for b in (0, 1)] == [3, 4, 5, 6, 7, 8]
    assert d["fc.weight"] == 9



def test_elements_compare_their_modules_by_shape():
    """A small element is a block with parts left out when its modules' names, digits made 0,
    are among a bigger element's: the same layers numbered otherwise.

    torchvision's MobileNetV2 with frozen norms: ``features.1`` (no expansion) holds
    ``conv.0.0`` and ``conv.1``, where the other blocks hold ``conv.0.0``, ``conv.1.0`` and
    ``conv.2``; by names it was the stem, and the model lost a depth against its twin with
    norms. SSD's VGG extras (``extra.1``..: a 1x1 and a 3x3 conv at ``0`` and ``2``, where
    ``extra.0`` holds ``1``, ``3``, ``5``, ``7.1``, ``7.3``) were the head beside one block.
    """
    normed = [
        *_conv("features.0"),
        *_inverted_residual("features.1", expand=False),
        *(n for i in range(2, 5) for n in _inverted_residual(f"features.{i}")),
        *_conv("features.5"),
    ]
    bare = [  # the same without the norms' tensors
        "features.0.0.weight",
        "features.1.conv.0.0.weight",
        "features.1.conv.1.weight",
        *(f"features.{i}.conv.{m}.weight" for i in range(2, 5) for m in ("0.0", "1.0", "2")),
        "features.5.0.weight",
    ]
    for names in (normed, bare):
        d = infer_depths(names, "blocks")
        assert [d[f"features.{i}.conv.0.0.weight"] for i in range(1, 5)] == [1, 2, 3, 4]
        assert d["features.0.0.weight"] == 0 and d["features.5.0.weight"] == 5
    ssd = [
        "features.0.weight",
        *(f"extra.0.{k}.weight" for k in ("1", "3", "5", "7.1", "7.3")),
        *(f"extra.{i}.{k}.weight" for i in range(1, 5) for k in (0, 2)),
        "head.0.weight",
    ]
    d = infer_depths(ssd, "blocks")
    assert [d[f"extra.{i}.0.weight"] for i in range(1, 5)] == [2, 3, 4, 5]
    assert d["features.0.weight"] == 0 and d["extra.0.1.weight"] == 1 and d["head.0.weight"] == 6


def _frozen_bn_resnet18(norms=False):
    """torchvision ResNet-18's tensor names; without the norms' (``FrozenBatchNorm2d``) by default."""
    names = ["conv1.weight", *(["bn1.weight", "bn1.bias"] if norms else [])]
    for k in (1, 2, 3, 4):
        for b in (0, 1):
            convs = ["conv1", "conv2", *(["downsample.0"] if k > 1 and b == 0 else [])]
            for conv in convs:
                names.append(f"layer{k}.{b}.{conv}.weight")
                if norms:
                    norm = conv.replace("conv", "bn").replace(".0", ".1")
                    names += [f"layer{k}.{b}.{norm}.weight", f"layer{k}.{b}.{norm}.bias"]
    return [*names, "fc.weight", "fc.bias"]


def test_a_run_of_layers_shaped_like_a_stack_of_blocks_is_one():
    """A ResNet-18 with frozen norms has two convs in each of ``layer1``'s blocks: by size a
    run of layers, and it was the stem. Shaped like ``layer2`` .. ``layer4`` (stacks of blocks)
    and holding only modules their blocks hold, it is a stack of blocks with parts left out:
    every conv gets the depth it has with the norms' tensors there.
    """
    frozen = _frozen_bn_resnet18()
    with_norms = infer_depths(_frozen_bn_resnet18(norms=True), "blocks")
    for mode in ("blocks", "outer"):
        d = infer_depths(frozen, mode)
        assert d == {n: with_norms[n] for n in frozen}
        assert [d[f"layer1.{b}.conv2.weight"] for b in (0, 1)] == [1, 2] and d["conv1.weight"] == 0
    # the same nested one level down (timm-style stages.i.blocks.j): the shapes match, not siblings
    nested = [re.sub(r"^layer(\d)\.", r"stages.\1.blocks.", n) for n in frozen]
    assert nested[1] == "stages.1.blocks.0.conv1.weight"
    assert infer_depths(nested, "blocks")["stages.1.blocks.1.conv1.weight"] == 2
    # controls: a run with a module no block holds, and a conv stem's run, stay the stem
    extra = [n.replace("layer1.1.conv2", "layer1.1.gate") for n in frozen]
    assert infer_depths(extra, "blocks")["layer1.1.gate.weight"] == 0
    stem = ["stem.0.conv.weight", "stem.1.conv.weight", *frozen[1:]]
    d = infer_depths(stem, "blocks")
    assert d["stem.1.conv.weight"] == 0 and d["layer1.0.conv1.weight"] == 1


def test_a_run_of_layers_beside_a_stack_of_the_same_elements_goes_in_with_it():
    # ConvNeXt's reference layout: downsample_layers.i (a conv and a norm) registered as
    # one list before stages.i. Each downsample goes just before its stage, where
    # torchvision's one list has it: the depth of the block before (the stem for the first).
    block = [f"{m}.weight" for m in ("dwconv", "norm", "pwconv1", "pwconv2")]
    names = [
        *(f"downsample_layers.{i}.{k}.weight" for i in range(3) for k in (0, 1)),
        *(f"stages.{i}.{j}.{w}" for i in range(3) for j in range(2) for w in block),
        "norm.weight",
        "head.weight",
    ]
    d = infer_depths(names, "blocks")
    assert [d[f"downsample_layers.{i}.0.weight"] for i in range(3)] == [0, 2, 4]
    assert [d[f"stages.{i}.{j}.norm.weight"] for i in range(3) for j in range(2)] == [1, 2, 3, 4, 5, 6]
    assert d["norm.weight"] == d["head.weight"] == 7
    assert [infer_depths(names, "outer")[f"downsample_layers.{i}.0.weight"] for i in range(3)] == [0, 1, 2]
    # registered after the stack: each goes just after its element (a norm per stage; the
    # last one after the last block: the head)
    after = names[6:-2] + [f"norms.{i}.{k}.weight" for i in range(3) for k in (0, 1)] + names[-2:]
    assert [infer_depths(after, "blocks")[f"norms.{i}.1.weight"] for i in range(3)] == [2, 4, 7]
    # elements that differ from the stack's: the run stays whole (before the blocks: the stem)
    fewer = [n for n in names if not n.startswith("downsample_layers.2.")]
    assert {infer_depths(fewer, "blocks")[n] for n in fewer if n.startswith("downsample_layers.")} == {0}


def _dense_layer(path: str) -> list[str]:
    return [f"{path}.{m}.{w}" for m in ("norm1", "conv1", "norm2", "conv2") for w in ("weight", "bias")]


def test_children_of_one_name_and_a_number_are_a_stack():
    # torchvision's DenseNet (features.denseblockI.denselayerJ, transitionI between the
    # dense blocks) and RegNet (trunk_output.blockI.blockI-J): without this the whole
    # DenseNet body had one depth, the stem's
    names = [
        "features.conv0.weight",
        "features.norm0.weight",
        *(n for j in (1, 2, 3) for n in _dense_layer(f"features.denseblock1.denselayer{j}")),
        "features.transition1.conv.weight",
        *(n for j in (1, 2, 3) for n in _dense_layer(f"features.denseblock2.denselayer{j}")),
        "features.norm5.weight",
        "classifier.weight",
    ]
    d = infer_depths(names, "blocks")
    assert d["features.conv0.weight"] == d["features.norm0.weight"] == 0
    assert [d[f"features.denseblock{i}.denselayer{j}.conv2.weight"] for i in (1, 2) for j in (1, 2, 3)] == [
        1, 2, 3, 4, 5, 6
    ]  # fmt: skip
    assert d["features.transition1.conv.weight"] == 3  # between blocks: the block before it
    assert d["features.norm5.weight"] == d["classifier.weight"] == 7
    # a digit in the name: blockI-J; the stages blockI are a stack too, so "outer" counts them
    regnet = ["stem.0.weight"] + [
        f"trunk_output.block{i}.block{i}-{j}.f.{m}.weight" for i in (1, 2, 3) for j in range(3) for m in "abc"
    ] + ["fc.weight"]  # fmt: skip
    assert max(infer_depths(regnet, "blocks").values()) == 10
    assert max(infer_depths(regnet, "outer").values()) == 4
    # children whose names differ before the number are no stack: blockI-J of two stages
    # side by side, or a layer and a stage
    mixed = [n.replace("trunk_output.block2.block2-", "trunk_output.block1.block2-") for n in regnet]
    d = infer_depths(mixed, "blocks")
    assert {d[n] for n in mixed if ".block1." in n} == {0}  # no stack: before the first block
    assert max(d.values()) == 4  # block3's three blocks, the head
    assert infer_depths(["a.layer1.x.w", "a.layer2.x.w", "a.stage3.x.w"], "blocks") == {
        "a.layer1.x.w": 0, "a.layer2.x.w": 0, "a.stage3.x.w": 0
    }  # fmt: skip


def test_two_children_of_one_name_and_a_number_are_no_stack():
    # GhostNet's ghost1 / ghost2, ShuffleNet's branch1 / branch2: the halves or branches
    # of one block, not two blocks. Three or more are a stack; two numbers are too.
    half = [f"{m}.{k}.{w}" for m in ("primary_conv", "cheap_operation") for k in (0, 1) for w in ("weight", "bias")]
    names = ["stem.weight"] + [f"blocks.{i}.ghost{g}.{h}" for i in (0, 1) for g in (1, 2) for h in half] + ["head.weight"]
    d = infer_depths(names, "blocks")
    assert [d[f"blocks.{i}.ghost{g}.primary_conv.0.weight"] for i in (0, 1) for g in (1, 2)] == [1, 1, 2, 2]
    three = [n.replace("ghost2", "ghost3") for n in names] + [
        n.replace("ghost1", "ghost2") for n in names if ".ghost1." in n
    ]
    assert max(infer_depths(three, "blocks").values()) == 7  # 2 x 3 blocks, the head
    numbers = [n.replace("ghost", "") for n in names]
    assert max(infer_depths(numbers, "blocks").values()) == 5  # 2 x 2 blocks, the head


def test_a_stage_of_one_block_is_a_stack_beside_stages_like_it():
    # CSWin's stage1 and stage4 hold one block each (depths 1, 2, 21, 1). A list of one
    # alone is a wrapper, no stack: their blocks landed in the stem and the head.
    block = ("attn.weight", "mlp.weight", "norm.weight")
    stages = ((1, 1), (2, 2), (3, 3), (4, 1))
    names = [
        "embed.weight",
        *(f"stage{s}.{j}.{w}" for s, n in stages for j in range(n) for w in block),
        "norm.weight",
        "head.weight",
    ]
    d = infer_depths(names, "blocks")
    assert [d[f"stage{s}.{j}.attn.weight"] for s, n in stages for j in range(n)] == [1, 2, 3, 4, 5, 6, 7]
    assert d["embed.weight"] == 0 and d["norm.weight"] == d["head.weight"] == 8
    assert infer_depths(names, "outer") == d  # no stack holds the stages: the same
    # numbered lists (MNASNet's layers.8 .. layers.13, the last of one block) and named
    # blocks (RegNet's block1.block1-0 beside block2.block2-J)
    mnas = ["layers.0.weight", *(f"layers.{i}.{j}.{w}" for i, n in ((8, 2), (13, 1)) for j in range(n) for w in block)]
    d = infer_depths([*mnas, "layers.14.weight"], "blocks")
    assert [d["layers.8.0.mlp.weight"], d["layers.8.1.mlp.weight"], d["layers.13.0.mlp.weight"]] == [1, 2, 3]
    assert d["layers.14.weight"] == 4
    regnet = ["stem.weight", *(f"trunk.block{i}.block{i}-{j}.{w}" for i, n in ((1, 1), (2, 3)) for j in range(n) for w in block)]
    assert max(infer_depths([*regnet, "fc.weight"], "blocks").values()) == 5  # 1 + 3 blocks, the head
    # no sibling like it: a name that differs before the number, or children named otherwise
    for lone in ("layer1.0.", "stage1.block0."):
        other = [n.replace("stage1.0.", lone) for n in names]
        assert infer_depths(other, "blocks")[f"{lone}attn.weight"] == 0  # before the first block: stem


def _inception(module: str) -> list[str]:
    conv = ("conv.weight", "bn.weight")
    return [
        *(f"{module}.branch1.{w}" for w in conv),
        *(f"{module}.branch{b}.{k}.{w}" for b in (2, 3) for k in (0, 1) for w in conv),
        *(f"{module}.branch4.1.{w}" for w in conv),
    ]


def test_parallel_branches_are_no_stack():
    # GoogLeNet's inception modules: branch1 .. branch4 all see the module's input. As a
    # stack they were four blocks a module, in an order that means nothing; now the model
    # has no stack: top-level order, one depth per inception module (timm's grouping)
    names = ["conv1.conv.weight", *_inception("inception3a"), *_inception("inception3b"), "fc.weight"]
    d = infer_depths(names, "blocks")
    assert [d[n] for n in names] == [0, *[1] * 12, *[2] * 12, 3]
    # inside a stack's blocks (timm's Inception-ResNet: repeat.i.branch0 ..): one depth a block
    resnet = ["stem.weight", *(n for i in range(3) for n in _inception(f"repeat.{i}")), "head.weight"]
    d = infer_depths(resnet, "blocks")
    assert [{d[n] for n in resnet if n.startswith(f"repeat.{i}.")} for i in range(3)] == [{1}, {2}, {3}]
    assert d["head.weight"] == 4


def test_a_stack_of_plain_units_beside_a_stack_of_stacks_goes_in_with_it():
    # HF's PVT: encoder.patch_embeddings.i (a conv, a norm and a position embedding: three
    # modules with tensors, a stack of its own) beside encoder.block.i.j. The patch
    # embeddings were blocks 1..3; each goes in before its stage, as PVT v2 nests it.
    embed = ("position_embeddings", "projection.weight", "layer_norm.weight")
    block = ("attn.weight", "mlp.weight", "norm.weight")
    names = [
        *(f"encoder.patch_embeddings.{i}.{w}" for i in range(3) for w in embed),
        *(f"encoder.block.{i}.{j}.{w}" for i in range(3) for j in range(2) for w in block),
        "encoder.layer_norm.weight",
    ]
    d = infer_depths(names, "blocks")
    assert [d[f"encoder.patch_embeddings.{i}.projection.weight"] for i in range(3)] == [0, 2, 4]
    assert [d[f"encoder.block.{i}.{j}.mlp.weight"] for i in range(3) for j in range(2)] == [1, 2, 3, 4, 5, 6]
    assert d["encoder.layer_norm.weight"] == 7
    outer = infer_depths(names, "outer")
    assert [outer[f"encoder.patch_embeddings.{i}.layer_norm.weight"] for i in range(3)] == [0, 1, 2]
    assert [outer[f"encoder.block.{i}.1.mlp.weight"] for i in range(3)] == [1, 2, 3]
    # two stacks of stacks side by side (two streams), or of plain units: no pairing
    streams = [n.replace(".block.", f".{s}.") for s in ("rgb", "flow") for n in names if ".block." in n]
    assert max(infer_depths([*streams, "head.weight"], "blocks").values()) == 13  # 2 x 6 blocks, the head
    plain = [n for n in names if ".patch_embeddings." in n] + [
        n.replace("patch_embeddings", "other") for n in names if ".patch_embeddings." in n
    ]
    assert max(infer_depths(plain, "blocks").values()) == 6  # 2 x 3 blocks: nothing after them


def test_lists_registered_apart_do_not_go_in_together():
    # HRNet: layer1 (residual blocks 0, 1) comes long before stage4 (modules 0, 1 of
    # parallel branches), and its downsamp_modules.i (a conv and a norm) after incre_modules,
    # not beside stage3. Same element names, but not made side by side: no pairing.
    block = ("conv1.weight", "bn1.weight", "conv2.weight")
    names = [
        "conv1.weight",
        *(f"layer1.{i}.{w}" for i in range(2) for w in block),
        *(f"stage3.{i}.branches.{b}.{j}.{w}" for i in range(3) for b in range(2) for j in range(2) for w in block),
        *(f"stage4.{i}.branches.{b}.{j}.{w}" for i in range(2) for b in range(2) for j in range(2) for w in block),
        *(f"incre_modules.{i}.0.{w}" for i in range(4) for w in block),
        *(f"downsamp_modules.{i}.{k}.weight" for i in range(3) for k in range(2)),
        "final_layer.0.weight",
    ]
    d = infer_depths(names, "blocks")
    assert [d[f"layer1.{i}.conv1.weight"] for i in range(2)] == [1, 2]
    head = d["final_layer.0.weight"]
    assert {d[f"downsamp_modules.{i}.0.weight"] for i in range(3)} == {head}
    # registered right after stage3, the same list does go in with it: one after each module
    down = [n for n in names if n.startswith("downsamp_modules.")]
    rest = [n for n in names if n not in down]
    at = max(i for i, n in enumerate(rest) if n.startswith("stage3.")) + 1
    d = infer_depths([*rest[:at], *down, *rest[at:]], "blocks")
    stage3 = [d[f"stage3.{i}.branches.1.1.conv1.weight"] for i in range(3)]
    assert [d[f"downsamp_modules.{i}.0.weight"] for i in range(3)] == stage3 == [6, 10, 14]


def test_root_level_tokens_are_stem():
    names = ["cls_token", "pos_embed", "blocks.0.attn.qkv.weight", "blocks.1.attn.qkv.weight", "head.weight"]
    d = infer_depths(names, "blocks")
    assert d["cls_token"] == d["pos_embed"] == 0 and d["head.weight"] == 3


def test_explicit_depth_map_and_missing_entry():
    names = ["a.w", "b.w", "c.w"]
    assert infer_depths(names, {"a.*": 0, "*": 5}) == {"a.w": 0, "b.w": 5, "c.w": 5}
    with pytest.raises(PlanError, match=r"'c\.w' matches no pattern"):
        infer_depths(names, {"a.*": 0, "b.*": 1})


def test_explicit_map_first_pattern_wins_whether_name_or_glob():
    """Names are looked up, not scanned; a glob before a name's own entry still wins."""
    names = ["a.w", "b.w", "c.w", "d[0].w"]
    depth_map = {"b.w": 5, "*.w": 1, "c.w": 9, "d[0].w": 7}
    assert infer_depths(names, depth_map) == {"a.w": 1, "b.w": 5, "c.w": 1, "d[0].w": 1}
    every = [f"blocks.{i}.w" for i in range(3000)]  # a forward_depths-sized map: one entry per name
    assert infer_depths(every, {n: i for i, n in enumerate(every)}) == {n: i for i, n in enumerate(every)}
    with pytest.raises(PlanError, match=r"'x\.w' matches no pattern .*\.\.\. \(3000 patterns\)"):
        infer_depths(["x.w"], {n: 0 for n in every})


def test_depth_ignores_frozen_state():
    infos = resnet_like()
    frozen = [
        i if not i.name.startswith("layer1") else type(i)(*(getattr(i, f) for f in i.__slots__[:5]), False, i.key)
        for i in infos
    ]
    assert depths(infos) == depths(frozen)
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5))
    assert plan(infos, spec).rates() == plan(frozen, spec).rates()


def test_tied_alias_takes_canonical_depth():
    p = plan(tied_lm(), Spec(lr=1.0, layer_decay=LayerDecay(0.5)))
    assert p.param("lm_head.weight").depth == 0, "the tied head is the embedding tensor: depth of its first name"
    assert p.max_depth == 3


def test_single_param_model():
    p = plan([info("w")], Spec(lr=0.1, layer_decay=LayerDecay(0.5)))
    assert p.rates() == {"w": 0.1}
