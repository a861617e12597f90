"""multilr.Recorder without a framework: an optimizer's param_groups stand-in, rate sources, JSON, refusals.

The rates a real optimizer applied are checked against the recorder in
``backends/torch/tests/test_recorder_torch.py`` and ``backends/oneflow/tests/test_recorder_oneflow.py``.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

import multilr
from multilr import MultiLRError, RateHistory, Recorder, SpecError, UnsupportedFeatureError


def _opt(*groups: tuple[str, float]) -> SimpleNamespace:
    return SimpleNamespace(param_groups=[{"name": n, "lr": lr, "params": []} for n, lr in groups])


def _halve(opt: SimpleNamespace) -> None:
    for g in opt.param_groups:
        g["lr"] /= 2


def test_records_every_group_at_every_step_with_meta() -> None:
    opt = _opt(("body", 0.01), ("head", 0.1))
    rec = Recorder(opt, meta={"run": "r1"})
    for _ in range(4):
        rec.record()  # after optimizer.step(), before the scheduler
        _halve(opt)
    h = rec.history()
    assert h.groups == ("body", "head") and h.steps == (0, 1, 2, 3) and len(rec) == 4
    assert h.rates["body"] == pytest.approx((0.01, 0.005, 0.0025, 0.00125))
    assert h.ratios("body")["head"] == pytest.approx((10.0,) * 4)  # all groups, not just the last
    assert h.meta == {
        "recorder": "multilr.Recorder",
        "every": 1,
        "source": "optimizer",
        "backend": "types",
        "optimizer": "SimpleNamespace",
        "run": "r1",
    }


def test_every_and_start() -> None:
    opt = _opt(("a", 1.0))
    rec = Recorder(opt, every=3, start=10)
    for _ in range(7):
        rec.record()
        _halve(opt)
    assert rec.history().steps == (10, 13, 16) and rec.step == 17
    assert rec.history().rates["a"] == pytest.approx((1.0, 1 / 8, 1 / 64))


def test_unnamed_groups_are_called_by_their_index() -> None:
    opt = SimpleNamespace(param_groups=[{"lr": 0.1}, {"lr": 0.2}])
    rec = Recorder(opt)
    rec.record()
    assert rec.history().at(0) == {"0": 0.1, "1": 0.2}


def test_a_rate_source_names_its_groups_on_first_call() -> None:
    rec = Recorder(source=lambda step: {"x": 1.0 / (step + 1), "y": 0.5}, meta={"backend": "mine"})
    assert rec.groups == []
    for _ in range(3):
        rec.record()
    h = rec.history()
    assert h.groups == ("x", "y") and h.rates["x"] == pytest.approx((1.0, 0.5, 1 / 3))
    assert h.meta["backend"] == "mine" and h.meta["source"].endswith("<lambda>")


def test_the_callers_meta_wins_over_the_recorders_own() -> None:
    # a run that knows better (a wrapper optimizer, its own backend label) overrides what the recorder guessed
    rec = Recorder(_opt(("a", 0.1)), meta={"backend": "deepspeed", "optimizer": "FusedAdam"})
    rec.record()
    assert rec.history().meta["backend"] == "deepspeed" and rec.history().meta["optimizer"] == "FusedAdam"
    assert rec.history().meta["source"] == "optimizer"


def test_ratios_are_nan_where_the_reference_group_is_frozen() -> None:
    # a frozen reference (rate 0) has no ratio: nan, not 0, which would read as "that group is frozen"
    h = RateHistory(("body", "head"), (0, 1), {"body": (0.0, 0.1), "head": (0.5, 1.0)})
    head = h.ratios("body")["head"]
    assert math.isnan(head[0]) and head[1] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("groups", "steps", "rates", "message"),
    [
        (("a",), (0, 0), {"a": (0.1, 0.1)}, "steps must be strictly ascending"),
        (("a",), (0, 1, 2), {"a": (0.1, 0.1)}, "group 'a' has 2 rates for 3 steps"),
        (("a",), (0,), {"a": (-0.1,)}, "group 'a' has rate -0.1 at step 0"),
    ],
    ids=["repeated-step", "too-few-rates", "negative-rate"],
)
def test_inconsistent_histories_are_refused(groups, steps, rates, message) -> None:
    with pytest.raises(SpecError, match=message):
        RateHistory(groups, steps, rates)


def test_a_mapping_without_the_format_is_not_a_rate_history() -> None:
    # a plan's JSON or a finder result's has groups too: only the format tells a history apart
    data = RateHistory(("a",), (0,), {"a": (0.1,)}).to_dict()
    del data["format"]
    with pytest.raises(SpecError, match="not a multilr rate history"):
        RateHistory.from_dict(data)


def test_json_round_trip(tmp_path) -> None:
    opt = _opt(("body", 0.01), ("head", 0.1))
    rec = Recorder(opt, every=2, meta={"model": "tiny"})
    for _ in range(5):
        rec.record()
        _halve(opt)
    path = rec.save(tmp_path / "rates.json")
    data = json.loads(path.read_text())
    assert data["format"] == "multilr.rates/1" and data["steps"] == [0, 2, 4]
    assert RateHistory.load(path) == rec.history()
    assert multilr.RateHistory.from_dict(data).meta["model"] == "tiny"


def test_graph_groups_are_refused_naming_the_graph_recorder() -> None:
    opt = SimpleNamespace(param_groups=[{"name": "head", "lr": 0.1, "lr_scale": 10.0}])
    with pytest.raises(UnsupportedFeatureError, match=r"'head' carries lr_scale.*graph_recorder"):
        Recorder(opt)


def test_bad_arguments() -> None:
    opt = _opt(("a", 0.1))
    with pytest.raises(SpecError, match="exactly one of an optimizer or a rate source"):
        Recorder()
    with pytest.raises(SpecError, match="exactly one"):
        Recorder(opt, source=lambda s: {"a": 0.1})
    with pytest.raises(SpecError, match="every must be an integer >= 1, got 0"):
        Recorder(opt, every=0)
    with pytest.raises(SpecError, match="start must be an integer >= 0, got -1"):
        Recorder(opt, start=-1)
    with pytest.raises(SpecError, match="not the optimizer's groups"):
        Recorder(opt, groups=["b"])
    with pytest.raises(SpecError, match="no param_groups"):
        Recorder(object())
    with pytest.raises(SpecError, match="must be a callable"):
        Recorder(source=3)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="appears twice"):
        Recorder(source=lambda s: {}, groups=["a", "a"])


def test_bad_rates_and_changed_groups_record_nothing() -> None:
    opt = _opt(("a", 0.1))
    rec = Recorder(opt)
    rec.record()
    opt.param_groups[0]["lr"] = float("nan")
    with pytest.raises(SpecError, match="rate of group 'a' at step 1"):
        rec.record()
    opt.param_groups[0]["lr"] = 0.1
    opt.param_groups.append({"name": "extra", "lr": 0.1})
    with pytest.raises(MultiLRError, match=r"groups changed.*\['a'\] -> \['a', 'extra'\].*add_param_group"):
        rec.record()
    assert len(rec) == 1 and rec.step == 1
    src = Recorder(source=lambda s: {"a": 0.1} if s == 0 else {"b": 0.1})
    src.record()
    with pytest.raises(MultiLRError, match=r"step 1: the rate source gave groups \['b'\], the recorder has \['a'\]"):
        src.record()


def test_attach_needs_a_step_hook() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"no register_step_pre_hook.*call recorder.record\(\)"):
        Recorder(_opt(("a", 0.1))).attach()
    with pytest.raises(UnsupportedFeatureError, match="a rate source"):
        Recorder(source=lambda s: {"a": 0.1}).attach()
