"""``layer_decay.place``: tensors put at a depth by pattern, on top of inference."""

from __future__ import annotations

import pytest

from multilr import ConflictError, CoverageError, LayerDecay, ParamInfo, Spec, SpecError, plan
from multilr._depth import depths_and_head

from ._infos import bert_like, info


def opt_like(layers: int = 3) -> list[ParamInfo]:
    """OPT's order: the final norm is registered before the layers; the LM head is tied."""
    out = [
        info("model.decoder.embed_tokens.weight", (30, 8), "emb", key="tok"),
        info("model.decoder.final_layer_norm.weight", (8,), "ln"),
        info("model.decoder.final_layer_norm.bias", (8,), "ln"),
    ]
    for i in range(layers):
        out += [info(f"model.decoder.layers.{i}.fc1.weight"), info(f"model.decoder.layers.{i}.fc1.bias", (4,))]
    return [*out, info("lm_head.weight", (30, 8), "fc", key="tok")]


def _depths(made: object) -> dict[str, int | None]:
    return {p.name: p.depth for p in made.params}  # type: ignore[attr-defined]


def test_head_is_one_above_the_last_block_when_nothing_follows_it() -> None:
    names = [i.name for i in opt_like()]
    _, head = depths_and_head(list(dict.fromkeys(names[:-1])), "blocks")
    assert head == 4  # three layers: stem 0, blocks 1..3, head 4 though no tensor is there


def test_without_blocks_the_head_is_the_highest_depth_not_a_new_one_above_it() -> None:
    # three top-level layers, no stack: depths 0, 1, 2, and "head" is 2. One above it
    # would make a new top and give every other tensor one more decay factor.
    infos = [info(f"{i}.weight") for i in range(3)]
    assert depths_and_head([i.name for i in infos], "blocks") == ([0, 1, 2], 2)
    made = plan(infos, Spec(lr=1.0, layer_decay=LayerDecay(0.5, place={"0.*": "head"})))
    assert {p.name: (p.depth, p.lr) for p in made.params} == {
        "0.weight": (2, 1.0), "1.weight": (1, 0.5), "2.weight": (2, 1.0)
    }


@pytest.mark.parametrize("mode", ["blocks", "outer"])
def test_a_final_norm_registered_before_the_layers_goes_to_the_head(mode: str) -> None:
    place = {"model.decoder.final_layer_norm.*": "head"}
    before = plan(opt_like(), Spec(lr=1.0, layer_decay=LayerDecay(0.5, depth=mode)))
    after = plan(opt_like(), Spec(lr=1.0, layer_decay=LayerDecay(0.5, depth=mode, place=place)))
    assert _depths(before)["model.decoder.final_layer_norm.weight"] == 0  # inference: the stem
    assert after.max_depth == 4 and before.max_depth == 3
    by = after.param("model.decoder.final_layer_norm.bias")
    assert (by.depth, by.lr) == (4, 1.0)
    # every block moved one step down under the new top, the stem with them
    assert after.param("model.decoder.layers.2.fc1.weight").lr == 0.5
    assert after.param("model.decoder.embed_tokens.weight").lr == 0.5**4
    assert "layer_decay.place['model.decoder.final_layer_norm.*']" in by.rate_source
    assert "place" not in after.param("model.decoder.layers.0.fc1.weight").rate_source


def test_stem_head_and_a_number_with_a_head_already_there() -> None:
    spec = Spec(
        lr=1.0,
        layer_decay=LayerDecay(
            0.5,
            place={"bert.pooler.*": "stem", "classifier.bias": "head", "bert.embeddings.LayerNorm.*": 2},
        ),
    )
    depths = _depths(plan(bert_like(3), spec))
    assert depths["bert.pooler.dense.weight"] == 0
    assert depths["classifier.bias"] == depths["classifier.weight"] == 4  # the head inference gives
    assert depths["bert.embeddings.LayerNorm.bias"] == 2
    assert depths["bert.encoder.layer.1.output.dense.weight"] == 2


def test_a_tied_tensor_is_placed_through_any_of_its_names() -> None:
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, place={"lm_head.*": "head"}))
    made = plan(opt_like(), spec)
    assert made.param("model.decoder.embed_tokens.weight").depth == 4


def test_a_place_above_the_head_raises_the_top() -> None:
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, place={"*.final_layer_norm.*": 7}))
    made = plan(opt_like(), spec)
    assert made.max_depth == 7
    assert made.param("model.decoder.layers.2.fc1.weight").lr == 0.5**4


def test_place_over_an_explicit_depth_map_and_top_mode() -> None:
    depth_map = {"model.decoder.layers.*": 1, "*": 0}
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, depth=depth_map, place={"*.final_layer_norm.*": "head"}))
    assert plan(opt_like(), spec).param("model.decoder.final_layer_norm.weight").depth == 1
    top = Spec(lr=1.0, layer_decay=LayerDecay(0.5, depth="top", place={"*.fc1.bias": "stem"}))
    names = [info("a.w"), info("b.fc1.bias", (4,)), info("c.w")]
    assert list(_depths(plan(names, top)).values()) == [0, 0, 2]


def test_freeze_to_counts_the_placed_depths() -> None:
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, place={"model.decoder.final_layer_norm.*": "head"}))
    depths = plan(opt_like(), spec).block_depths()
    assert depths["model.decoder.final_layer_norm.bias"] == 4


def test_place_round_trips_through_a_mapping() -> None:
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, place={"a.*": "stem", "b.*": 3}))
    data = spec.to_dict()
    assert data["layer_decay"]["place"] == {"a.*": "stem", "b.*": 3}
    assert Spec.from_dict(data) == spec
    assert LayerDecay(0.5, place={}).place is None


@pytest.mark.parametrize(
    ("place", "message"),
    [
        ({"a.*": "top"}, r"layer_decay\.place\['a\.\*'\] must be 'stem', 'head'"),
        ({"a.*": "haed"}, "did you mean 'head'"),
        ({"a.*": -1}, r"layer_decay\.place\['a\.\*'\] must be"),
        ({"a.*": True}, r"layer_decay\.place\['a\.\*'\] must be"),
        ({"": 1}, "pattern must be a non-empty string"),
        (["a.*"], "layer_decay.place must be a mapping"),
    ],
    ids=["unknown-word", "misspelt", "negative", "bool", "empty-pattern", "not-a-mapping"],
)
def test_bad_places_are_spec_errors(place: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        LayerDecay(0.5, place=place)  # type: ignore[arg-type]


def test_a_place_that_matches_nothing_names_it_and_what_was_meant() -> None:
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, place={"decoder.final_layer_norm.*": "head"}))
    with pytest.raises(CoverageError, match=r"use glob '\*\.decoder\.final_layer_norm\.\*'"):
        plan(opt_like(), spec)


def test_two_places_for_one_tensor_name_both() -> None:
    spec = Spec(lr=1.0, layer_decay=LayerDecay(0.5, place={"*.final_layer_norm.*": "head", "*.bias": 1}))
    with pytest.raises(ConflictError, match=r"'model\.decoder\.final_layer_norm\.bias'.*'\*\.bias'"):
        plan(opt_like(), spec)
    agree = Spec(lr=1.0, layer_decay=LayerDecay(0.5, place={"*.final_layer_norm.*": "head", "*norm.bias": 4}))
    assert plan(opt_like(), agree).param("model.decoder.final_layer_norm.bias").depth == 4
