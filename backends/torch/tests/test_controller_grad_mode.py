"""Controller(freeze_by="grad") in one process: frozen tensors keep requires_grad and never move.

The mode exists for DistributedDataParallel and FSDP (``test_distributed.py`` runs it in
two processes); here its single-process meaning is pinned down: the pre-step hook drops
the gradients, nothing moves (no weight decay, no momentum), training is identical to the
default mode, stages hand back ``requires_grad`` at construction, and what the spec
freezes for good stays out of autograd and cannot be thawed.
"""

from __future__ import annotations

import models
import pytest
import torch

import multilr
from multilr import Controller, LayerDecay, MultiLRError, Prefix, Rule, Spec, SpecError, Stage


def Net() -> models.TinyNet:
    """The model of these tests (examples/models.py)."""
    return models.tiny_net(nested=True, act="relu")


# stem frozen for good, the blocks from step 2 (a stage), the head at x10
SPEC = Spec(
    lr=0.05,
    weight_decay=0.1,
    rules=[
        Rule(Prefix("stem"), frozen=True, name="stem"),
        Rule(Prefix("blocks"), frozen=True, name="body"),
        Rule(Prefix("head"), lr_mult=10, name="head"),
    ],
    layer_decay=LayerDecay(0.5),
    stages=[Stage(("body",), at=2, lr_mult=0.5)],
)
STEM = "stem/depth0/frozen"
PLAIN = Spec(lr=0.05, weight_decay=0.1, rules=[Rule(Prefix("head"), lr_mult=10, name="head")])


def _setup(spec: Spec, opt: str = "sgd", **kw):
    model = Net()
    groups = multilr.build(model, spec, backend="torch")
    optimizer = torch.optim.SGD(groups, momentum=0.9) if opt == "sgd" else torch.optim.AdamW(groups)
    return model, groups, optimizer, Controller(optimizer, groups, **kw)


def _members(groups, names) -> list[str]:
    return [p for g in groups.plan.groups if g.name in names for p in g.params]


def _train(model, opt, ctl, steps: int = 1, seen: list | None = None) -> None:
    for i in range(steps):
        opt.zero_grad()
        x = torch.linspace(-1, 1, 15).reshape(5, 3) + i
        model(x).square().sum().backward()
        if seen is not None:
            seen.append({n: p.grad is not None for n, p in model.named_parameters()})
        opt.step()
        ctl.step()


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_frozen_by_grad_moves_nothing_neither_decay_nor_momentum(opt: str) -> None:
    model, groups, optimizer, ctl = _setup(PLAIN, opt, freeze_by="grad")
    _train(model, optimizer, ctl)  # momentum buffers / Adam moments now exist for every tensor
    ctl.freeze("default")
    tensors = dict(model.named_parameters())
    members = _members(groups, {"default"})
    before = {n: tensors[n].detach().clone() for n in members}
    state_before = {n: {k: v.clone() for k, v in optimizer.state[tensors[n]].items()} for n in members}
    seen: list[dict[str, bool]] = []
    _train(model, optimizer, ctl, 3, seen)
    for n in members:
        assert all(s[n] for s in seen), (
            f"{n} had no gradient before the step: the hook was not what stopped it"
        )
        assert tensors[n].requires_grad, f"got requires_grad False on {n}, should stay True in grad mode"
        assert tensors[n].grad is None, f"{n} kept its gradient after the step"
        assert torch.equal(tensors[n], before[n]), f"{n} moved while frozen ({opt})"
        for k, v in state_before[n].items():
            assert torch.equal(optimizer.state[tensors[n]][k], v), f"{n}: optimizer state {k!r} changed"
    assert not torch.equal(tensors["head.weight"], torch.zeros(2, 4))
    ctl.unfreeze("default")
    _train(model, optimizer, ctl)
    assert all(not torch.equal(tensors[n], before[n]) for n in members)


def test_grad_mode_trains_exactly_as_the_default_mode() -> None:
    """Stage at step 2, a hand freeze at 3, unfreeze at 5: bit-identical parameters in both modes."""
    runs = {}
    for mode in ("requires_grad", "grad"):
        model, groups, optimizer, ctl = _setup(SPEC, "adamw", freeze_by=mode)
        _train(model, optimizer, ctl, 3)
        ctl.freeze("head/depth3")
        _train(model, optimizer, ctl, 2)
        ctl.unfreeze("head/depth3")
        _train(model, optimizer, ctl, 2)
        runs[mode] = {n: p.detach().clone() for n, p in model.named_parameters()}
        assert len(optimizer.param_groups) == len(groups.plan.groups)
    start = dict(Net().named_parameters())
    for n, p in runs["grad"].items():
        assert torch.equal(p, runs["requires_grad"][n]), f"{n}: the two modes trained differently"
        moved = not torch.equal(p, start[n])
        assert moved == (not n.startswith("stem")), f"{n}: moved={moved}"


def test_stage_tensors_get_requires_grad_back_and_wait_for_their_stage() -> None:
    model, groups, optimizer, ctl = _setup(SPEC, freeze_by="grad")
    tensors = dict(model.named_parameters())
    body = _members(groups, {g.name for g in groups.plan.groups if g.stage})
    assert body and all(n.startswith("blocks") for n in body)
    assert all(tensors[n].requires_grad for n in body), (
        "a DDP wrapper made now would skip the stage's tensors"
    )
    assert not any(tensors[n].requires_grad for n in ("stem.weight", "stem.bias"))  # frozen for good
    before = {n: tensors[n].detach().clone() for n in body}
    _train(model, optimizer, ctl, 2)
    assert all(torch.equal(tensors[n], before[n]) for n in body)
    _train(model, optimizer, ctl, 1)  # step 2: the stage trains
    assert all(not torch.equal(tensors[n], before[n]) for n in body)
    assert ctl.frozen() == [STEM]


def test_what_the_spec_freezes_for_good_cannot_thaw_and_nothing_changes() -> None:
    model, _groups, _optimizer, ctl = _setup(SPEC, freeze_by="grad")
    rates, state = ctl.rates(), ctl.state_dict()
    with pytest.raises(MultiLRError, match=r"cannot unfreeze \[.stem/depth0/frozen.\] with freeze_by='grad'"):
        ctl.unfreeze(STEM)
    with pytest.raises(MultiLRError, match="freezes them for good"):
        ctl.freeze_to(0)
    with pytest.raises(MultiLRError, match="freezes them for good"):
        ctl.load_state_dict({**state, "frozen": []})
    assert ctl.rates() == rates and ctl.state_dict() == state
    assert not model.stem.weight.requires_grad and model.blocks[0][0].weight.requires_grad
    # the default mode may thaw it: its tensors were never handed to a wrapper with the flag on
    _, _, _, plain = _setup(SPEC)
    plain.unfreeze(STEM)


def test_state_dict_round_trip_in_grad_mode() -> None:
    model, _groups, optimizer, ctl = _setup(SPEC, freeze_by="grad")
    _train(model, optimizer, ctl, 3)
    ctl.freeze("head/depth3")
    ctl.set_scale("body/depth1/stage0", 3.0)
    saved = ctl.state_dict()
    model2, _, optimizer2, ctl2 = _setup(SPEC, freeze_by="grad")
    ctl2.load_state_dict(saved)
    assert ctl2.state_dict() == saved and ctl2.rates() == pytest.approx(ctl.rates())
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    assert {n: p.requires_grad for n, p in model2.named_parameters()} == flags
    assert flags["head.weight"] and not flags["stem.weight"]
    head = model2.head.weight.detach().clone()
    _train(model2, optimizer2, ctl2)  # the new Controller's hook holds the frozen head
    assert torch.equal(model2.head.weight, head)


def test_close_removes_the_hook() -> None:
    model, _groups, optimizer, ctl = _setup(PLAIN, freeze_by="grad")
    ctl.freeze("default")
    ctl.close()
    ctl.close()  # twice is fine
    seen: list[dict[str, bool]] = []
    _train(model, optimizer, ctl, 1, seen)
    assert model.stem.weight.grad is not None, "the gradient was dropped after close()"
    assert torch.equal(model.stem.weight, Net().stem.weight)  # rate 0 still: no move


def test_drop_frozen_grads_before_clipping() -> None:
    model, _groups, _optimizer, ctl = _setup(PLAIN, freeze_by="grad")
    ctl.freeze("default")
    model(torch.ones(2, 3)).sum().backward()
    ctl.drop_frozen_grads()
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None]
    assert with_grad == ["head.weight", "head.bias"]
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
    want = torch.cat([model.head.weight.grad.flatten(), model.head.bias.grad]).norm()
    assert float(norm) == pytest.approx(float(want))


def test_unknown_freeze_by_is_refused() -> None:
    model = Net()
    groups = multilr.build(model, PLAIN, backend="torch")
    with pytest.raises(SpecError, match=r"freeze_by must be one of \['requires_grad', 'grad'\], got 'grads'"):
        Controller(torch.optim.SGD(groups), groups, freeze_by="grads")  # type: ignore[arg-type]
