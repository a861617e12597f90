"""``multilr_oneflow.forward_depths``: depths from the order an eager OneFlow forward pass runs modules in.

The OneFlow twin of ``backends/torch/tests/test_forward_depths.py``. A model that
registers its final norm before its blocks (OPT's layout) gets the depths the README's
``layer_decay.place`` recipe gives it by hand; flowvision's models, whose registration
order is their running order, keep the depths they had. One forward pass changes
nothing: not the weights, the batch-norm statistics, the train flags, the gradients, the
user's hooks (OneFlow 0.9 keys them by count, so ours must not take one of those keys)
or the random number generator.
"""

from __future__ import annotations

from typing import Any

import flowvision.models
import multilr_oneflow
import pytest
from multilr_oneflow import forward_depths, forward_order

import multilr
from multilr import BackendError, LayerDecay, Spec, SpecError

flow = multilr_oneflow.import_oneflow()
nn = flow.nn


class _OptLike(nn.Module):
    """OPT's layout: embeddings, a final norm registered before the layers, a tied head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.final_norm = nn.LayerNorm(8)  # runs last
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)) for _ in range(3)])
        self.lm_head = nn.Linear(8, 20, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids: Any) -> Any:
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.final_norm(x))


IDS = flow.tensor([[1, 2, 3, 4]])


def _depths(model: Any, layer_decay: LayerDecay, backend: str = "oneflow") -> dict[str, int | None]:
    return {p.name: p.depth for p in multilr.plan(model, Spec(lr=1.0, layer_decay=layer_decay), backend=backend).params}


@pytest.mark.parametrize("backend", ["oneflow", "oneflow-graph"])
def test_forward_order_gives_what_the_place_recipe_gives(backend: str) -> None:
    model = _OptLike()
    depths = forward_depths(model, IDS)
    by_forward = _depths(model, LayerDecay(0.8, depth=depths), backend)
    by_hand = _depths(model, LayerDecay(0.8, place={"final_norm.*": "head"}), backend)
    by_registration = _depths(model, LayerDecay(0.8), backend)
    assert by_forward == by_hand
    assert {n for n in by_forward if by_forward[n] != by_registration[n]} == {"final_norm.weight", "final_norm.bias"}
    assert depths["lm_head.weight"] == depths["embed.weight"] == 0  # tied: the first name decides


def _resnet18() -> Any:
    flow.manual_seed(0)
    return flowvision.models.resnet18(num_classes=5)


def _mobilenet_v2() -> Any:
    flow.manual_seed(0)
    return flowvision.models.mobilenet_v2(num_classes=5)


@pytest.mark.parametrize("make", [pytest.param(_resnet18, id="resnet18"), pytest.param(_mobilenet_v2, id="mobilenet_v2")])
@pytest.mark.parametrize("mode", ["blocks", "outer", "top"])
def test_models_that_run_in_registration_order_keep_their_depths(make: Any, mode: str) -> None:
    model = make()
    depths = forward_depths(model, flow.randn(1, 3, 32, 32), mode=mode)
    assert list(depths) == [n for n, _ in model.named_parameters()]
    assert _depths(model, LayerDecay(0.5, depth=depths)) == _depths(model, LayerDecay(0.5, depth=mode))  # type: ignore[arg-type]


class _Unused(nn.Module):
    """A stem, two blocks, an auxiliary head that never runs, a norm registered late, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(2)])
        self.aux = nn.Linear(4, 4)  # never runs
        self.norm = nn.LayerNorm(4)  # registered after the blocks, runs right after the stem
        self.head = nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        x = self.norm(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def test_tensor_mode_numbers_the_tensors_as_they_run() -> None:
    model, x = _Unused(), flow.zeros(1, 4)
    depths = forward_depths(model, x, mode="tensor")
    order = forward_order(model, x)
    assert sorted(depths, key=depths.__getitem__) == order
    assert sorted(depths.values()) == list(range(len(depths)))
    assert list(depths) != order  # the norm is registered after the blocks and runs before them


def test_a_module_that_never_runs_stays_beside_the_one_registered_before_it() -> None:
    order = forward_order(_Unused(), flow.zeros(1, 4))
    assert order[:4] == ["stem.weight", "stem.bias", "norm.weight", "norm.bias"]
    assert order[-4:] == ["aux.weight", "aux.bias", "head.weight", "head.bias"]  # aux: after blocks.1


class _Noise(nn.Module):
    """Draws from the RNG in every mode (eval mode alone would not keep the RNG as it was)."""

    def forward(self, x: Any) -> Any:
        return x + 0.01 * flow.randn(*x.shape)


def test_one_forward_pass_changes_nothing() -> None:
    model = _resnet18()
    model.layer1.add_module("drop", nn.Dropout(0.5))  # draws in train mode only
    model.layer1.add_module("noise", _Noise())
    model.train()
    model.layer2.eval()  # mixed flags come back as they were
    for p in model.parameters():
        p.grad = flow.full(p.shape, 0.5)
    calls: list[str] = []
    model.fc.register_forward_pre_hook(lambda m, x: calls.append("first"))
    model.fc.register_forward_pre_hook(lambda m, x: calls.append("second"))
    del model.fc._forward_pre_hooks[0]  # OneFlow keys hooks by count: the next one would take key 1
    hooks = {id(m): dict(m._forward_pre_hooks) for m in model.modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}  # weights and BN statistics
    flags = [m.training for m in model.modules()]
    x = flow.randn(2, 3, 32, 32)
    rng = flow.get_rng_state()
    forward_depths(model, x)
    assert calls == ["second"]  # the user's hook ran, and only it
    assert all(flow.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == flags
    assert flow.equal(flow.get_rng_state(), rng)
    assert all(flow.equal(p.grad, flow.full(p.shape, 0.5)) for p in model.parameters())
    assert {id(m): dict(m._forward_pre_hooks) for m in model.modules()} == hooks


def test_a_forward_that_fails_is_a_backend_error_and_changes_nothing() -> None:
    model = _resnet18().train()
    rng = flow.get_rng_state()
    with pytest.raises(BackendError, match=r"running the model raised \w+: .*pass the inputs") as err:
        forward_depths(model, flow.randn(2, 5))  # not an image batch
    assert err.value.__cause__ is not None
    assert all(m.training for m in model.modules())
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert flow.equal(flow.get_rng_state(), rng)


def test_bad_input_is_refused_before_running() -> None:
    with pytest.raises(SpecError, match=r"mode must be one of .*got 'block'.*did you mean 'blocks'"):
        forward_depths(_Unused(), flow.zeros(1, 4), mode="block")
    with pytest.raises(BackendError, match=r"needs a oneflow.nn.Module, got dict"):
        forward_order({"w": flow.zeros(2)})


class _HeadFirst(nn.Module):
    """A tied embedding whose first registered name is the head's: it still runs first."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 10, bias=False)
        self.emb = nn.Embedding(10, 4)
        self.emb.weight = self.head.weight
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(2)])
        self.norm = nn.LayerNorm(4)

    def forward(self, ids: Any) -> Any:
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def test_a_tied_tensor_sits_where_it_first_runs_under_any_name() -> None:
    depths = forward_depths(_HeadFirst(), flow.tensor([[1, 2, 3]]))
    assert depths["head.weight"] == depths["emb.weight"] == 0
    assert depths["norm.weight"] == max(depths.values()) == 3


def _tower() -> Any:
    blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(2)])
    return nn.ModuleDict({"emb": nn.Linear(4, 4), "layers": blocks, "norm": nn.LayerNorm(4)})


class _TwoTowers(nn.Module):
    """CLIP's shape: the text tower registered first, the vision tower run first."""

    def __init__(self) -> None:
        super().__init__()
        self.txt = _tower()
        self.vis = _tower()

    @staticmethod
    def _run(tower: Any, x: Any) -> Any:
        x = tower["emb"](x)
        for layer in tower["layers"]:
            x = layer(x)
        return tower["norm"](x)

    def forward(self, text: Any, image: Any) -> Any:
        return self._run(self.vis, image) + self._run(self.txt, text)


@pytest.mark.parametrize("backend", ["oneflow", "oneflow-graph"])
def test_towers_take_one_map_each_with_their_within(backend: str) -> None:
    model, x = _TwoTowers(), (flow.zeros(1, 4), flow.zeros(1, 4))

    def scales(text: Any, vision: Any) -> dict[str, float]:
        towers = [LayerDecay(0.5, depth=text, within="txt.*"), LayerDecay(0.5, depth=vision, within="vis.*")]
        return {p.name: p.scale for p in multilr.plan(model, Spec(lr=1.0, layer_decay=towers), backend=backend).params}

    by_forward = scales(forward_depths(model, x, within="txt.*"), forward_depths(model, x, within="vis.*"))
    assert by_forward == scales("blocks", "blocks")
    assert by_forward["vis.norm.weight"] == by_forward["txt.norm.weight"] == 1.0


class _Matched(nn.Module):
    """timm's hint: a ``group_matcher`` that puts two blocks in one group (a stage)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(4)])
        self.head = nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"stem": r"^stem", "blocks": [(r"^blocks\.[01]\.", (1,)), (r"^blocks\.[23]\.", (2,))]}


def test_a_models_group_matcher_keeps_its_depths_unless_hints_are_off() -> None:
    model, x = _Matched(), flow.zeros(1, 4)
    hinted = forward_depths(model, x)
    assert _depths(model, LayerDecay(0.5, depth=hinted)) == _depths(model, LayerDecay(0.5))
    assert forward_depths(model, x, model_hints=False)["head.weight"] == 5 != hinted["head.weight"]


class _SideEffects(nn.Module):
    """A ``train()`` override with a side effect: freezing the norm in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: Any) -> Any:
        return self.norm(self.fc(x))

    def train(self, mode: bool = True) -> Any:
        super().train(mode)
        for p in self.norm.parameters():
            p.requires_grad = mode
        return self


def test_eval_mode_is_set_without_calling_train_overrides() -> None:
    model = _SideEffects()
    forward_depths(model, flow.zeros(1, 4))
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_a_batch_as_args_or_a_graph_is_refused_before_running() -> None:
    with pytest.raises(BackendError, match=r"args is a mapping \(dict: a tokenizer's output\?\); pass it as kwargs"):
        forward_depths(_Unused(), {"x": flow.zeros(1, 4)})
    model = _Unused()

    class Graph(nn.Graph):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def build(self, x: Any) -> Any:
            return self.model(x)

    with pytest.raises(BackendError, match=r"got the nn.Graph Graph; pass the module it was made from"):
        forward_order(Graph(), flow.zeros(1, 4))
