"""``Ndim``: a selector on the tensor's number of dimensions, in Python and in a spec file."""

from __future__ import annotations

import pytest

from multilr import Ndim, Rule, Spec, SpecError, plan
from multilr._select import matching
from multilr.backend import ParamTable

from ._infos import info, resnet_like


def _with_scalar() -> list:
    # a 0-d tensor at the root, as CLIP's logit_scale
    return [*resnet_like(), info("logit_scale", ())]


@pytest.mark.parametrize(
    ("dims", "want"),
    [
        pytest.param((1,), lambda shape: len(shape) == 1, id="vectors"),
        pytest.param((0, 1), lambda shape: len(shape) <= 1, id="scalars-and-vectors"),
        pytest.param((4,), lambda shape: len(shape) == 4, id="convolutions"),
        pytest.param((2, 4), lambda shape: len(shape) in (2, 4), id="matrices-and-convolutions"),
    ],
)
def test_ndim_selects_by_number_of_dimensions(dims, want):
    infos = _with_scalar()
    expected = [i for i, p in enumerate(infos) if want(p.shape)]
    assert expected and len(expected) < len(infos)
    # the column path (what a build runs) and matches() (a subclass, a single ParamInfo) agree
    assert matching(Ndim(*dims), ParamTable.from_infos(infos)) == expected
    assert [i for i, p in enumerate(infos) if Ndim(*dims).matches(p)] == expected


def test_a_rule_on_vectors_sets_their_rate_and_decay_and_leaves_the_scalar():
    spec = Spec(lr=0.1, weight_decay=0.05, rules=[Rule(Ndim(1), lr_mult=2, weight_decay=0, name="flat")])
    p = plan(_with_scalar(), spec)
    assert p.param("bn1.bias").lr == pytest.approx(0.2) and p.param("bn1.bias").weight_decay == 0
    assert p.param("fc.bias").rate_source.startswith("flat")
    assert p.param("conv1.weight").lr == 0.1 and p.param("conv1.weight").weight_decay == 0.05
    # a 0-d tensor has no dimension: Ndim(1) is MMEngine's flat test, not the "1d" class
    assert p.param("logit_scale").weight_decay == 0.05
    one_d = plan(_with_scalar(), Spec(lr=0.1, weight_decay=0.05, no_decay=("1d",)))
    assert one_d.param("logit_scale").weight_decay == 0


def test_file_form_round_trips():
    spec = Spec.from_yaml(
        "lr: 0.1\n"
        "rules:\n"
        "  - {name: flat, ndim: 1, weight_decay: 0}\n"
        "  - {name: small, ndim: [1, 0], lr_mult: 2}\n"
    )
    assert spec.rules[0].select == Ndim(1) and spec.rules[1].select == Ndim(0, 1)
    assert [r.to_dict()["ndim"] for r in spec.rules] == [1, [0, 1]]
    assert Spec.from_json(spec.to_json()) == spec
    assert spec.rules[1].select.describe() == "ndim:0|1"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative"),
        pytest.param(65, id="too-many"),
        pytest.param(1.0, id="float"),
        pytest.param(True, id="bool"),
        pytest.param("1", id="string"),
        pytest.param([], id="empty"),
        pytest.param([1, None], id="none-in-list"),
    ],
)
def test_bad_ndim_is_refused_naming_the_rule(value):
    with pytest.raises(SpecError, match=r"^rules\[0\]: ndim needs one or more whole numbers from 0 to 64"):
        Spec.from_dict({"lr": 0.1, "rules": [{"ndim": value, "lr_mult": 2}]})
    with pytest.raises(SpecError, match=r"^ndim needs"):
        Ndim(value)


def test_every_dimension_count_a_tensor_can_have_is_taken():
    assert Ndim(0).dims == (0,) and Ndim(64).dims == (64,)  # torch's limit, both ends


def test_ndim_in_layer_decay_within_is_a_selector_key():
    # within takes every selector key (it used to list four by hand)
    spec = Spec.from_dict({"lr": 0.1, "layer_decay": {"decay": 0.5, "within": {"ndim": 4}}})
    assert spec.layer_decay is not None and spec.layer_decay.within == Ndim(4)
    with pytest.raises(SpecError, match=r"layer_decay\.within.*'ndims'.*did you mean 'ndim'"):
        Spec.from_dict({"lr": 0.1, "layer_decay": {"decay": 0.5, "within": {"ndims": 4}}})
