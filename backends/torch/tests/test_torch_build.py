"""What ``multilr.build(model, spec, backend="torch")`` emits and what it does to the model.

Coverage of every tensor (tied ones once), the keys of each group, stable group order
across builds (so optimizer checkpoints load), ``requires_grad`` handling, layer
depths on BERT, and weight tying.
"""

from __future__ import annotations

import collections
import copy
import io
import re
from collections.abc import Callable

import models
import pytest
import torch

import multilr
from multilr import Glob, LayerDecay, ModuleType, Prefix, Rule, Spec


def resnet_spec() -> Spec:
    return Spec(
        lr=0.1,
        weight_decay=0.05,
        hyper={"momentum": 0.9, "betas": (0.9, 0.95)},
        rules=[
            Rule(Prefix("fc"), lr_mult=10, name="head"),
            Rule(Prefix("layer1"), frozen=True, name="frozen-layer1"),
        ],
        layer_decay=LayerDecay(0.8),
        no_decay=("bias", "norm"),
    )


CASES = [
    pytest.param(lambda: models.resnet18(width=4), resnet_spec, id="resnet18"),
    pytest.param(
        lambda: models.bert(layers=2, hidden=16),
        lambda: Spec(lr=1e-3, rules=[Rule(Prefix("classifier"), lr_mult=10)], layer_decay=LayerDecay(0.75)),
        id="bert",
    ),
    pytest.param(
        lambda: models.tied_lm(),
        lambda: Spec(lr=1e-3, rules=[Rule(Glob("lm_head.*"), lr_mult=5)], no_decay=("1d",)),
        id="tied-lm",
    ),
    pytest.param(lambda: models.mlp(), lambda: Spec(lr=1e-2, layer_decay=LayerDecay(0.5)), id="mlp"),
]


@pytest.mark.parametrize(("make_model", "make_spec"), CASES)
def test_every_tensor_in_exactly_one_group(
    make_model: Callable[[], torch.nn.Module], make_spec: Callable[[], Spec]
) -> None:
    model = make_model()
    groups = multilr.build(model, make_spec(), backend="torch")
    ids = [id(t) for g in groups for t in g["params"]]
    dup = [i for i, n in collections.Counter(ids).items() if n > 1]
    assert not dup, f"got {len(dup)} tensors in more than one group, should be none"
    want = {id(p) for p in model.parameters()}  # parameters() lists a tied tensor once
    assert set(ids) == want, f"got {len(set(ids))} distinct tensors in the groups, should be {len(want)}"
    by_name = dict(model.named_parameters())
    for g, pg in zip(groups, groups.plan.groups, strict=True):
        got = [id(t) for t in g["params"]]
        should = [id(by_name[n]) for n in pg.params]
        assert got == should, f"got tensors {got} in group {pg.name!r}, should be {pg.params} in model order"
    torch.optim.AdamW(groups)  # torch itself refuses a tensor listed in two groups


def test_group_keys_are_explicit() -> None:
    spec = Spec.from_dict(
        {
            "lr": 0.1,
            "weight_decay": 0.05,
            "hyper": {"momentum": 0.9, "betas": [0.9, 0.95], "eps": 1e-6},
            "rules": [{"prefix": "fc", "lr_mult": 10, "name": "head"}, {"prefix": "layer1", "frozen": True}],
            "no_decay": ["bias", "norm"],
        }
    )
    model = models.resnet18(width=4)
    groups = multilr.build(model, spec, backend="torch")
    plan = groups.plan
    for g, pg in zip(groups, plan.groups, strict=True):
        assert "lr_scale" not in g, f"got an lr_scale key in group {pg.name!r}, should be none [torch: 'lr']"
        keys = set(g) - {"params"}
        should = {"name", "lr", "weight_decay", "momentum", "betas", "eps"}
        assert keys == should, f"got keys {sorted(keys)} in group {pg.name!r}, should be {sorted(should)}"
        assert g["name"] == pg.name, f"got name {g['name']!r}, should be {pg.name!r}"
        want_lr = 0.0 if pg.frozen else pg.lr
        assert g["lr"] == want_lr, f"got lr {g['lr']!r} in {pg.name!r}, should be {want_lr!r}"
        assert g["weight_decay"] == pg.weight_decay, (
            f"got weight_decay {g['weight_decay']!r} in {pg.name!r}, should be {pg.weight_decay!r}"
        )
        assert g["momentum"] == 0.9, f"got momentum {g['momentum']!r} in {pg.name!r}, should be 0.9"
        assert g["betas"] == (0.9, 0.95) and isinstance(g["betas"], tuple), (
            f"got betas {g['betas']!r} in {pg.name!r}, should be the tuple (0.9, 0.95) [YAML gives a list]"
        )
    # the optimizer keeps the spec's values, not its own defaults (betas 0.999, eps 1e-8)
    opt = torch.optim.AdamW(groups)
    for g in opt.param_groups:
        assert (g["betas"], g["eps"]) == ((0.9, 0.95), 1e-6), (
            f"got betas/eps {g['betas']!r}/{g['eps']!r} in {g['name']!r}, should be (0.9, 0.95)/1e-06"
        )
    wds = {g["weight_decay"] for g in groups}
    assert wds == {0.0, 0.05}, f"got weight decays {sorted(wds)}, should be [0.0, 0.05] [no_decay split]"


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_two_builds_line_up_and_checkpoints_load() -> None:
    model_a, model_b = models.resnet18(width=4, seed=0), models.resnet18(width=4, seed=0)
    groups_a = multilr.build(model_a, resnet_spec(), backend="torch")
    groups_b = multilr.build(model_b, resnet_spec(), backend="torch")
    names_a, names_b = [g["name"] for g in groups_a], [g["name"] for g in groups_b]
    assert names_a == names_b, f"got group names {names_b} on the second build, should be {names_a}"
    assert len(set(names_a)) == len(names_a), f"got duplicate group names {names_a}, should be unique"
    assert groups_a.plan.to_dict() == groups_b.plan.to_dict(), "got different plans, should be identical"

    opt_a, opt_b = torch.optim.AdamW(groups_a), torch.optim.AdamW(groups_b)
    _train(model_a, opt_a, steps=2, seed=0)
    # through bytes, as a checkpoint file would be: an in-memory state_dict shares its
    # state tensors with opt_a, and both optimizers would then update them in place
    model_b.load_state_dict(_roundtrip(model_a.state_dict()))
    opt_b.load_state_dict(_roundtrip(opt_a.state_dict()))
    for ga, gb in zip(opt_a.param_groups, opt_b.param_groups, strict=True):
        sa = {k: v for k, v in ga.items() if k != "params"}
        sb = {k: v for k, v in gb.items() if k != "params"}
        assert sa == sb, f"got group {sb} after loading, should be {sa}"
    # state landed on the matching tensors: one more identical step gives identical models
    _train(model_a, opt_a, steps=1, seed=1)
    _train(model_b, opt_b, steps=1, seed=1)
    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb), f"got {name} differing after the resumed step, should be identical"


def test_requires_grad_changes_only_for_frozen_rules() -> None:
    model = models.resnet18(width=4)
    model.bn1.weight.requires_grad_(False)  # the user's own choice, no rule freezes it
    model.layer1[1].conv1.weight.requires_grad_(False)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    spec = Spec(
        lr=0.1,
        rules=[
            Rule(Prefix("layer1"), frozen=True, name="freeze-layer1"),
            Rule(Prefix("layer1.1"), frozen=False, priority=1, name="keep-layer1.1"),
            Rule(Prefix("fc"), lr_mult=10, name="head"),
        ],
    )
    groups = multilr.build(model, spec, backend="torch")
    plan = groups.plan
    for name, p in model.named_parameters():
        should = False if name.startswith("layer1.0.") else before[name]
        assert p.requires_grad == should, (
            f"got requires_grad={p.requires_grad} on {name}, should be {should} "
            f"[was {before[name]}; frozen by rule: {plan.param(name).frozen}]"
        )
    in_groups = {id(t) for g in groups for t in g["params"]}
    for name in ("bn1.weight", "layer1.1.conv1.weight"):
        pp = plan.param(name)
        assert id(model.get_parameter(name)) in in_groups, f"got {name} missing from the groups, should be in"
        assert (pp.requires_grad, pp.frozen) == (False, False), (
            f"got requires_grad/frozen {pp.requires_grad}/{pp.frozen} in the plan for {name}, "
            "should be False/False [user-frozen, not rule-frozen]"
        )
        group = next(g for g in groups if any(t is model.get_parameter(name) for t in g["params"]))
        assert group["lr"] == pp.lr > 0, f"got lr {group['lr']!r} for {name}, should be {pp.lr!r} > 0"


@pytest.fixture(scope="module")
def bert4() -> torch.nn.Module:
    return models.bert(layers=4)


def test_bert_depths_without_within(bert4: torch.nn.Module) -> None:
    plan = multilr.plan(bert4, Spec(lr=1e-3, layer_decay=LayerDecay(0.75)), backend="torch")
    assert plan.max_depth == 5, f"got max_depth {plan.max_depth}, should be 5 [4 layers + embeddings + head]"
    for p in plan.params:
        if p.name.startswith("bert.embeddings."):
            want = 0
        elif p.name.startswith("bert.encoder.layer."):
            want = int(p.name.split(".")[3]) + 1
        else:
            assert p.name.startswith(("bert.pooler.", "classifier.")), f"unexpected parameter {p.name}"
            want = 5
        assert p.depth == want, f"got depth {p.depth} for {p.name}, should be {want}"
        lr = 1e-3 * 0.75 ** (5 - want)
        assert p.lr == pytest.approx(lr, rel=1e-12), f"got lr {p.lr!r} for {p.name}, should be {lr!r}"


def test_bert_depths_with_within_encoder(bert4: torch.nn.Module) -> None:
    """``within`` limits the decay to the encoder; depths still count the whole model.

    Encoder layer ``i`` keeps depth ``i + 1`` of 5 (so even the top layer is decayed once),
    and the parameters outside ``within`` get no depth and the base rate.
    """
    spec = Spec(lr=1e-3, layer_decay=LayerDecay(0.75, within=Prefix("bert.encoder")))
    groups = multilr.build(bert4, spec, backend="torch")
    plan = groups.plan
    assert plan.max_depth == 5, f"got max_depth {plan.max_depth}, should be 5"
    for p in plan.params:
        if p.name.startswith("bert.encoder.layer."):
            depth = int(p.name.split(".")[3]) + 1
            lr = 1e-3 * 0.75 ** (5 - depth)
        else:
            depth, lr = None, 1e-3
        assert p.depth == depth, f"got depth {p.depth} for {p.name}, should be {depth}"
        assert p.lr == pytest.approx(lr, rel=1e-12), f"got lr {p.lr!r} for {p.name}, should be {lr!r}"
    assert len(groups) == 5, f"got {len(groups)} groups, should be 5 [outside-encoder + 4 layers]"
    torch.optim.AdamW(groups)


@pytest.fixture
def lm() -> torch.nn.Module:
    model = models.tied_lm(seed=0)
    assert model.lm_head.weight is model.embed.weight, "got untied weights, should be tied [test model]"
    return model


def test_tied_weight_reported_once(lm: torch.nn.Module) -> None:
    groups = multilr.build(lm, Spec(lr=1e-3, rules=[Rule(Glob("lm_head.*"), lr_mult=5, name="head")]))
    plan = groups.plan
    assert dict(plan.aliases) == {"lm_head.weight": "embed.weight"}, (
        f"got aliases {dict(plan.aliases)}, should be {{'lm_head.weight': 'embed.weight'}}"
    )
    holders = [g["name"] for g in groups for t in g["params"] if t is lm.embed.weight]
    assert holders == ["head"], f"got the tied tensor in groups {holders}, should be in ['head'] once"
    pp = plan.param("lm_head.weight")
    assert pp.name == "embed.weight" and pp.aliases == ("lm_head.weight",), (
        f"got {pp.name!r} aliases {pp.aliases}, should be 'embed.weight' aliases ('lm_head.weight',)"
    )
    assert pp.lr == pytest.approx(5e-3), (
        f"got lr {pp.lr!r} for the tied tensor, should be 5e-3 [lm_head rule]"
    )
    n = sum(len(g["params"]) for g in groups)
    assert n == 27, f"got {n} tensors in the groups, should be 27 [28 names, one tied]"


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(Rule(Prefix("lm_head"), frozen=True), id="prefix"),
        pytest.param(Rule(ModuleType("Linear"), frozen=True, name="linears"), id="module-type"),
    ],
)
def test_rule_on_alias_name_reaches_tied_tensor(lm: torch.nn.Module, rule: Rule) -> None:
    multilr.build(lm, Spec(lr=1e-3, rules=[rule]))
    assert not lm.embed.weight.requires_grad, (
        f"got requires_grad=True on the tied embed/lm_head tensor, should be False [{rule.name} via alias]"
    )


def test_tied_rates_by_alias(lm: torch.nn.Module) -> None:
    plan = multilr.plan(lm, Spec(lr=1e-3, rates={"lm_head.weight": 0.5}))
    got = plan.param("embed.weight").lr
    assert got == 0.5, f"got lr {got!r} for embed.weight, should be 0.5 [rates given under the alias]"
    with pytest.raises(multilr.ConflictError, match=r"lm_head\.weight") as err:
        multilr.plan(lm, Spec(lr=1e-3, rates={"embed.weight": 0.1, "lm_head.weight": 0.5}))
    assert "embed.weight" in str(err.value), f"got {err.value}, should name 'embed.weight' too"


def test_tied_conflicting_rules_name_both(lm: torch.nn.Module) -> None:
    spec = Spec(
        lr=1e-3,
        rules=[Rule(Prefix("embed"), lr_mult=2, name="emb"), Rule(Prefix("lm_head"), lr_mult=5, name="out")],
    )
    with pytest.raises(multilr.ConflictError) as err:
        multilr.build(lm, spec)
    for word in ("'emb'", "'out'", "embed.weight"):
        assert word in str(err.value), f"got message {str(err.value)!r}, should mention {word}"


def test_build_does_not_copy_tensors() -> None:
    model = models.mlp()
    snapshot = copy.deepcopy(model.state_dict())
    groups = multilr.build(model, Spec(lr=0.1, rules=[Rule(Prefix("layer2"), lr_mult=3)]))
    params = [t for g in groups for t in g["params"]]
    assert all(any(t is p for p in model.parameters()) for t in params), (
        "got tensors in the groups that are not the model's own, should be the same objects"
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshot[k]), f"got {k} changed by build, should be untouched"


def test_user_frozen_params_do_not_shift_depths() -> None:
    """Depth comes from the module tree, not from which tensors train (timm 2691)."""
    spec = Spec(lr=0.1, layer_decay=LayerDecay(0.8))
    model = models.resnet18(width=4)
    full = multilr.plan(model, spec)
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    partial = multilr.plan(model, spec)
    got = {p.name: (p.depth, p.lr) for p in partial.params}
    should = {p.name: (p.depth, p.lr) for p in full.params}
    diff = sorted(n for n in should if got[n] != should[n])
    assert not diff, (
        f"got depth/lr {[got[n] for n in diff[:3]]} for {diff[:3]}, should be {[should[n] for n in diff[:3]]}"
    )
    assert full.max_depth == 9, f"got max_depth {full.max_depth}, should be 9 [stem, 8 blocks, fc]"


def test_backend_inferred_from_a_torch_model():
    import models

    import multilr

    model = models.mlp()
    groups = multilr.build(model, multilr.Spec(lr=0.5))
    assert groups.backend == "torch", f"got backend {groups.backend!r}, should be 'torch' [inferred]"
    assert multilr.infer_backend(models.bert(layers=1)) == "torch", "a transformers model is a torch model"


class _Owned(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 3)


class _BackReference(torch.nn.Module):
    """A child that keeps its parent as an attribute: torch registers the parent inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.child = _Owned()
        self.child.owner = self
        self.head = torch.nn.Linear(3, 2)


def test_a_module_holding_its_parent_is_walked_once() -> None:
    model = _BackReference()
    groups = multilr.build(model, {"lr": 0.1, "layer_decay": {"decay": 0.5}})
    expected = [n for n, _ in model.named_parameters()]  # torch's memo walks the loop once too
    assert [p.name for p in groups.plan.params] == expected
    assert sorted(map(id, (p for g in groups for p in g["params"]))) == sorted(map(id, model.parameters()))
    assert [g.lr for g in groups.plan.groups] == [0.025, 0.05, 0.1]


def test_a_tree_deeper_than_the_recursion_limit_is_walked() -> None:
    deep: torch.nn.Module = torch.nn.Linear(2, 2)
    for _ in range(1500):  # deeper than Python's default limit of 1,000 frames
        deep = torch.nn.Sequential(deep)
    groups = multilr.build(deep, {"lr": 0.1, "rules": [{"glob": "*.bias", "lr_mult": 3}]})
    weight, bias = groups.plan.params
    assert weight.name == "0." * 1500 + "weight" and bias.lr == pytest.approx(0.3)
    leaf = deep
    while isinstance(leaf, torch.nn.Sequential):
        leaf = leaf[0]
    assert [g["params"] for g in groups] == [[leaf.weight], [leaf.bias]]


@pytest.mark.parametrize(
    ("mode", "depths"),
    [
        # "blocks" opens every block that holds a stack: one depth per T5 sublayer
        pytest.param("blocks", {"encoder.block.0.layer.0": 1, "encoder.block.0.layer.1": 2,
                                "encoder.block.1.layer.1": 4, "decoder.block.0.layer.2": 7,
                                "decoder.final_layer_norm": 11}, id="blocks"),
        # "outer": the blocks are block.i, whatever they hold
        pytest.param("outer", {"encoder.block.0.layer.0": 1, "encoder.block.0.layer.1": 1,
                               "encoder.block.1.layer.1": 2, "decoder.block.0.layer.2": 3,
                               "decoder.final_layer_norm": 5}, id="outer"),
    ],
)  # fmt: skip
def test_t5_depths_per_mode(mode: str, depths: dict[str, int]) -> None:
    model = models.t5(layers=2)
    groups = multilr.build(model, Spec(lr=1.0, layer_decay=LayerDecay(0.5, depth=mode)))
    plan = groups.plan
    for prefix, depth in depths.items():
        params = [p for p in plan.params if p.name.startswith(prefix + ".") or p.name == prefix + ".weight"]
        assert params and {p.depth for p in params} == {depth}, (prefix, {p.depth for p in params})
        assert {p.lr for p in params} == {0.5 ** (plan.max_depth - depth)}
    assert plan.param("shared.weight").depth == 0  # tied to embed_tokens and lm_head: the stem
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def _hf_cnn(kind: str) -> torch.nn.Module:
    import transformers as tf

    small = {"hidden_sizes": [8, 8, 8, 8], "num_channels": 3}
    if kind == "convnext":
        return tf.ConvNextModel(tf.ConvNextConfig(depths=[2, 2, 3, 2], **small))
    if kind == "regnet-y":
        config = tf.RegNetConfig(depths=[2, 2, 3, 2], groups_width=8, layer_type="y", embedding_size=8, **small)
        return tf.RegNetModel(config)
    layer_type = "bottleneck" if kind == "resnet-bottleneck" else "basic"
    return tf.ResNetModel(tf.ResNetConfig(depths=[2, 2, 3, 2], layer_type=layer_type, embedding_size=8, **small))


@pytest.mark.parametrize("kind", ["resnet-bottleneck", "resnet-basic", "regnet-y", "convnext"])
def test_transformers_cnns_get_one_depth_per_residual_block(kind: str) -> None:
    # HF keeps a residual block's convolutions in a numbered run (layers.j.layer.0..2,
    # each a conv with its norm; RegNet-Y adds a squeeze-excitation): that run is the
    # block's layers, so 9 blocks give depths 1..9, not one per convolution (27 for the
    # bottleneck). ConvNeXt's blocks (layers.j: four layers each) are blocks as they were.
    plan = multilr.plan(_hf_cnn(kind), Spec(lr=1.0, layer_decay=LayerDecay(0.5)), backend="torch")
    blocks: dict[str, set[int]] = {}
    for p in plan.params:
        parts = p.name.split(".")
        if parts[:2] == ["encoder", "stages"] and parts[3] == "layers":
            blocks.setdefault(".".join(parts[:5]), set()).add(p.depth)
        elif p.name.startswith(("embedder.", "embeddings.")):
            assert p.depth == 0, p.name
        elif "downsampling_layer" in p.name:  # ConvNeXt, between stages: the block before it
            assert p.depth == max(map(max, blocks.values())), p.name
        else:
            assert p.depth == 10, p.name
    assert list(blocks.values()) == [{d} for d in range(1, 10)], blocks
    assert plan.max_depth == (10 if kind == "convnext" else 9)  # ConvNeXt's final layernorm: the head


@pytest.mark.parametrize("kind", ["wav2vec2", "segformer"])
def test_transformers_runs_of_layers_beside_the_blocks_are_stem_and_head(kind: str) -> None:
    # wav2vec2's conv feature encoder (conv_layers.k: a conv, maybe a norm) and Segformer's
    # decode head (linear_projections.k: one Linear each) are numbered runs of layers beside
    # the model's blocks: the stem and the head, not blocks (before, the encoder lifted the
    # transformer layers by 3 depths and the decode head lowered the backbone by 4)
    import transformers

    torch.manual_seed(0)
    if kind == "wav2vec2":
        model: torch.nn.Module = transformers.Wav2Vec2Model(
            transformers.Wav2Vec2Config(
                num_hidden_layers=2, hidden_size=8, num_attention_heads=2, intermediate_size=16, conv_dim=(4, 4, 4),
                conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
            )
        )  # fmt: skip
        run, block, n_blocks, place = "feature_extractor.", r"encoder\.layers\.(\d+)\.", 2, 0
    else:
        model = transformers.SegformerForSemanticSegmentation(
            transformers.SegformerConfig(
                hidden_sizes=[8, 8, 8, 8], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=8, depths=[2, 2, 2, 2]
            )
        )
        run, block, n_blocks, place = "decode_head.", r"segformer\.stages\.(\d)\.blocks\.(\d)\.", 8, 9
    plan = multilr.plan(model, Spec(lr=1.0, layer_decay=LayerDecay(0.5)), backend="torch")
    blocks: dict[tuple[str, ...], set[int]] = {}
    for p in plan.params:
        found = re.match(block, p.name)
        if found:
            blocks.setdefault(found.groups(), set()).add(p.depth)
        elif p.name.startswith(run):
            assert p.depth == place, p.name
    assert list(blocks.values()) == [{d} for d in range(1, n_blocks + 1)], blocks
    assert plan.max_depth == max(n_blocks, place)  # wav2vec2 has nothing after its layers


def test_transformers_poolformers_patch_embeddings_go_in_with_their_stages() -> None:
    # PoolFormer registers encoder.patch_embeddings.i (one conv each) as a list before
    # encoder.block.i: each goes in just before its stage (blocks 1..4 before)
    import transformers

    torch.manual_seed(0)
    model = transformers.PoolFormerModel(transformers.PoolFormerConfig(hidden_sizes=[8, 8, 8, 8], depths=[2, 2, 2, 2]))
    plan = multilr.plan(model, Spec(lr=1.0, layer_decay=LayerDecay(0.5)), backend="torch")
    depth = {p.name: p.depth for p in plan.params}
    assert [depth[f"encoder.patch_embeddings.{i}.projection.weight"] for i in range(4)] == [0, 2, 4, 6]
    assert [depth[f"encoder.block.{i}.{j}.before_norm.weight"] for i in range(4) for j in range(2)] == list(range(1, 9))


def test_transformers_pvts_patch_embeddings_go_in_with_their_stages() -> None:
    # PVT registers encoder.patch_embeddings.i (a conv, a norm, a position embedding: a
    # stack of its own) before encoder.block.i.j: each goes in just before its stage,
    # where PVT v2 nests it (blocks 1..4 before, the stages' blocks 5..12)
    import transformers

    torch.manual_seed(0)
    config = transformers.PvtConfig(
        hidden_sizes=[8, 8, 8, 8], num_attention_heads=[1, 1, 2, 2], depths=[2, 2, 2, 2], image_size=32, num_labels=3
    )
    model = transformers.PvtForImageClassification(config)
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5))
    depth = {p.name: p.depth for p in multilr.plan(model, spec, backend="torch").params}
    embeds = [depth[f"pvt.encoder.patch_embeddings.{i}.projection.weight"] for i in range(4)]
    assert embeds == [0, 2, 4, 6]
    blocks = [depth[f"pvt.encoder.block.{i}.{j}.mlp.dense1.weight"] for i in range(4) for j in range(2)]
    assert blocks == list(range(1, 9))
    assert depth["classifier.weight"] == 9
    outer = multilr.plan(model, Spec(lr=1.0, layer_decay=LayerDecay(0.5, depth="outer")), backend="torch")
    depth = {p.name: p.depth for p in outer.params}
    assert [depth[f"pvt.encoder.patch_embeddings.{i}.projection.weight"] for i in range(4)] == [0, 1, 2, 3]
    assert [depth[f"pvt.encoder.block.{i}.1.mlp.dense1.weight"] for i in range(4)] == [1, 2, 3, 4]


def test_a_transformers_vits_class_token_and_position_embeddings_are_embeddings() -> None:
    # nn.Parameters on ViTEmbeddings (no nn.Embedding holds them): the "embedding" class
    # keeps them out of weight decay, as timm's no_weight_decay() does; the patch
    # projection (a Conv2d under it) stays decayed
    import transformers

    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=16, patch_size=8
    )
    model = transformers.ViTModel(config)
    groups = multilr.build(model, Spec(lr=0.1, weight_decay=0.5, no_decay=("embedding",)))
    wd = {p.name: p.weight_decay for p in groups.plan.params}
    assert wd["embeddings.cls_token"] == wd["embeddings.position_embeddings"] == 0.0
    assert wd["embeddings.patch_embeddings.projection.weight"] == 0.5
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.5 for p in g["params"]}
    assert id(model.embeddings.cls_token) not in decayed
    assert id(model.embeddings.patch_embeddings.projection.weight) in decayed


def test_layer_decay_within_a_backbone_counts_only_the_backbones_blocks() -> None:
    # DPT: the neck's fusion_stage.layers.k are residual blocks (a stack of blocks, not a
    # run of layers); counted, they push the backbone's last layer from 0.5x down to 0.5**5x
    # (mmseg's layer-decay constructor: head 1x, last block `decay`)
    import transformers

    torch.manual_seed(0)
    model = transformers.DPTForDepthEstimation(
        transformers.DPTConfig(
            num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=16, image_size=32,
            patch_size=8, backbone_out_indices=[0, 1, 1, 1], neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8,
            head_hidden_size=8, reassemble_factors=[4, 2, 1, 0.5],
        )
    )  # fmt: skip
    last, embedding = "dpt.encoder.layer.1.output.dense.weight", "dpt.embeddings.cls_token"
    without = {p.name: p.lr for p in multilr.plan(model, Spec(lr=1.0, layer_decay=LayerDecay(0.5))).params}
    assert without[last] == pytest.approx(0.5**5)  # 4 fusion blocks and the head above it
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, within=Prefix("dpt")))
    groups = multilr.build(model, spec)
    rate = {p.name: p.lr for p in groups.plan.params}
    assert rate[last] == pytest.approx(0.5)
    assert rate[embedding] == pytest.approx(0.5**3)  # 2 layers + head
    assert {rate[n] for n in rate if n.startswith(("neck.", "head."))} == {1.0}
    # what torch is handed
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lrs[id(model.dpt.embeddings.cls_token)] == pytest.approx(0.5**3)


def test_a_decode_head_of_runs_of_layers_needs_no_within() -> None:
    # UperNet on a ConvNeXt: the decode head's psp_modules / lateral_convs / fpn_convs are
    # numbered runs of layers (a conv and its norm each), no stack beside the backbone's
    # blocks: the head at 1x and the backbone's last block at 0.75x, with `within` or not
    import transformers

    torch.manual_seed(0)
    backbone = transformers.ConvNextConfig(
        num_stages=4, hidden_sizes=[4, 4, 8, 8], depths=[1, 1, 2, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    model = transformers.UperNetForSemanticSegmentation(
        transformers.UperNetConfig(backbone_config=backbone, hidden_size=8, auxiliary_in_channels=8, num_labels=3)
    )
    for within in (None, Prefix("backbone")):
        plan = multilr.plan(model, Spec(lr=1.0, layer_decay=LayerDecay(0.75, within=within)))
        rate = {p.name: p.lr for p in plan.params}
        assert rate["backbone.encoder.stages.3.layers.0.pwconv2.weight"] == pytest.approx(0.75)
        assert rate["backbone.embeddings.patch_embeddings.weight"] == pytest.approx(0.75**6)  # 5 blocks + head
        assert {rate[n] for n in rate if n.startswith(("decode_head.", "auxiliary_head."))} == {1.0}


@pytest.mark.parametrize("model_name", ["opt", "bart"])
def test_layer_decay_place_puts_out_of_order_norms_where_they_run(model_name: str) -> None:
    # OPT registers its final norm before the layers (inferred: the stem); BART's decoder
    # registers layernorm_embedding after its layers (inferred: the head). One `place` line
    # each puts them where they run; the rest keeps its inferred depth.
    import transformers

    torch.manual_seed(0)
    if model_name == "opt":
        model: torch.nn.Module = transformers.OPTForCausalLM(
            transformers.OPTConfig(
                vocab_size=40, hidden_size=8, num_hidden_layers=2, ffn_dim=16, num_attention_heads=2,
                max_position_embeddings=16, word_embed_proj_dim=8,
            )
        )  # fmt: skip
        moved, place = "model.decoder.final_layer_norm.weight", {"*.decoder.final_layer_norm.*": "head"}
        # stem, 2 layers, the head: nothing was there (lm_head is tied to the embedding)
        inferred, placed, top = 0, 3, 3
    else:
        model = transformers.BartForConditionalGeneration(
            transformers.BartConfig(
                vocab_size=40, d_model=8, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=16,
            )
        )  # fmt: skip
        moved = "model.decoder.layernorm_embedding.weight"
        place = {"model.encoder.layernorm_embedding.*": "stem", "model.decoder.layernorm_embedding.*": 2}
        # after the 4 layers (the head, 5); placed with the decoder's embeddings, below its
        # layers: nothing is left above the last layer (4)
        inferred, placed, top = 5, 2, 4
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5))
    assert multilr.plan(model, spec).param(moved).depth == inferred
    groups = multilr.build(model, Spec(lr=1.0, layer_decay=LayerDecay(0.5, place=place)))
    assert (groups.plan.param(moved).depth, groups.plan.max_depth) == (placed, top)
    # what torch is handed, and what an SGD step applies
    tensor = dict(model.named_parameters())[moved]
    opt = torch.optim.SGD(groups, lr=1.0)
    tensor.grad = torch.ones_like(tensor)
    was = tensor.detach().clone()
    opt.step()
    assert (was - tensor.detach()).mean().item() == pytest.approx(0.5 ** (top - placed))


def test_clips_two_towers_each_decay_over_their_own_layers() -> None:
    # EVA-CLIP's recipe: the image and the text encoder each get their own layer-wise decay
    # (layer id 0 = embeddings .. layers + 1 = after the layers, scale decay ** (layers + 1 - id));
    # logit_scale and the projections train at the base rate
    import transformers

    torch.manual_seed(0)
    text = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2}
    vision = {**text, "num_hidden_layers": 3, "image_size": 8, "patch_size": 4}
    config = transformers.CLIPConfig(
        text_config={**text, "vocab_size": 20}, vision_config=vision, projection_dim=4
    )
    model = transformers.CLIPModel(config).double()
    towers = {"vision_model": (0.5, 3), "text_model": (0.8, 2)}

    def eva_clip(name: str) -> float:
        tower, _, rest = name.partition(".")
        if tower not in towers:
            return 1.0
        decay, layers = towers[tower]
        if rest.startswith("encoder.layers."):
            layer_id = int(rest.split(".")[2]) + 1
        else:  # embeddings (and CLIP's pre_layrnorm) below the layers, the final norms above
            layer_id = 0 if rest.startswith(("embeddings.", "pre_layrnorm.")) else layers + 1
        return float(decay ** (layers + 1 - layer_id))

    spec = Spec(
        lr=0.1,
        layer_decay=[
            LayerDecay(0.5, within=Prefix("vision_model")),
            LayerDecay(0.8, within=Prefix("text_model")),
        ],
    )
    groups = multilr.build(model, spec)
    expected = {n: 0.1 * eva_clip(n) for n, _ in model.named_parameters()}
    assert {p.name: p.lr for p in groups.plan.params} == pytest.approx(expected, rel=1e-12)
    # the rates torch applies, read from one plain SGD step with known gradients
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    torch.optim.SGD(groups).step()
    applied = {n: float((before[n] - p.detach()).mean()) for n, p in model.named_parameters()}
    assert applied == pytest.approx(expected, rel=1e-9)
    # a layer of each tower: the same depth, each its own tower's factor and group
    for tower, (decay, layers) in towers.items():
        deepest = groups.plan.param(f"{tower}.encoder.layers.{layers - 1}.mlp.fc1.weight")
        assert (deepest.depth, deepest.group) == (layers, f"{tower}/depth{layers}")
        assert deepest.lr == pytest.approx(0.1 * decay)
    # fastai-style unfreezing from the top runs in both towers at once (aligned at their tops)
    ctl = multilr.Controller(torch.optim.SGD(groups), groups)
    ctl.freeze_to(-1)
    training = {n for n, p in model.named_parameters() if p.requires_grad}
    assert training == {n for n, rate in expected.items() if rate == pytest.approx(0.1)}
    ctl.freeze_to(-2)
    training = {n for n, p in model.named_parameters() if p.requires_grad}
    top_two = [0.1, *(0.1 * decay for decay, _ in towers.values())]
    assert training == {n for n, rate in expected.items() if any(rate == pytest.approx(r) for r in top_two)}
