"""What the OneFlow backends refuse, and that a refusal changes nothing.

Each refusal is a multilr error (a ``ValueError``) that names what is refused and why,
raised before any training, with the model's tensors and flags and the optimizer's groups
as they were. The refusals that never compile a graph run here; the rate-write cases
compile one and run in their own process (``_graph_case.py``).
"""

from __future__ import annotations

from typing import Any

import multilr_oneflow
import numpy as np
import pytest

import multilr
from multilr import Prefix, Rule, Spec, UnsupportedFeatureError


def setup(cases: Any, backend: str = "oneflow-graph", opt_id: str = "sgd-momentum") -> tuple[Any, Any, Any]:
    model = cases.make_model()
    groups = multilr.build(model, cases.make_spec(opt_id), backend=backend)
    return model, groups, cases.make_optimizer(opt_id, groups)


def idle_graph(flow: Any, model: Any) -> Any:
    """An nn.Graph on the model that is never called (nothing compiles here)."""

    class Idle(flow.nn.Graph):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def build(self, x: Any) -> Any:
            return self.model(x)

    return Idle()


def state(model: Any, opt: Any) -> dict[str, Any]:
    """Everything a refusal must leave alone."""
    return {
        "params": {n: p.numpy().copy() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "groups": [
            (type(g).__name__, dict(g.options), [id(p) for p in g.parameters]) for g in opt.param_groups
        ],
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any], what: str) -> None:
    for n, v in before["params"].items():
        assert np.array_equal(after["params"][n], v), (
            f"got {n} changed by the refused {what}, should be untouched"
        )
    assert after["requires_grad"] == before["requires_grad"], (
        f"got requires_grad flags changed by the refused {what}"
    )
    assert after["groups"] == before["groups"], (
        f"got optimizer groups {after['groups']}, should be unchanged {before['groups']} [refused {what}]"
    )


SCHEDULER_REFUSALS = [
    pytest.param(
        lambda s, opt: s.LambdaLR(opt, lambda k: 0.5**k),
        "LambdaLR",
        ("WarmupLR", "LinearLR", "'oneflow'"),
        id="LambdaLR",
    ),
    pytest.param(
        lambda s, opt: s.ReduceLROnPlateau(opt, mode="min"),
        "ReduceLROnPlateau",
        ("MultiStepLR", "CosineAnnealingLR", "'oneflow'"),
        id="ReduceLROnPlateau",
    ),
]


@pytest.mark.parametrize(("make", "cls", "alternatives"), SCHEDULER_REFUSALS)
def test_add_optimizer_refuses_scheduler(
    cases: Any, make: Any, cls: str, alternatives: tuple[str, ...]
) -> None:
    flow = cases.flow
    model, _, opt = setup(cases)
    sched = make(flow.optim.lr_scheduler, opt)
    graph = idle_graph(flow, model)
    before = state(model, opt)
    with pytest.raises(UnsupportedFeatureError) as info:
        multilr_oneflow.add_optimizer(graph, opt, lr_sch=sched)
    msg = str(info.value)
    assert cls in msg, f"got {msg!r}, should name {cls}"
    assert "nn.Graph" in msg, f"got {msg!r}, should say why (nn.Graph cannot run it)"
    for alt in alternatives:
        assert alt in msg, f"got {msg!r}, should name the alternative {alt}"
    assert isinstance(info.value, ValueError), "got a non-ValueError, should be a multilr error (ValueError)"
    assert graph._opts == [], (
        f"got {len(graph._opts)} optimizers in the graph, should be none after the refusal"
    )
    assert_unchanged(before, state(model, opt), cls)
    opt.param_groups[0]["lr"] = 0.5  # the groups are not guarded: the graph never took them
    assert opt.param_groups[0]["lr"] == 0.5, "got the write ignored, should be honoured [refused optimizer]"


def test_add_optimizer_refuses_eager_groups(cases: Any) -> None:
    """Groups from backend='oneflow' (own lr, no lr_scale) are refused for a graph.

    Measured: OneFlow's graph treats a missing lr_scale as 1, so these groups alone would
    not be scaled twice (only lr *and* lr_scale together are, see
    test_graph_check_catches_double_scaling); the refusal keeps one convention per target.
    """
    model, _, opt = setup(cases, backend="oneflow")
    graph = idle_graph(cases.flow, model)
    before = state(model, opt)
    with pytest.raises(UnsupportedFeatureError) as info:
        multilr_oneflow.add_optimizer(graph, opt)
    msg = str(info.value)
    for part in ("lr_scale", "eager", "backend='oneflow-graph'"):
        assert part in msg, f"got {msg!r}, should mention {part!r}"
    assert graph._opts == [], "got an optimizer added to the graph, should be none after the refusal"
    assert_unchanged(before, state(model, opt), "eager groups")


def test_add_optimizer_refuses_prescaled_lr_with_scale(cases: Any) -> None:
    """A pre-scaled lr next to lr_scale would be scaled twice in a graph."""
    model, groups, _ = setup(cases)
    for g in groups:
        g["lr"] = groups.plan.lr_of(groups.plan.group(g["name"])) or g["lr"]  # eager rates, scales kept
    opt = cases.make_optimizer("sgd-momentum", groups)
    graph = idle_graph(cases.flow, model)
    before = state(model, opt)
    with pytest.raises(UnsupportedFeatureError) as info:
        multilr_oneflow.add_optimizer(graph, opt)
    msg = str(info.value)
    for part in ("lr_scale", "scaled twice", "oneflow-graph"):
        assert part in msg, f"got {msg!r}, should mention {part!r}"
    assert graph._opts == [], "got an optimizer added to the graph, should be none after the refusal"
    assert_unchanged(before, state(model, opt), "pre-scaled groups")


def test_add_optimizer_refuses_float64(cases: Any) -> None:
    """Groups built on float32, model cast to float64 afterwards (same tensors): refused, named."""
    model, _, opt = setup(cases)
    model.double()
    graph = idle_graph(cases.flow, model)
    before = state(model, opt)
    with pytest.raises(UnsupportedFeatureError) as info:
        multilr_oneflow.add_optimizer(graph, opt)
    msg = str(info.value)
    for part in ("float64", "param_groups[0] (depth0)", "nn.Graph", "float32"):
        assert part in msg, f"got {msg!r}, should mention {part!r}"
    assert graph._opts == [], "got an optimizer added to the graph, should be none after the refusal"
    assert_unchanged(before, state(model, opt), "float64 groups")


@pytest.mark.parametrize("where", ["all", "head-only"])
def test_graph_build_refuses_float64_naming_the_parameter(cases: Any, where: str) -> None:
    """At build time, before the frozen rule touches the model."""
    model = cases.make_model()
    if where == "all":
        model.double()
        first = "stem.weight"
    else:
        model.head.double()
        first = "head.weight"
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(UnsupportedFeatureError) as info:
        multilr.build(model, cases.make_spec("adamw"), backend="oneflow-graph")
    msg = str(info.value)
    for part in (repr(first), "float64", "nn.Graph", "'oneflow' (eager)"):
        assert part in msg, f"got {msg!r}, should mention {part}"
    now = {n: p.requires_grad for n, p in model.named_parameters()}
    assert now == flags, (
        f"got requires_grad {now}, should be unchanged {flags} [refused build; frozen rule not applied]"
    )
    groups = multilr.build(model, cases.make_spec("adamw"), backend="oneflow")  # eager takes float64
    assert len(groups) == len(groups.plan.groups), "got no eager groups for the float64 model, should build"


def test_eager_and_graph_builds_refuse_non_oneflow_models(cases: Any) -> None:
    for backend in ("oneflow", "oneflow-graph"):
        with pytest.raises(multilr.BackendError) as info:
            multilr.build([1.0, 2.0], Spec(lr=0.1), backend=backend)
        assert "oneflow.nn.Module" in str(info.value) and "list" in str(info.value), (
            f"got {info.value}, should name the expected oneflow.nn.Module and the list given [{backend}]"
        )


def test_build_refuses_model_changed_after_planning(cases: Any) -> None:
    """emit checks every planned tensor exists before freezing anything."""
    model = cases.make_model()
    plan = multilr.plan(
        model, Spec(lr=0.1, rules=[Rule(Prefix("stem"), frozen=True, name="s")]), backend="oneflow"
    )
    other = cases.Tiny(n_blocks=2)
    with pytest.raises(multilr.BackendError) as info:
        multilr.get_backend("oneflow").emit(other, plan)
    assert "blocks.2" in str(info.value), f"got {info.value}, should name the missing blocks.2 tensor"
    assert all(p.requires_grad for p in other.parameters()), (
        "got tensors frozen by a refused emit, should be untouched"
    )


# ---------------------------------------------------------------- rate writes (compile: subprocess)


def assert_rates_at_reports_moves(r: dict[str, Any]) -> None:
    """rates_at(optimizer) reports what the graph applied, writes before the first call included."""
    for step, moves in enumerate(r["moves"]):
        got = r["rates_at_opt"][step]["head"]
        moved = moves[r["head_params"][0]]
        assert got == pytest.approx(moved, rel=1e-6), (
            f"got rates_at(opt) {got!r} for the head at graph step {step}, should be the applied {moved!r}"
        )


def test_lr_write_before_first_call_honoured_after_it_refused(run_case: Any) -> None:
    """No scheduler: a write before the first call is compiled in; a write after it raises.

    Plain SGD with a gradient of ones moves every tensor by ``lr * lr_scale`` per step; the
    head group has lr_scale 10, so writing its lr to 0.03 must move the head by 0.3.
    """
    r = run_case({"kind": "lr-write", "lr_before": 0.03, "lr_after": 0.07})
    for step, moves in enumerate(r["moves"]):
        for name, moved in moves.items():
            want = 0.3 if name in r["head_params"] else 0.1
            assert moved == pytest.approx(want, rel=1e-6), (
                f"got {name} moved by {moved!r} at graph step {step}, should be {want} "
                f"[head lr written to 0.03 before the first call, x lr_scale 10]"
            )
    for key in ("lr", "lr_scale"):
        err = r[f"write_{key}_after"]
        assert err != "accepted", (
            f"got the write of {key!r} after the first call accepted, should raise [would be ignored]"
        )
        assert err["type"] == "UnsupportedFeatureError" and "ValueError" in err["mro"], (
            f"got {err['type']}, should be multilr.UnsupportedFeatureError"
        )
        for part in (repr(key), "'head'", "first call", "lr_sch", "'oneflow' eager"):
            assert part in err["message"], f"got {err['message']!r}, should mention {part}"
    assert_rates_at_reports_moves(r)
    assert r["lr_read_after_write"] == 0.03 and r["lr_scale_read_after_write"] == 10.0, (
        f"got lr {r['lr_read_after_write']}, lr_scale {r['lr_scale_read_after_write']} after the refused writes, "
        "should still read 0.03 and 10.0 (what the graph runs with)"
    )


def test_lr_write_before_first_call_with_scheduler_not_silently_ignored(run_case: Any) -> None:
    """With an lr_sch, OneFlow compiles the scheduler's ``initial_lr`` and ignores ``lr``.

    A write of ``lr`` before the first call must then be either honoured or refused; a
    guard that only refuses after the first call lets it be silently ignored.
    """
    r = run_case({"kind": "lr-write", "lr_before": 0.03, "lr_after": 0.07, "sched": "step"})
    if r["write_before"] != "accepted":  # refusing it is a fine fix too
        assert r["write_before"]["type"] == "UnsupportedFeatureError", (
            f"got {r['write_before']}, should be a multilr error"
        )
        return
    moved = r["moves"][0][r["head_params"][0]]
    assert moved == pytest.approx(0.3, rel=1e-6), (
        f"got the head moved by {moved!r} on the first graph step, should be 0.3 (the written lr 0.03 x lr_scale 10) "
        "or the write should raise; it was accepted (read back as "
        f"{r['lr_read_before_call']}) and silently ignored [StepLR attached, write before the first call]"
    )
    assert_rates_at_reports_moves(r)


# -- gradient clipping through hyper --------------------------------------------------------

CLIP = {"clip_grad_max_norm": 1.0, "clip_grad_norm_type": 2.0}


def _two_linears(flow: Any) -> Any:
    flow.manual_seed(0)
    return flow.nn.Sequential(flow.nn.Linear(4, 4), flow.nn.Linear(4, 2))


def _clipped_norm(flow: Any, model: Any, groups: Any) -> float:
    """The model's gradient norm after OneFlow's own per-group clip (eager ``clip_grad``)."""
    opt = flow.optim.SGD(groups)
    x = flow.tensor(np.linspace(-3, 3, 32, dtype=np.float32).reshape(8, 4))
    (model(x) * 100).sum().backward()
    opt.clip_grad()
    return float(np.sqrt(sum(float((p.grad * p.grad).sum().numpy()) for p in model.parameters())))


def test_oneflow_clips_each_group_by_its_own_norm() -> None:
    # the measured reason for the refusal below: two groups, each clipped to 1, total above 1
    flow = multilr_oneflow.import_oneflow()
    model = _two_linears(flow)
    groups = [{"params": list(m.parameters()), "lr": 0.1, **CLIP} for m in model]
    assert _clipped_norm(flow, model, groups) == pytest.approx(2**0.5, rel=1e-4)


@pytest.mark.parametrize("backend", ["oneflow", "oneflow-graph"])
def test_clipping_in_hyper_with_several_groups_is_refused(backend: str) -> None:
    flow = multilr_oneflow.import_oneflow()
    model = _two_linears(flow)
    flags = [p.requires_grad for p in model.parameters()]
    spec = Spec(
        lr=0.1,
        hyper=CLIP,
        rules=[Rule(Prefix("1"), lr_mult=10, name="head")],
    )
    with pytest.raises(
        UnsupportedFeatureError, match=r"clips each param group by its own gradient norm.*'head'"
    ):
        multilr.build(model, spec, backend=backend)
    assert [p.requires_grad for p in model.parameters()] == flags


@pytest.mark.parametrize("backend", ["oneflow", "oneflow-graph"])
def test_one_clip_key_without_the_other_is_refused(backend: str) -> None:
    flow = multilr_oneflow.import_oneflow()
    with pytest.raises(
        UnsupportedFeatureError, match=r"hyper.clip_grad_max_norm without hyper.clip_grad_norm_type"
    ):
        multilr.build(_two_linears(flow), Spec(lr=0.1, hyper={"clip_grad_max_norm": 1.0}), backend=backend)


def test_clipping_in_hyper_with_one_trainable_group_clips_the_model() -> None:
    # one group that trains (the other frozen): OneFlow's per-group clip is the model's
    flow = multilr_oneflow.import_oneflow()
    model = _two_linears(flow)
    groups = multilr.build(model, Spec(lr=0.1, hyper=CLIP), backend="oneflow")
    assert _clipped_norm(flow, model, groups) == pytest.approx(1.0, rel=1e-4)
    model = _two_linears(flow)
    spec = Spec(lr=0.1, hyper=CLIP, rules=[Rule(Prefix("0"), frozen=True, name="stem")])
    assert len(multilr.build(model, spec, backend="oneflow")) == 2
