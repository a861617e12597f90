"""Plans at scale: a 1,000-block model, LLaMA-7B's shapes on the meta device, and memory.

Issue 6, part 5: the plan of a model with thousands of tensors is right and usable, a
7-billion-parameter model is planned from its names, shapes and flags alone (on the
meta device, with no memory for its weights), and a build copies no parameter and the
plan keeps none alive. Build times are stated with ``state_figure``, never asserted.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import tracemalloc
import weakref

import torch
from models import LlamaConfig, llama  # examples/models.py
from torch import nn
from torch.profiler import ProfilerActivity, profile

import multilr
from multilr import LayerDecay, Prefix, Rule, Spec
from multilr.testing import state_figure

N_BLOCKS = 1000
DECAY = 0.99

#: Layer decay over the blocks, no weight decay on biases and norms, a frozen stem.
SPEC = Spec(
    lr=1e-3,
    weight_decay=0.05,
    no_decay=("bias", "norm"),
    rules=(Rule(Prefix("stem"), frozen=True, name="stem"),),
    layer_decay=LayerDecay(DECAY),
)
#: stem (2 groups: weight, bias), 2 per block, then norm + head at the top depth (the
#: head's weight, and one no-decay group for the norm and the head's bias).
GROUPS = 2 + 2 * N_BLOCKS + 2


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a small residual step keeps a thousand blocks' gradients finite and non-zero
        return x + 0.01 * torch.tanh(self.mlp(x))


class _Deep(nn.Module):
    """stem, ``blocks.0`` .. ``blocks.{n-1}``, norm, head: 2 * n + 6 tensors."""

    def __init__(self, n_blocks: int = N_BLOCKS, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Linear(width, width)
        self.blocks = nn.Sequential(*(_Block(width) for _ in range(n_blocks)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.stem(x))))


def _deep(width: int = 4) -> _Deep:
    torch.manual_seed(0)
    return _Deep(width=width).double()


def _ms(fn: object, reps: int) -> float:
    """Median wall time of ``reps`` calls, in ms (stated, never asserted)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def test_thousand_blocks_plan_is_complete_and_steps() -> None:
    model = _deep()
    params = dict(model.named_parameters())
    assert len(params) == 2 * N_BLOCKS + 6

    groups = multilr.build(model, SPEC)
    plan = groups.plan
    emitted = [p for g in groups for p in g["params"]]
    assert len(emitted) == len(params) and {id(p) for p in emitted} == {id(p) for p in params.values()}, (
        "every tensor in exactly one group"
    )
    assert len(groups) == len(plan.groups) == GROUPS, f"got {len(groups)} groups, should be {GROUPS}"
    assert plan.max_depth == N_BLOCKS + 1
    depths = [p.depth for p in plan.params]
    assert None not in depths and sorted(set(depths)) == list(range(N_BLOCKS + 2))  # type: ignore[type-var]

    def rate(depth: int) -> float:
        return 1e-3 * DECAY ** (N_BLOCKS + 1 - depth)

    for i in (0, 1, 499, N_BLOCKS - 1):
        w, b = plan.param(f"blocks.{i}.mlp.0.weight"), plan.param(f"blocks.{i}.mlp.0.bias")
        assert w.depth == b.depth == i + 1
        assert math.isclose(w.lr, rate(i + 1), rel_tol=1e-12), f"got {w.lr}, should be {rate(i + 1)} [{w.name}]"
        assert (w.weight_decay, b.weight_decay) == (0.05, 0.0)
        assert (w.group, b.group) == (f"depth{i + 1}", f"depth{i + 1}/no_decay")
    assert math.isclose(plan.param("head.weight").lr, 1e-3) and plan.param("norm.weight").weight_decay == 0.0
    assert plan.param("stem.weight").frozen and not params["stem.weight"].requires_grad

    # the groups drive a real optimizer: SGD's update is lr * (grad + wd * p), per group
    opt = torch.optim.SGD(groups, lr=1.0)
    before = {n: p.detach().clone() for n, p in params.items()}
    model(torch.randn(8, 4, dtype=torch.float64)).square().mean().backward()
    opt.step()
    for p in params.values():
        if p.requires_grad:  # every tensor but the frozen stem's got a gradient
            assert p.grad is not None and p.grad.abs().sum() > 0
    by_id = {id(p): n for n, p in params.items()}
    for group in groups:
        for p in group["params"]:
            name = by_id[id(p)]
            expected = before[name]
            if p.grad is not None:
                expected = expected - group["lr"] * (p.grad + group["weight_decay"] * expected)
            torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=0, msg=name)
    assert torch.equal(params["stem.weight"], before["stem.weight"]), "the frozen stem did not move"

    build_ms = _ms(lambda: multilr.build(model, SPEC), 5)
    state_figure(
        "scale.1-thousand-blocks",
        f"scale: {N_BLOCKS:,}-block model, {len(params):,} tensors -> {len(groups):,} groups "
        f"(depths 0..{plan.max_depth}), build {build_ms:.0f} ms (median of 5; one SGD step checked per tensor)",
    )


def test_llama_7b_shapes_on_meta() -> None:
    t0 = time.perf_counter()
    model = llama()  # LLaMA-7B's sizes, on the meta device
    made_s = time.perf_counter() - t0
    params = list(model.parameters())
    assert all(p.is_meta for p in params), "no storage behind any weight"
    numel = sum(p.numel() for p in params)
    assert (len(params), numel) == (291, 6_738_415_616)

    spec = Spec(lr=3e-4, weight_decay=0.1, no_decay=("bias", "norm"), layer_decay=LayerDecay(0.8))
    tracemalloc.start()
    try:
        groups = multilr.build(model, spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    build_ms = _ms(lambda: multilr.build(model, spec), 5)
    plan = groups.plan
    assert sum(math.prod(p.shape) for p in plan.params) == numel
    assert sum(len(g["params"]) for g in groups) == len(params)
    layers = LlamaConfig().layers
    # embeddings 0, model.layers.i at i + 1, the final norm and lm_head on top
    assert plan.max_depth == layers + 1
    assert plan.param("model.embed_tokens.weight").depth == 0
    assert plan.param("model.layers.0.self_attn.q_proj.weight").depth == 1
    assert plan.param(f"model.layers.{layers - 1}.mlp.down_proj.weight").depth == layers
    assert plan.param("model.norm.weight").depth == plan.param("lm_head.weight").depth == layers + 1
    assert plan.param("model.layers.3.input_layernorm.weight").weight_decay == 0.0, "RMSNorm is a norm"
    q = plan.param("model.layers.3.self_attn.q_proj.weight")
    assert math.isclose(q.lr, 3e-4 * 0.8 ** (layers + 1 - 4), rel_tol=1e-12) and q.weight_decay == 0.1
    # embeddings; per layer its weights and its two norms; the final norm and lm_head
    assert len(groups) == 1 + 2 * layers + 2

    opt = torch.optim.AdamW(groups)  # an optimizer takes the groups, on meta too
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]
    state_figure(
        "scale.2-llama-7b-meta",
        f"scale: LLaMA-7B shapes on meta, {len(params)} tensors, {numel / 1e9:.2f}e9 parameters -> "
        f"{len(groups)} groups, build {build_ms:.1f} ms (median of 5), peak traced memory {peak / 1e3:.0f} kB "
        f"(weights would take {numel * 4 / 1e9:.1f} GB in float32; model made in {made_s:.1f} s)",
    )


def test_build_copies_no_parameter_and_the_plan_keeps_none() -> None:
    model = _deep(width=32)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    tensors_before = sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())
    tracemalloc.start()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            groups = multilr.build(model, SPEC)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    allocated = sum(max(e.self_cpu_memory_usage, 0) for e in prof.key_averages())
    assert allocated == 0, f"got {allocated} bytes of tensor memory allocated by build, should be 0"
    assert sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects()) == tensors_before, "no new tensor"
    model_ids = {id(p) for p in model.parameters()}
    assert all(id(p) in model_ids for g in groups for p in g["params"]), "the model's own tensors"

    plan = groups.plan
    plan.to_json()  # records and provenance made: still no tensor in them
    probe = weakref.ref(model.head.weight)
    del model, groups
    gc.collect()
    assert probe() is None, "the plan keeps no parameter alive"
    assert len(plan.params) == 2 * N_BLOCKS + 6
    state_figure(
        "scale.3-memory",
        f"scale: build of {len(plan.params):,} tensors allocated 0 bytes of tensor memory (torch profiler), "
        f"peak traced Python memory {peak / 1e6:.1f} MB vs {weights / 1e6:.1f} MB of weights; "
        "the plan keeps no tensor alive",
    )
