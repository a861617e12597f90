"""A model's own hints (timm's ``no_weight_decay()``, ``group_matcher()``, a tensor's
``_no_weight_decay`` flag), without a framework.

The expected layer ids are worked out by hand from timm's ``group_with_matcher``
(timm/models/_manipulate.py): each name gets the key ``(ordinal of the matcher entry,
*regex groups as floats, *suffix)``, unmatched names ``(inf,)``; the distinct keys are
sorted and numbered from 0, and a key ending in 99999 (``MATCH_PREV_GROUP``) takes the
number of the key before it.
"""

from __future__ import annotations

import pytest

from multilr import LayerDecay, PlanError, Rule, Spec, SpecError
from multilr._hints import (
    GROUP_MATCHER,
    NO_WEIGHT_DECAY,
    NO_WEIGHT_DECAY_FLAG,
    NO_WEIGHT_DECAY_KEYWORDS,
    ModelHints,
    flagged_names,
    read_hints,
)
from multilr._plan import resolve

from ._infos import info

VIT_MATCHER = {
    "stem": r"^cls_token|^pos_embed|^patch_embed",
    "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
}
VIT = ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.fc.weight", "blocks.1.fc.weight",
       "norm.weight", "head.weight"]


def test_vit_matcher_gives_timms_layer_ids():
    # stem 0; blocks.i -> i + 1; norm (1, 99999) joins blocks.1; head (inf,) last
    assert ModelHints(group_matcher=VIT_MATCHER).depths(VIT) == [0, 0, 0, 1, 2, 2, 3]


def test_blocks_sort_as_numbers_and_by_matcher_order_not_model_order():
    # blocks.10 after blocks.9 (floats, not strings); the stem entry comes first in the
    # matcher, so a stem name listed after the blocks still gets id 0
    names = [f"blocks.{i}.w" for i in (10, 9, 2)] + ["cls_token", "fc.w"]
    assert ModelHints(group_matcher=VIT_MATCHER).depths(names) == [3, 2, 1, 0, 4]


def test_resnet_style_matcher_with_two_groups_per_key():
    # timm ResNet's fine matcher: stem, then r'^layer(\d+)\.(\d+)' -> keys (1, layer, block)
    matcher = {"stem": r"^conv1|^bn1", "blocks": r"^layer(\d+)\.(\d+)"}
    names = ["conv1.weight", "bn1.weight", "layer1.0.w", "layer1.1.w", "layer2.0.w", "fc.weight"]
    assert ModelHints(group_matcher=matcher).depths(names) == [0, 0, 1, 2, 3, 4]


def test_none_entries_are_skipped_but_keep_their_ordinal():
    matcher = {"stem": r"^stem", "unused": None, "blocks": r"^blocks\.(\d+)"}
    assert ModelHints(group_matcher=matcher).depths(["blocks.0.w", "stem.w"]) == [1, 0]


def test_callable_matcher():
    hints = ModelHints(group_matcher=lambda name: (0,) if name.startswith("stem") else (1, int(name[-1])))
    assert hints.depths(["stem.w", "b1", "b0"]) == [0, 2, 1]


@pytest.mark.parametrize(
    "matcher",
    [{"blocks": [("^blocks", None, "extra")]}, {"blocks": 3}, "not a dict", {"blocks": r"^blocks\.(x)?"}],
    ids=["bad-pair", "not-regex", "not-mapping", "non-numeric-group"],
)
def test_malformed_matchers_are_refused(matcher):
    with pytest.raises(PlanError, match=r"group_matcher"):
        ModelHints(group_matcher=matcher).depths(["blocks.w"])


def test_first_matching_entry_wins_and_the_error_names_the_parameter():
    # "blocks.0.norm.w" matches both entries: the first one listed gives its key
    matcher = {"blocks": r"^blocks\.(\d+)", "norms": r".*norm"}
    assert ModelHints(group_matcher=matcher).depths(["blocks.0.norm.w", "norm.w", "blocks.1.w"]) == [0, 2, 1]
    bad = {"blocks": r"^blocks\.(\w+)"}
    with pytest.raises(PlanError, match=r"matched 'blocks\.x\.w' with groups \('x',\)"):
        ModelHints(group_matcher=bad).depths(["blocks.0.w", "blocks.x.w"])


def test_no_decay_keywords_are_literal_and_names_come_before_keywords():
    hints = ModelHints(no_weight_decay=("pos_embed",), no_weight_decay_keywords=("pos", "a.b"))
    # "a.b" is a substring, not a regex: "axb" is not hit; pos_embed is named, so its label is the names'
    got = hints.no_decay(["pos_embed", "x.pos.w", "axb.w", "q.a.b.w"], None)
    assert got == [NO_WEIGHT_DECAY, NO_WEIGHT_DECAY_KEYWORDS, "", NO_WEIGHT_DECAY_KEYWORDS]


def test_no_decay_names_wildcards_keywords_and_existing_classes():
    hints = ModelHints(no_weight_decay=("pos_embed", "blocks.*.gamma", "dist_token", "fc.bias"),
                       no_weight_decay_keywords=("relative_position",))
    names = ["pos_embed", "blocks.0.gamma", "blocks.0.attn.relative_position_bias_table", "fc.bias", "fc.weight"]
    # fc.bias, named by the model too, keeps the spec's own class (the hints never
    # override the spec); the absent dist_token is ignored, as in timm
    got = hints.no_decay(names, ["", "", "", "bias", ""])
    assert got == [NO_WEIGHT_DECAY, NO_WEIGHT_DECAY, NO_WEIGHT_DECAY_KEYWORDS, "bias", ""]
    classes = ["", "", "", "", ""]
    assert ModelHints(no_weight_decay=("nothing_here",)).no_decay(names, classes) is classes
    assert ModelHints(no_weight_decay=("nothing_here",)).no_decay(names, None) is None


class _Model:
    def no_weight_decay(self):
        return {"b", "a"}

    def group_matcher(self, coarse=False):
        assert coarse is False  # timm's layer decay asks for the fine grouping
        return {"stem": r"^a"}


def test_read_hints_calls_the_methods_and_sorts_the_set():
    hints = read_hints(_Model())
    assert hints is not None and hints.no_weight_decay == ("a", "b")
    assert hints.group_matcher == {"stem": r"^a"}
    assert read_hints(object()) is None


def test_read_hints_refuses_what_it_cannot_read():
    class NotMethod:
        no_weight_decay = True

    class BadNames:
        def no_weight_decay(self):
            return "pos_embed"

    class NotStrings:
        def no_weight_decay(self):
            return {0, 1}

    with pytest.raises(PlanError, match="model_hints: false"):
        read_hints(NotMethod())
    with pytest.raises(PlanError, match="not a collection of parameter names"):
        read_hints(BadNames())
    with pytest.raises(PlanError, match=r"non-string entries \[0, 1\]"):
        read_hints(NotStrings())


# -- the planner -----------------------------------------------------------------------

INFOS = [info(n, (1, 1, 4) if n in ("cls_token", "pos_embed") else (4, 4)) for n in VIT]
HINTS = ModelHints(no_weight_decay=("cls_token", "pos_embed"), group_matcher=VIT_MATCHER)
SPEC = Spec(lr=1.0, weight_decay=0.05, layer_decay=LayerDecay(0.5))


def _by_name(plan):
    return {p.name: p for p in plan.params}


def test_planner_honours_both_hints_and_says_so():
    p = _by_name(resolve(INFOS, SPEC, hints=HINTS))
    assert p["cls_token"].weight_decay == 0.0 and p["cls_token"].wd_source == f"no_decay:{NO_WEIGHT_DECAY}"
    assert p["patch_embed.proj.weight"].weight_decay == 0.05
    assert [p[n].depth for n in VIT] == [0, 0, 0, 1, 2, 2, 3]
    assert p["norm.weight"].scale == 0.5 and GROUP_MATCHER in p["norm.weight"].rate_source


def test_model_hints_false_ignores_them():
    p = _by_name(resolve(INFOS, Spec(lr=1.0, weight_decay=0.05, layer_decay=LayerDecay(0.5), model_hints=False),
                         hints=HINTS))
    assert p["cls_token"].weight_decay == 0.05
    # "blocks" inference: norm is after the last block, so it is head (depth 3)
    assert p["norm.weight"].depth == 3 and GROUP_MATCHER not in p["norm.weight"].rate_source


def test_explicit_depth_and_rules_win_over_hints():
    spec = Spec(lr=1.0, weight_decay=0.05, layer_decay=LayerDecay(0.5, depth="top"),
                rules=[Rule("pos_embed", weight_decay=0.01, name="pos")])
    p = _by_name(resolve(INFOS, spec, hints=HINTS))
    assert p["pos_embed"].weight_decay == 0.01 and p["pos_embed"].wd_source == "pos"
    assert p["cls_token"].weight_decay == 0.0
    assert p["norm.weight"].depth == 4  # top-level order: cls, pos, patch_embed, blocks, norm, head


def test_no_weight_decay_is_moot_without_base_weight_decay():
    plan = resolve(INFOS, Spec(lr=1.0), hints=HINTS)
    assert [g.name for g in plan.groups] == ["default"]


def test_spec_switch_round_trips_and_is_checked():
    spec = Spec(lr=0.1, model_hints=False)
    assert spec.to_dict() == {"lr": 0.1, "weight_decay": 0.0, "model_hints": False}
    assert Spec.from_dict(spec.to_dict()) == spec
    assert "model_hints" not in Spec(lr=0.1).to_dict()
    with pytest.raises(SpecError, match="model_hints"):
        Spec.from_dict({"lr": 0.1, "model_hints": "no"})


# -- a tensor's own flag (mamba_ssm's ``A_log._no_weight_decay = True``) -----------------


class _Tensor:
    """What torch keeps for ``p._no_weight_decay = True``: an entry in the tensor's __dict__."""

    def __init__(self, flag: object = None) -> None:
        if flag is not None:
            self._no_weight_decay = flag


MAMBA = ["embedding.weight", "layers.0.mixer.A_log", "layers.0.mixer.D", "layers.0.mixer.in_proj.weight",
         "layers.0.norm.weight", "lm_head.weight"]


def test_flagged_names_are_the_tensors_whose_flag_is_true():
    tensors = [_Tensor(), _Tensor(True), _Tensor(1), _Tensor(False), _Tensor(), _Tensor()]
    assert flagged_names(MAMBA, tensors) == ("layers.0.mixer.A_log", "layers.0.mixer.D")
    assert flagged_names(MAMBA, [_Tensor() for _ in MAMBA]) == ()
    # tensors that cannot hold an attribute (OneFlow 0.9's, NumPy arrays) carry no flag
    assert flagged_names(["a", "b"], [1.0, "x"]) == ()
    assert flagged_names(["a", "b"], [1.0, _Tensor(True)]) == ("b",)


def test_planner_gives_a_flagged_tensor_no_weight_decay_after_the_specs_classes():
    infos = [info(n, (4,) if n.endswith((".D", "norm.weight")) else (4, 4)) for n in MAMBA]
    hints = ModelHints(flagged=("layers.0.mixer.A_log", "layers.0.mixer.D"))
    spec = Spec(lr=1.0, weight_decay=0.1, no_decay=("1d",))
    p = _by_name(resolve(infos, spec, hints=hints))
    # A_log is a matrix: only its flag takes its decay off; D is 1-D, and the spec's class wins
    assert (p["layers.0.mixer.A_log"].weight_decay, p["layers.0.mixer.A_log"].wd_source) == (
        0.0, f"no_decay:{NO_WEIGHT_DECAY_FLAG}"
    )
    assert (p["layers.0.mixer.D"].weight_decay, p["layers.0.mixer.D"].wd_source) == (0.0, "no_decay:1d")
    assert p["layers.0.mixer.in_proj.weight"].weight_decay == 0.1
    # a rule's weight decay beats the flag; model_hints false ignores it
    ruled = Spec(lr=1.0, weight_decay=0.1, rules=[Rule("*.A_log", weight_decay=0.01, name="alog")])
    assert _by_name(resolve(infos, ruled, hints=hints))["layers.0.mixer.A_log"].weight_decay == 0.01
    off = Spec(lr=1.0, weight_decay=0.1, model_hints=False)
    assert _by_name(resolve(infos, off, hints=hints))["layers.0.mixer.A_log"].weight_decay == 0.1
