"""Tied parameters: one tensor under two names is planned once, reported as an alias,
and lands in exactly one group, in eager and graph groups alike.

OneFlow 0.9's ``named_parameters`` drops repeated tensors (it has no
``remove_duplicate=False``), so the backend walks the module tree itself to see the
second name; these tests check it does.
"""

from __future__ import annotations

from typing import Any

import pytest

import multilr
from multilr import LayerDecay, Prefix, Rule, Spec

BACKENDS = ["oneflow", "oneflow-graph"]


def tied_model(flow: Any) -> Any:
    class TiedLM(flow.nn.Module):
        """Embedding, two blocks, and a decoder that shares the embedding's weight."""

        def __init__(self) -> None:
            super().__init__()
            self.emb = flow.nn.Embedding(7, 4)
            self.blocks = flow.nn.Sequential(
                *[flow.nn.Sequential(flow.nn.Linear(4, 4), flow.nn.LayerNorm(4)) for _ in range(2)]
            )
            self.dec = flow.nn.Linear(4, 7, bias=False)
            self.dec.weight = self.emb.weight

        def forward(self, idx: Any) -> Any:
            return self.dec(self.blocks(self.emb(idx)))

    flow.manual_seed(0)
    return TiedLM()


@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_weight_reported_as_alias_in_one_group(cases: Any, backend: str) -> None:
    flow = cases.flow
    model = tied_model(flow)
    assert model.dec.weight is model.emb.weight, (
        "got two tensors, should be one shared Parameter [test set-up]"
    )
    assert [n for n, _ in model.named_parameters()].count("dec.weight") == 0, (
        "got dec.weight from named_parameters, should be dropped by OneFlow 0.9 [the case this test covers]"
    )
    spec = Spec(lr=0.1, no_decay=("bias", "norm"), weight_decay=0.01, layer_decay=LayerDecay(0.5))
    groups = multilr.build(model, spec, backend=backend)
    plan = groups.plan
    assert plan.aliases == {"dec.weight": "emb.weight"}, (
        f"got aliases {plan.aliases}, should be dec.weight -> emb.weight"
    )
    emb = plan.param("dec.weight")
    assert emb.name == "emb.weight" and emb.aliases == ("dec.weight",), (
        f"got {emb.name} with aliases {emb.aliases}, should be emb.weight with ('dec.weight',)"
    )
    assert len(plan.params) == 9, f"got {len(plan.params)} planned tensors, should be 9 [10 names, 1 tied]"
    assert emb.depth == 0, (
        f"got depth {emb.depth} for the tied tensor, should be 0 [its first name, emb, is the stem]"
    )
    holders = [g["name"] for g in groups for p in g["params"] if p is model.emb.weight]
    assert len(holders) == 1, f"got the tied tensor in groups {holders}, should be in exactly one [{backend}]"
    count = sum(len(g["params"]) for g in groups)
    assert count == 9, f"got {count} tensors across groups, should be 9 distinct [{backend}]"
    opt = flow.optim.AdamW(groups)  # OneFlow accepts the groups: no tensor twice
    assert sum(len(g.parameters) for g in opt.param_groups) == 9, (
        "got a different tensor count in the optimizer"
    )


def test_rule_on_alias_name_reaches_the_tensor(cases: Any) -> None:
    """A rule that selects only the second name (``dec``) still sets the shared tensor's rate."""
    flow = cases.flow
    model = tied_model(flow)
    spec = Spec(lr=0.1, rules=[Rule(Prefix("dec"), lr_mult=10, name="decoder")])
    groups = multilr.build(model, spec, backend="oneflow")
    plan = groups.plan
    assert plan.rates()["emb.weight"] == pytest.approx(1.0), (
        f"got rate {plan.rates()['emb.weight']} for emb.weight, should be 1.0 [decoder rule via its alias dec.weight]"
    )
    group = [g for g in groups if any(p is model.emb.weight for p in g["params"])]
    assert [g["name"] for g in group] == ["decoder"] and group[0]["lr"] == pytest.approx(1.0), (
        f"got {[(g['name'], g['lr']) for g in group]}, should be one group 'decoder' at lr 1.0"
    )
    # and the eager step moves the shared tensor once, at that rate
    opt = flow.optim.SGD(groups)
    before = model.emb.weight.numpy().copy()
    model.emb.weight.grad = flow.ones_like(model.emb.weight)
    for p in model.parameters():
        if p is not model.emb.weight:
            p.grad = flow.zeros_like(p)
    opt.step()
    moved = before - model.emb.weight.numpy()
    assert moved == pytest.approx(1.0, rel=1e-6), (
        f"got the tied tensor moved by {moved.ravel()[:3]}, should be 1.0 (once, x10)"
    )


def test_oneflow_backend_inferred_from_the_model() -> None:
    import oneflow as flow

    import multilr

    model = flow.nn.Linear(2, 2)
    groups = multilr.build(model, multilr.Spec(lr=0.5))
    assert groups.backend == "oneflow", f"got {groups.backend!r}, should be 'oneflow' (eager) [inferred]"
    assert "lr_scale" not in groups[0], "inferred eager groups must not carry lr_scale"
