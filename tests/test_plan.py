import dataclasses
import json

import pytest

from multilr import (
    ConflictError,
    CoverageError,
    Glob,
    LayerDecay,
    ModuleType,
    ParamInfo,
    PlanError,
    Predicate,
    Prefix,
    Regex,
    Rule,
    Spec,
    Spread,
    plan,
)

from ._infos import bert_like, info, resnet_like, tied_lm


def test_every_parameter_exactly_once():
    infos = resnet_like()
    p = plan(infos, Spec(lr=0.1, no_decay=("bias", "norm"), layer_decay=LayerDecay(0.9)))
    names = [n for g in p.groups for n in g.params]
    assert sorted(names) == sorted(i.name for i in infos), "every tensor in exactly one group"
    assert len(names) == len(set(names)) == 62


def test_no_decay_class_merges_when_base_decay_is_zero():
    p = plan(resnet_like(), Spec(lr=1, no_decay=("bias", "norm")))
    assert len(p.groups) == 1, "no_decay gives 0.0, equal to the base 0.0: one group"


def test_fewest_groups_merge_identical_settings():
    # seed 000's top-level recipe: 7 top-level children -> 7 distinct rates -> 7 groups
    p = plan(resnet_like(), Spec(lr=1e-2, layer_decay=LayerDecay(0.9, depth="top")))
    assert len(p.groups) == 7, f"got {len(p.groups)} groups, should be 7"
    # two rules with the same multiplier share a group
    p = plan(resnet_like(), Spec(lr=1, rules=[Rule("layer1.*", lr_mult=0.5), Rule("layer2.*", lr_mult=0.5)]))
    assert [(g.name, len(g.params)) for g in p.groups] == [("default", 35), ("glob:layer1.*", 27)]


def test_seed_000_recipe_rates():
    p = plan(resnet_like(), Spec(lr=1e-2, layer_decay=LayerDecay(0.9, depth="top")))
    r = p.rates()
    assert r["fc.weight"] == pytest.approx(1e-2)
    assert r["layer4.0.conv1.weight"] == pytest.approx(1e-2 * 0.9)
    assert r["conv1.weight"] == pytest.approx(1e-2 * 0.9**6)
    # the per-tensor version: 62 rates, 1e-2 on fc.bias down to 1e-2 * 0.9**61 on conv1.weight
    r = plan(resnet_like(), Spec(lr=1e-2, layer_decay=LayerDecay(0.9, depth="tensor"))).rates()
    assert r["fc.bias"] == pytest.approx(1e-2) and r["conv1.weight"] == pytest.approx(1e-2 * 0.9**61)
    assert len(set(r.values())) == 62


def test_seed_001_per_tensor_rates():
    infos = [info("layer1.weight", (20, 10)), info("layer1.bias", (20,)), info("layer2.weight", (1, 20)),
             info("layer2.bias", (1,))]
    rates = {"layer1.weight": 0.01, "layer1.bias": 0.1, "layer2.weight": 0.001, "layer2.bias": 1.0}
    p = plan(infos, Spec(lr=0.01, rates=rates))
    assert p.rates() == rates, f"got {p.rates()}, should be {rates}"
    assert [g.name for g in p.groups] == [f"rates[{n}]" for n in rates]


def test_head_backbone_split_with_layer_decay_on_encoder():
    spec = Spec(
        lr=1e-3,
        weight_decay=0.01,
        no_decay=("bias", "norm"),
        rules=[Rule(Prefix("bert"), lr_mult=0.1, name="backbone"),
               Rule(Prefix("bert.embeddings"), frozen=True, name="stem")],
        layer_decay=LayerDecay(0.75, within=Prefix("bert.encoder")),
    )
    p = plan(bert_like(layers=3), spec)
    r = p.rates()
    assert r["classifier.weight"] == pytest.approx(1e-3)
    assert r["bert.pooler.dense.weight"] == pytest.approx(1e-4), "pooler: backbone, not decayed"
    # 3 layers: embeddings 0, layers 1..3, head 4
    assert r["bert.encoder.layer.2.output.dense.weight"] == pytest.approx(1e-4 * 0.75**1)
    assert r["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(1e-4 * 0.75**3)
    assert r["bert.embeddings.word_embeddings.weight"] == 0.0
    emb = p.param("bert.embeddings.word_embeddings.weight")
    assert emb.frozen and emb.frozen_source == "stem" and emb.scale == pytest.approx(0.1)
    assert p.param("bert.encoder.layer.0.attention.self.query.bias").weight_decay == 0.0
    assert p.param("bert.encoder.layer.0.output.dense.weight").weight_decay == 0.01


def test_absolute_rate_ignores_layer_decay():
    p = plan(bert_like(), Spec(lr=1.0, rules=[Rule(Prefix("classifier"), lr=0.5)], layer_decay=LayerDecay(0.5)))
    assert p.rates()["classifier.weight"] == 0.5
    assert p.param("classifier.weight").depth is None


def test_spread_over_named_rules():
    spec = Spec(lr=1e-3, rules=[Rule(Prefix("conv1"), frozen=False, name="stem"),
                                Rule(Regex(r"^layer"), frozen=False, name="body"),
                                Rule(Prefix("fc"), frozen=False, name="head")],
                spread=Spread(1e-5, 1e-3, over=("stem", "body", "head")), unmatched="error")
    with pytest.raises(CoverageError, match=r"2 parameter\(s\) match no rule.*'bn1.weight'"):
        plan(resnet_like(), spec)
    spec = Spec(**{**spec.__dict__, "unmatched": "default"})
    r = plan(resnet_like(), spec).rates()
    assert (r["conv1.weight"], r["layer1.0.conv1.weight"], r["fc.bias"], r["bn1.weight"]) == pytest.approx(
        (1e-5, 1e-4, 1e-3, 1e-3))


def test_precedence_rates_over_rules_over_default():
    spec = Spec(lr=1.0, weight_decay=0.1, no_decay=("bias",),
                rules=[Rule(Prefix("fc"), lr_mult=3, weight_decay=0.5, name="head")], rates={"fc.bias": 0.25})
    p = plan(resnet_like(), spec)
    assert p.param("fc.bias").lr == 0.25 and p.param("fc.weight").lr == 3
    assert p.param("fc.bias").weight_decay == 0.5, "a rule's weight_decay wins over the no_decay class"
    assert p.param("layer1.0.bn1.bias").weight_decay == 0.0
    assert p.param("conv1.weight").weight_decay == 0.1


def test_weight_decay_classes():
    infos = bert_like()
    for classes, name, wd in [
        (("bias",), "bert.pooler.dense.bias", 0.0),
        (("norm",), "bert.embeddings.LayerNorm.weight", 0.0),
        (("1d",), "bert.embeddings.LayerNorm.weight", 0.0),
        (("embedding",), "bert.embeddings.word_embeddings.weight", 0.0),
        (("bias",), "bert.embeddings.LayerNorm.weight", 0.3),
        (("norm",), "bert.pooler.dense.bias", 0.3),
    ]:
        got = plan(infos, Spec(lr=1, weight_decay=0.3, no_decay=classes)).param(name).weight_decay
        assert got == wd, f"got {got}, should be {wd} [{classes} on {name}]"


@pytest.mark.parametrize(
    ("cls", "family", "member"),
    [
        (("LayerNorm",), "norm", True),
        (("MambaRMSNormGated",), "norm", True),  # Mamba2's gated RMS norm
        (("LlamaRMSNorm",), "norm", True),
        (("Normal",), "norm", False),
        (("NormGate",), "norm", False),
        (("BatchNorm2D",), "norm", True),  # PaddlePaddle
        (("LayerNormalization",), "norm", True),  # Keras
        (("BatchNormalization",), "norm", True),
        (("Normalizer",), "norm", False),
        (("Embedding",), "embedding", True),
        (("ViTEmbeddings",), "embedding", True),  # owns cls_token / position_embeddings
        (("EmbeddingBag",), "embedding", True),
        (("Embedder",), "embedding", False),
        (("EmbeddingsProjection",), "embedding", False),
    ],
    ids=lambda x: x[0] if isinstance(x, tuple) else str(x),
)
def test_module_type_families(cls: tuple[str, ...], family: str, member: bool) -> None:
    infos = [ParamInfo("m.w", (4,), "float32", "m", cls, True, "m.w"), info("fc.weight")]
    p = plan(infos, Spec(lr=1, weight_decay=0.3, no_decay=(family,)))
    assert (p.param("m.w").weight_decay == 0.0) is member


def test_module_type_and_predicate_selectors():
    p = plan(resnet_like(), Spec(lr=1, rules=[Rule(ModuleType("BatchNorm2d"), lr_mult=0.5, name="bn"),
                                               Rule(Predicate(lambda n, i: i.ndim == 4, "4d"), lr_mult=2)]))
    assert p.param("layer3.1.bn2.bias").lr == 0.5 and p.param("layer3.1.conv2.weight").lr == 2
    assert p.param("fc.weight").lr == 1
    # the plan's JSON report names the predicate (its spec has no file form, the report has)
    report = json.loads(p.to_json())
    assert report["spec"]["rules"][1] == {"predicate": "4d", "lr_mult": 2.0}
    assert {g["name"] for g in report["groups"]} == {g.name for g in p.groups}


def test_an_error_inside_a_predicate_names_the_selector_and_the_parameter():
    def wide(name, info):
        return info.shape[1] > 4  # a 1-D tensor has no shape[1]

    with pytest.raises(PlanError, match=r"'predicate:wide' raised IndexError on parameter '[\w.]+' \(shape \[\d+\]\)"):
        plan(resnet_like(), Spec(lr=1, rules=[Rule(Predicate(wide, "wide"), lr_mult=2)]))


def test_conflict_names_both_rules_and_the_parameter():
    spec = Spec(lr=1, rules=[Rule(Prefix("layer1"), lr_mult=0.1, name="early"),
                             Rule(Regex(r"\.bn1\."), lr_mult=0.5, name="bn")])
    with pytest.raises(ConflictError, match=r"parameter 'layer1.0.bn1.weight': rules 'early' \(lr_mult=0.1\) and "
                                            r"'bn' \(lr_mult=0.5\) both set its rate"):
        plan(resnet_like(), spec)


def test_conflicting_frozen_and_weight_decay():
    with pytest.raises(ConflictError, match=r"'fc.weight'.*'a'.*'b'.*frozen"):
        plan(resnet_like(), Spec(lr=1, rules=[Rule("fc.*", frozen=True, name="a"),
                                              Rule("fc.w*", frozen=False, name="b")]))
    with pytest.raises(ConflictError, match=r"'fc.bias'.*weight_decay"):
        plan(resnet_like(), Spec(lr=1, rules=[Rule("fc.*", weight_decay=0.1, name="a"),
                                              Rule("*.bias", weight_decay=0.0, name="b")]))


def test_priority_resolves_a_conflict_and_equal_values_agree():
    spec = Spec(lr=1, rules=[Rule(Prefix("layer1"), lr_mult=0.1, name="early"),
                             Rule(Regex(r"\.bn1\."), lr_mult=0.5, name="bn", priority=1),
                             Rule(Prefix("layer1.0"), lr_mult=0.1, name="same")])
    p = plan(resnet_like(), spec)
    assert p.param("layer1.0.bn1.weight").lr == 0.5 and p.param("layer1.0.conv1.weight").lr == pytest.approx(0.1)
    assert p.param("layer1.0.conv1.weight").rate_source.startswith("early")


def test_rule_matching_nothing_is_an_error_unless_optional():
    spec = Spec(lr=1, rules=[Rule(Prefix("head"), lr_mult=10, name="head")])
    with pytest.raises(CoverageError, match=r"rule 'head' matches no parameter.*optional"):
        plan(resnet_like(), spec)
    spec = Spec(lr=1, rules=[Rule(Prefix("head"), lr_mult=10, name="head", optional=True)])
    assert len(plan(resnet_like(), spec).groups) == 1


@pytest.mark.parametrize(
    "select",
    [Prefix("module.fc"), Glob("_orig_mod.layer1.*"), Regex(r"^module\.fc\.")],
    ids=["ddp-prefix", "compile-glob", "ddp-regex"],
)
def test_a_selector_with_a_wrappers_prefix_gets_told_the_names_are_the_models_own(select):
    spec = Spec(lr=1, rules=[Rule(select, lr_mult=10, name="head")])
    with pytest.raises(CoverageError, match=r"optional; names are the model's own: .*'module\.' or '_orig_mod\.'"):
        plan(resnet_like(), spec)
    within = Spec(lr=1, layer_decay=LayerDecay(0.5, within=select))
    with pytest.raises(CoverageError, match=r"layer_decay\.within .*names are the model's own"):
        plan(resnet_like(), within)


def test_no_wrapper_hint_where_the_names_carry_the_prefix_or_the_selector_does_not():
    # a model whose own names start with "module." is not behind a wrapper
    names = [info("module.fc.weight"), info("module.fc.bias")]
    with pytest.raises(CoverageError) as caught:
        plan(names, Spec(lr=1, rules=[Rule(Prefix("module.head"), lr_mult=10)]))
    assert "names are the model's own" not in str(caught.value)
    with pytest.raises(CoverageError) as caught:
        plan(resnet_like(), Spec(lr=1, rules=[Rule(Prefix("head"), lr_mult=10)]))
    assert "names are the model's own" not in str(caught.value)


@pytest.mark.parametrize(
    ("select", "hint"),
    [
        pytest.param(Prefix("layer*"), r"a prefix is a module path, not a pattern: use glob 'layer\*'", id="prefix-pattern"),
        pytest.param(Glob("fc"), r"a glob matches the whole dotted name: use glob 'fc\.\*' or prefix 'fc'", id="glob-stem"),
        pytest.param(Glob("layer1.*.conv1"), r"use glob 'layer1\.\*\.conv1\.\*'$", id="glob-no-tail"),
        pytest.param(ModuleType("nn.Conv2d"), r"class names as the model's modules have them: 'Conv2d', not 'nn.Conv2d'",
                     id="dotted-class"),
        pytest.param(ModuleType("batchnorm2d"), r"case-sensitive: the model has 'BatchNorm2d'", id="class-case"),
        pytest.param(ModuleType("BatchNrm2d"), r"did you mean 'BatchNorm2d'\?", id="class-typo"),
        pytest.param(ModuleType("BasicBlock"), r"holding a tensor itself .*, here Conv2d, BatchNorm2d, Linear, or the families "
                     r"'norm', 'embedding'; for a block class .* by prefix or glob", id="class-absent"),
    ],
)
def test_a_selector_that_matches_nothing_says_what_was_probably_meant(select, hint):
    with pytest.raises(CoverageError, match=r"rule 'r' matches no parameter .*" + hint):
        plan(resnet_like(), Spec(lr=1, rules=[Rule(select, lr_mult=10, name="r")]))


def test_no_hint_where_nothing_close_would_match():
    with pytest.raises(CoverageError) as caught:
        plan(resnet_like(), Spec(lr=1, rules=[Rule(Glob("*.bais"), lr_mult=10, name="r")]))
    assert str(caught.value).endswith("mark it optional")


def test_module_type_takes_a_class_for_its_name():
    class BatchNorm2d:  # any class: only its name is compared, as in a spec file
        pass

    assert ModuleType(BatchNorm2d) == ModuleType("BatchNorm2d")
    p = plan(resnet_like(), Spec(lr=1, rules=[Rule(ModuleType(BatchNorm2d), lr_mult=0.5, name="bn")]))
    assert p.param("layer1.0.bn1.weight").lr == 0.5 and p.param("fc.weight").lr == 1


def test_unknown_rates_name():
    with pytest.raises(CoverageError, match=r"rates: no parameter named 'fc.weigth' \(did you mean 'fc.weight'\?\)"):
        plan(resnet_like(), Spec(lr=1, rates={"fc.weigth": 0.1}))


def test_unmatched_policy():
    spec = Spec(lr=1, rules=[Rule(Prefix("fc"), lr_mult=10)], unmatched="error")
    with pytest.raises(CoverageError, match=r"60 parameter\(s\) match no rule.*'conv1.weight'.*rules: prefix:fc"):
        plan(resnet_like(), spec)
    p = plan(resnet_like(), Spec(lr=1, rules=[Rule(Prefix("fc"), lr_mult=10)]))
    assert p.param("conv1.weight").group == "default" and p.param("conv1.weight").rate_source == "default"


def test_empty_model():
    with pytest.raises(CoverageError, match=r"no parameters"):
        plan([], Spec(lr=1))


def test_duplicate_name_from_a_broken_backend():
    with pytest.raises(PlanError, match=r"'a' appears twice"):
        plan([info("a", key=1), info("a", key=2)], Spec(lr=1))


def test_tied_parameters_counted_once_and_reported():
    p = plan(tied_lm(), Spec(lr=1, rules=[Rule(Prefix("lm_head"), lr_mult=0.5, name="head")]))
    assert p.aliases == {"lm_head.weight": "embed.weight"}
    assert p.param("lm_head.weight").name == "embed.weight"
    assert p.param("embed.weight").aliases == ("lm_head.weight",)
    assert p.rates()["embed.weight"] == 0.5, "a rule on the alias name reaches the tied tensor"
    assert sum(len(g.params) for g in p.groups) == len(tied_lm()) - 1


@pytest.mark.parametrize("head_first", [False, True], ids=["embedding-first", "head-first"])
def test_tied_tensor_is_in_a_no_decay_class_when_any_of_its_names_is(head_first: bool):
    # as rules reach a tied tensor through any name, so do the no-decay classes: the
    # embedding stays undecayed whichever module registered it first
    infos = tied_lm()
    if head_first:
        infos = [infos[-1], *infos[:-1]]
    p = plan(infos, Spec(lr=1, weight_decay=0.1, no_decay=("embedding",)))
    canonical = infos[0].name
    assert p.param(canonical).weight_decay == 0.0
    assert p.param(canonical).wd_source == "no_decay:embedding"
    assert p.param("layers.0.attn.weight").weight_decay == 0.1


def test_tied_conflict_between_names():
    spec = Spec(lr=1, rules=[Rule(Prefix("embed"), lr_mult=0.1, name="emb"),
                             Rule(Prefix("lm_head"), lr_mult=1.0, name="head")])
    with pytest.raises(ConflictError, match=r"'embed.weight'.*'emb'.*'head'"):
        plan(tied_lm(), spec)


def test_order_and_names_are_stable():
    spec = Spec(lr=1e-3, weight_decay=0.1, no_decay=("bias", "norm"),
                rules=[Rule(Prefix("fc"), lr_mult=10, name="head"),
                                                           Rule(Prefix("conv1"), frozen=True, name="stem")],
                layer_decay=LayerDecay(0.8))
    a, b = plan(resnet_like(), spec), plan(resnet_like(), spec)
    assert [(g.name, g.params) for g in a.groups] == [(g.name, g.params) for g in b.groups]
    assert a.to_json() == b.to_json()
    assert [g.name for g in a.groups[:3]] == ["stem/depth0/frozen", "depth0/no_decay", "depth1"]
    assert a.groups[-1].name == "head/depth9/no_decay"
    # group order follows the first parameter of each group in model order
    first = [next(i for i, p in enumerate(resnet_like()) if p.name == g.params[0]) for g in a.groups]
    assert first == sorted(first)


def test_frozen_group_keeps_its_rate_for_unfreezing():
    p = plan(resnet_like(), Spec(lr=0.1, rules=[Rule(Prefix("conv1"), frozen=True, lr_mult=0.5, name="stem")]))
    g = p.group("stem/frozen")
    assert g.frozen and g.lr == 0.05 and g.effective_scale == 0.0 and p.lr_of(g) == 0.0


def test_to_json_and_table():
    spec = Spec(lr=1e-3, weight_decay=0.1, no_decay=("bias",), rules=[Rule(Prefix("fc"), lr_mult=10, name="head")])
    p = plan(resnet_like(), spec)
    data = json.loads(p.to_json())
    assert data["spec"] == spec.to_dict() and len(data["params"]) == 62 and data["groups"][-1]["name"] == "head/no_decay"
    text = p.table(rich=False)
    assert "fc.weight" in text and "head (lr_mult=10)" in text and "no_decay:bias" in text
    assert text.splitlines()[0] == "multilr plan: base lr 0.001, 62 tensors, 4 groups"
    short = p.table(rich=False, max_rows=10)
    assert "... 52 more ..." in short and "fc.bias" in short
    assert "\x1b[" in p.table(rich=True), "rich rendering uses terminal styles"
    assert str(p) == text


def test_table_shows_a_frozen_rate_as_0_and_counts_elements():
    # a frozen tensor trains at 0 now: its row, its group's line and the JSON say 0 (what it would train
    # at unfrozen is in "rate from"); a group's elements are the sum of its tensors' sizes
    spec = Spec(lr=0.1, rules=[Rule(Prefix("conv1"), frozen=True, lr_mult=0.5, name="stem")])
    p = plan(resnet_like(), spec)
    row = next(line.split() for line in p.table(rich=False).splitlines() if line.startswith("conv1.weight"))
    assert row[:6] == ["conv1.weight", "4x3x3x3", "stem/frozen", "0", "0", "yes"]
    stem = p.summary(rich=False).splitlines()[-2].split()
    assert stem == ["0", "stem/frozen", "1", "108", "0", "0.5", "0", "yes"]
    assert json.loads(p.to_json())["params"][0]["lr"] == 0.0


def test_table_with_exactly_max_rows_hides_nothing():
    p = plan(resnet_like(), Spec(lr=0.1))
    assert p.table(rich=False, max_rows=62) == p.table(rich=False)
    assert "... 1 more ..." in p.table(rich=False, max_rows=61)


def test_table_shows_aliases_and_model_frozen():
    infos = tied_lm()
    infos[1] = ParamInfo(*(getattr(infos[1], f) for f in infos[1].__slots__[:5]), False, infos[1].key)
    text = plan(infos, Spec(lr=1)).table(rich=False)
    assert "embed.weight (= lm_head.weight)" in text and "(+1 tied alias)" in text
    assert "off" in text.splitlines()[4], "a parameter the model froze itself shows 'off'"
    assert "off" not in text.splitlines()[3]


def test_plan_accepts_mapping_and_file(tmp_path):
    (tmp_path / "s.json").write_text('{"lr": 0.5}')
    assert plan(resnet_like(), tmp_path / "s.json").rates()["fc.bias"] == 0.5
    assert plan(resnet_like(), {"lr": 0.5}).rates()["fc.bias"] == 0.5


def test_unused_optional_rules_are_reported():
    spec = Spec(lr=1, rules=[Rule(Prefix("pool"), lr_mult=2, name="pool", optional=True)])
    p = plan(resnet_like(), spec)
    assert p.unused_rules == ("pool",)
    assert p.table(rich=False).endswith("optional rules that matched nothing: pool")
    assert "optional rules that matched nothing: pool" in p.summary(rich=False)
    assert json.loads(p.to_json())["unused_rules"] == ["pool"]
    assert "matched nothing" not in plan(resnet_like(), Spec(lr=1)).table(rich=False)


def test_layer_decay_within_that_matches_nothing_is_a_coverage_error() -> None:
    from multilr import CoverageError, LayerDecay, Prefix, Spec, plan

    spec = Spec(lr=0.1, layer_decay=LayerDecay(0.5, within=Prefix("layer")))  # 'layer' is not 'layer1'
    with pytest.raises(CoverageError, match=r"layer_decay\.within .*matches no parameter"):
        plan(resnet_like(), spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"module_types": "LayerNorm"}, r"'m.w': module_types must be a tuple of class names.*got 'LayerNorm'"),
        ({"module_types": ["LayerNorm"]}, r"'m.w': module_types must be a tuple of class names"),
        ({"key": ["m.w"]}, r"'m.w': key must be hashable .*got list"),
    ],
    ids=["module-types-a-string", "module-types-a-list", "key-unhashable"],
)
def test_a_backends_paraminfo_of_the_wrong_shape_is_refused(change: dict, message: str) -> None:
    # a bare string would make the norm family read its letters and miss, silently
    good = ParamInfo("m.w", (4,), "float32", "m", ("LayerNorm",), True, "m.w")
    assert plan([good], Spec(lr=1, weight_decay=0.1, no_decay=("norm",))).param("m.w").weight_decay == 0.0
    bad = dataclasses.replace(good, **change)
    with pytest.raises(PlanError, match=message):
        plan([bad], Spec(lr=1, weight_decay=0.1, no_decay=("norm",)))


# -- behaviours a mutation hunt found unpinned (each test fails on its mutant) -----------


def _linear(name: str, key: str | None = None) -> ParamInfo:
    return ParamInfo(name, (4, 4), "float32", name.rpartition(".")[0], ("Linear",), True, key or name)


def test_a_tied_tensor_inside_within_is_decayed_once_not_once_per_name():
    infos = [_linear("embed.weight"), _linear("layers.0.fc.w"), _linear("layers.1.fc.w"),
             _linear("lm_head.weight", key="embed.weight")]
    made = plan(infos, Spec(lr=1.0, layer_decay=LayerDecay(0.5, within="*")))
    embed = made.param("embed.weight")
    assert embed.lr == 0.5 ** (made.max_depth - embed.depth) == 0.25


def test_a_root_modules_own_bias_is_in_the_bias_class():
    infos = [ParamInfo("weight", (4, 4), "float32", "", ("Net",), True, "weight"),
             ParamInfo("bias", (4,), "float32", "", ("Net",), True, "bias")]
    made = plan(infos, Spec(lr=0.1, weight_decay=0.05, no_decay=["bias"]))
    assert (made.param("bias").weight_decay, made.param("weight").weight_decay) == (0.0, 0.05)


def test_unmatched_error_with_within_counts_the_decayed_tensors_and_refuses_the_rest():
    names = ["enc.layers.0.fc.w", "enc.layers.1.fc.w", "head.w"]
    infos = [_linear(n) for n in names]
    decay = LayerDecay(0.5, within=Prefix("enc"))
    ruled = plan(infos, Spec(lr=0.1, unmatched="error", layer_decay=decay,
                             rules=[Rule("head.*", lr_mult=10, name="head")]))
    assert ruled.param("head.w").lr == 1.0  # the decayed enc.* count as matched
    whole = plan(infos, Spec(lr=0.1, unmatched="error", layer_decay=LayerDecay(0.5)))  # reaches every tensor
    assert len(whole.params) == 3
    with pytest.raises(CoverageError, match=r"1 parameter\(s\) match no rule and unmatched='error': 'head\.w'"):
        plan(infos, Spec(lr=0.1, unmatched="error", layer_decay=decay))


def test_a_rates_entry_wins_over_a_rules_absolute_rate_and_both_stay_as_written():
    infos = [_linear("body.w"), _linear("head.w")]
    made = plan(infos, Spec(lr=0.1, rules=[Rule("head.*", lr=0.5, name="head")], rates={"head.w": 0.02}))
    assert (made.param("head.w").lr, made.param("head.w").rate_source) == (0.02, "rates[head.w]")
    # kept exactly, not recomputed as base * (value / base): 3e-4 * (0.011 / 3e-4) != 0.011
    exact = plan(infos, Spec(lr=3e-4, rules=[Rule("head.*", lr=0.011, name="head")], rates={"body.w": 0.011}))
    assert exact.param("head.w").lr == 0.011 and exact.param("body.w").lr == 0.011


def test_group_names_stay_unique_when_a_rule_takes_a_name_multilr_makes():
    infos = [_linear("body.w"), _linear("head.w")]
    made = plan(infos, Spec(lr=0.1, rules=[Rule("head.*", lr_mult=10, name="default")]))
    names = [g.name for g in made.groups]
    assert len(set(names)) == len(names) == 2


def test_the_rate_source_shows_the_factor_applied_and_a_rule_names_its_group_once():
    infos = [_linear(n) for n in ("embed.w", "layers.0.fc.w", "layers.1.fc.w", "head.w")]
    embed = plan(infos, Spec(lr=1.0, layer_decay=LayerDecay(0.5))).param("embed.w")
    assert (embed.lr, embed.rate_source) == (0.5**3, "default x 0.5^3 (depth 0/3)")
    both = plan(infos[:1] + infos[3:], Spec(lr=0.1, weight_decay=0.05,
                                          rules=[Rule("head.*", lr_mult=10, weight_decay=0.0, name="head")]))
    assert [g.name for g in both.groups] == ["default", "head"]


def test_a_one_star_globs_star_may_match_nothing_as_in_fnmatch():
    infos = [_linear(n) for n in ("body.w", "head.w", "head2.w")]
    made = plan(infos, Spec(lr=0.1, rules=[Rule("head*.w", lr_mult=10, name="head")]))
    assert [p.lr for p in made.params] == [0.1, 1.0, 1.0]
