"""Several layer decays side by side (towers): each tower decayed over its own depths."""

from __future__ import annotations

import pytest

from multilr import ConflictError, LayerDecay, ParamInfo, Prefix, Spec, SpecError, plan

from ._infos import info


def clip_like(text_layers: int = 2, vision_layers: int = 3) -> list[ParamInfo]:
    """HF CLIPModel's order: a root scalar, the text tower, the vision tower, two projections."""
    out = [info("logit_scale", ())]
    out += [info("text_model.embeddings.token_embedding.weight", (30, 4), "emb")]
    out += [info(f"text_model.encoder.layers.{i}.mlp.fc1.weight") for i in range(text_layers)]
    out += [info("text_model.final_layer_norm.weight", (4,), "ln")]
    out += [info("vision_model.embeddings.patch_embedding.weight", (4, 3, 2, 2), "conv")]
    out += [info(f"vision_model.encoder.layers.{i}.mlp.fc1.weight") for i in range(vision_layers)]
    out += [info("vision_model.post_layernorm.weight", (4,), "ln")]
    return [*out, info("visual_projection.weight"), info("text_projection.weight")]


TOWERS = [LayerDecay(0.5, within=Prefix("vision_model")), LayerDecay(0.8, within="text_model.*")]


def reference(name: str) -> float:
    """EVA-CLIP's rule per tower: layer id 0 (embeddings) .. layers + 1 (after the layers), each
    scaled ``decay ** (layers + 1 - id)``; parameters in no tower at the base rate."""
    for prefix, decay, layers in (("text_model.", 0.8, 2), ("vision_model.", 0.5, 3)):
        if name.startswith(prefix):
            if ".layers." in name:
                layer_id = int(name.split(".layers.")[1].split(".")[0]) + 1
            else:
                layer_id = 0 if ".embeddings." in name else layers + 1
            return float(decay ** (layers + 1 - layer_id))
    return 1.0


def test_each_tower_is_decayed_over_its_own_depths() -> None:
    made = plan(clip_like(), Spec(lr=1.0, layer_decay=TOWERS))
    assert {p.name: p.lr for p in made.params} == pytest.approx(
        {i.name: reference(i.name) for i in clip_like()}
    )
    # the same layer of either tower: the same depth, its own tower's factor
    text, vision = (
        made.param("text_model.encoder.layers.1.mlp.fc1.weight"),
        made.param("vision_model.encoder.layers.1.mlp.fc1.weight"),
    )
    assert (text.depth, vision.depth) == (2, 2)
    assert (text.lr, vision.lr) == (0.8, 0.25)
    assert text.group.startswith("text_model/depth2") and vision.group.startswith("vision_model/depth2")
    assert "x 0.5^2 (depth 2/4 of vision_model)" in vision.rate_source
    assert made.max_depth == 4  # the deeper tower's
    # what one layer decay over the whole model does instead: the towers one after the other
    whole = plan(clip_like(), Spec(lr=1.0, layer_decay=LayerDecay(0.5)))
    assert whole.param("text_model.encoder.layers.1.mlp.fc1.weight").depth == 2
    assert whole.param("vision_model.encoder.layers.1.mlp.fc1.weight").depth == 4  # after 2 text layers


def test_a_parameter_in_no_tower_keeps_the_base_rate_and_no_depth() -> None:
    made = plan(clip_like(), Spec(lr=1.0, layer_decay=TOWERS))
    for name in ("logit_scale", "visual_projection.weight", "text_projection.weight"):
        assert (made.param(name).lr, made.param(name).depth) == (1.0, None)
        assert made.param(name).rate_source == "default"


def test_freeze_to_counts_the_towers_aligned_at_their_tops() -> None:
    made = plan(clip_like(), Spec(lr=1.0, layer_decay=TOWERS))
    depths = made.block_depths()
    # the vision tower (3 layers) tops at 4, the text tower (2 layers) at 3: one up to align
    assert depths["vision_model.encoder.layers.0.mlp.fc1.weight"] == 1
    assert depths["text_model.encoder.layers.0.mlp.fc1.weight"] == 2
    assert depths["vision_model.post_layernorm.weight"] == depths["text_model.final_layer_norm.weight"] == 4
    # a tensor of no tower trains at factor 1: at the top, wherever it is registered
    assert depths["logit_scale"] == depths["visual_projection.weight"] == 4
    # so one rate is one depth: no group spans two, and freeze_to can cut anywhere
    for group in made.groups:
        assert len({depths[n] for n in group.params}) == 1, group.name
    # what is at factor 1 is exactly what is at the top
    assert {n for n, d in depths.items() if d == 4} == {p.name for p in made.params if p.lr == 1.0}
    # the parameters' own depths stay their towers' (the rate source says so)
    assert made.param("text_model.encoder.layers.0.mlp.fc1.weight").depth == 1


def test_a_named_tower_labels_its_groups() -> None:
    one = plan(
        clip_like(), Spec(lr=1.0, layer_decay=LayerDecay(0.5, within=Prefix("vision_model"), name="img"))
    )
    vision = one.param("vision_model.encoder.layers.0.mlp.fc1.weight")
    assert vision.group == "img/depth1" and "of img" in vision.rate_source
    unnamed = plan(clip_like(), Spec(lr=1.0, layer_decay=LayerDecay(0.5, within=Prefix("vision_model"))))
    assert unnamed.param("vision_model.encoder.layers.0.mlp.fc1.weight").group == "depth1"


def test_towers_round_trip_and_are_read_from_a_mapping() -> None:
    spec = Spec(lr=1.0, layer_decay=TOWERS)
    data = spec.to_dict()
    assert data["layer_decay"] == [
        {"decay": 0.5, "depth": "blocks", "within": {"prefix": "vision_model"}},
        {"decay": 0.8, "depth": "blocks", "within": {"glob": "text_model.*"}},
    ]
    assert Spec.from_dict(data) == spec
    assert spec.layer_decays == tuple(TOWERS)
    named = Spec.from_dict({"lr": 1, "layer_decay": [{"decay": 0.5, "within": "a.*", "name": "A"}]})
    assert named.to_dict()["layer_decay"] == [
        {"decay": 0.5, "depth": "blocks", "within": {"glob": "a.*"}, "name": "A"}
    ]


def test_each_tower_has_its_own_depth_mode_and_placement() -> None:
    towers = [
        LayerDecay(0.5, within=Prefix("vision_model"), place={"vision_model.post_layernorm.*": 0}),
        LayerDecay(0.5, within=Prefix("text_model"), depth={"text_model.*": 1, "*": 0}),
    ]
    made = plan(clip_like(), Spec(lr=1.0, layer_decay=towers))
    assert made.param("vision_model.post_layernorm.weight").depth == 0
    assert (
        "layer_decay.place['vision_model.post_layernorm.*']"
        in made.param("vision_model.post_layernorm.weight").rate_source
    )
    # an explicit map for the text tower: every text tensor at depth 1, the tower's top
    assert {made.param(i.name).lr for i in clip_like() if i.name.startswith("text_model.")} == {1.0}


@pytest.mark.parametrize(
    ("towers", "error", "message"),
    [
        pytest.param(
            [LayerDecay(0.5, within=Prefix("vision_model")), LayerDecay(0.8)],
            SpecError,
            r"layer_decay\[1\]: a tower of several needs 'within'",
            id="no-within",
        ),
        pytest.param(
            [LayerDecay(0.5, within="vision_model.*"), LayerDecay(0.8, within=Prefix("vision_model"))],
            SpecError,
            "both labelled 'vision_model'",
            id="same-label",
        ),
        pytest.param(
            [LayerDecay(0.5, within=Prefix("vision_model")), "text_model"],
            SpecError,
            r"layer_decay\[1\] must be a LayerDecay, got 'text_model'",
            id="not-a-layer-decay",
        ),
    ],
)
def test_bad_towers_are_refused_naming_the_tower(towers: list[object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Spec(lr=1.0, layer_decay=towers)  # type: ignore[arg-type]


def test_a_parameter_in_two_towers_is_a_conflict_naming_it_and_both() -> None:
    towers = [
        LayerDecay(0.5, within=Prefix("vision_model")),
        LayerDecay(0.8, within="*.layers.2.*", name="l2"),
    ]
    with pytest.raises(
        ConflictError, match=r"'vision_model\.encoder\.layers\.2\.mlp\.fc1\.weight' is in two towers"
    ):
        plan(clip_like(), Spec(lr=1.0, layer_decay=towers))
    with pytest.raises(SpecError, match=r"layer_decay\.name must be a string without ./."):
        LayerDecay(0.5, name="a/b")


def test_one_tower_in_a_list_is_one_layer_decay() -> None:
    single = plan(clip_like(), Spec(lr=1.0, layer_decay=LayerDecay(0.5, within=Prefix("vision_model"))))
    listed = plan(clip_like(), Spec(lr=1.0, layer_decay=[LayerDecay(0.5, within=Prefix("vision_model"))]))
    assert [(p.name, p.lr, p.depth, p.group) for p in single.params] == [
        (p.name, p.lr, p.depth, p.group) for p in listed.params
    ]


def test_a_towers_placement_of_a_tensor_outside_it_changes_nothing_there() -> None:
    # found by the fuzzer: a place pattern reaching a tensor of no tower (or of the other one)
    towers = [
        LayerDecay(0.5, within=Prefix("vision_model"), place={"*projection.weight": "stem"}),
        LayerDecay(0.8, within=Prefix("text_model"), place={"vision_model.post_layernorm.*": "stem"}),
    ]
    made = plan(clip_like(), Spec(lr=1.0, layer_decay=towers))
    assert (made.param("visual_projection.weight").lr, made.param("visual_projection.weight").depth) == (1.0, None)
    post = made.param("vision_model.post_layernorm.weight")
    assert (post.lr, post.depth) == (1.0, 4)  # the vision tower's own view: its top
    assert "place" not in post.rate_source
