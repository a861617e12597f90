"""``multilr_torch.forward_depths``: depths from the order a real forward pass runs modules in.

Registration order is what depth inference reads, and Hugging Face's OPT and BART
register a norm far from where it runs. Here the forward order gives each model the
depths the README's ``layer_decay.place`` recipe gives it by hand, and models whose
registration order is their running order keep the depths they had. One forward pass
changes nothing: not the weights, the batch-norm statistics, the train flags, the
gradients, the hooks or the random number generators.
"""

from __future__ import annotations

from typing import Any

import models
import pytest
import torch
from multilr_torch import forward_depths, forward_order
from torch import nn

import multilr
from multilr import BackendError, LayerDecay, Spec, SpecError


def _opt() -> nn.Module:
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    config = OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, ffn_dim=32, num_attention_heads=2,
                       max_position_embeddings=32, word_embed_proj_dim=16)  # fmt: skip
    return OPTForCausalLM(config)


def _bart() -> nn.Module:
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(vocab_size=50, d_model=16, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
                        max_position_embeddings=32)  # fmt: skip
    return BartForConditionalGeneration(config)


IDS = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(0))


def _depths(model: nn.Module, layer_decay: LayerDecay) -> dict[str, int | None]:
    return {p.name: p.depth for p in multilr.plan(model, Spec(lr=1.0, layer_decay=layer_decay)).params}


@pytest.mark.parametrize(
    ("make", "inputs", "place"),
    [
        pytest.param(_opt, {"input_ids": IDS}, {"*.decoder.final_layer_norm.*": "head"}, id="opt-final-norm"),
        pytest.param(
            _bart,
            {"input_ids": IDS, "decoder_input_ids": IDS},
            # the README's recipe with 2 + 2 layers: the decoder's goes with the last encoder layer
            {"model.encoder.layernorm_embedding.*": "stem", "model.decoder.layernorm_embedding.*": 2},
            id="bart-embedding-norms",
        ),
    ],
)
def test_forward_order_gives_what_the_place_recipe_gives(make: Any, inputs: dict[str, Any], place: Any) -> None:
    model = make()
    by_forward = _depths(model, LayerDecay(0.8, depth=forward_depths(model, kwargs=inputs)))
    by_hand = _depths(model, LayerDecay(0.8, place=place))
    by_registration = _depths(model, LayerDecay(0.8))
    assert by_forward == by_hand
    moved = {n for n in by_forward if by_forward[n] != by_registration[n]}
    assert moved and all(any(w in n for w in ("final_layer_norm", "layernorm_embedding")) for n in moved), moved


@pytest.mark.parametrize(
    ("make", "args"),
    [
        pytest.param(lambda: models.resnet18(width=4), (torch.randn(2, 3, 32, 32),), id="resnet18"),
        pytest.param(models.bert, (torch.randint(0, 100, (1, 5)),), id="bert"),
        pytest.param(models.tied_lm, (torch.randint(0, 50, (1, 5)),), id="tied-lm"),
    ],
)
@pytest.mark.parametrize("mode", ["blocks", "outer", "top"])
def test_models_that_run_in_registration_order_keep_their_depths(make: Any, args: Any, mode: str) -> None:
    model = make()
    depths = forward_depths(model, args, mode=mode)
    assert list(depths) == [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert _depths(model, LayerDecay(0.5, depth=depths)) == _depths(model, LayerDecay(0.5, depth=mode))  # type: ignore[arg-type]


def test_tensor_mode_numbers_the_tensors_as_they_run() -> None:
    """Within a block the order differs: BERT adds token types before positions, a
    ResNet block runs its shortcut after its convs."""
    for model, x in ((models.bert(), torch.randint(0, 100, (1, 5))), (models.resnet18(width=4), torch.randn(1, 3, 32, 32))):
        depths = forward_depths(model, x, mode="tensor")
        assert sorted(depths, key=depths.__getitem__) == forward_order(model, x)
        assert sorted(depths.values()) == list(range(len(depths)))
        assert list(depths) != forward_order(model, x)


def test_tied_names_share_their_tensors_depth() -> None:
    model = models.tied_lm()
    depths = forward_depths(model, torch.randint(0, 50, (1, 5)))
    assert depths["lm_head.weight"] == depths["embed.weight"] == 0  # the tensor's first name decides


class _Unused(nn.Module):
    """A stem, two blocks, an auxiliary head that never runs, a norm registered late, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(2))
        self.aux = nn.Linear(4, 4)  # never runs
        self.norm = nn.LayerNorm(4)  # registered after the blocks, runs right after the stem
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def test_a_module_that_never_runs_stays_beside_the_one_registered_before_it() -> None:
    order = forward_order(_Unused(), torch.zeros(1, 4))
    assert order[:4] == ["stem.weight", "stem.bias", "norm.weight", "norm.bias"]
    assert order[-4:] == ["aux.weight", "aux.bias", "head.weight", "head.bias"]  # aux: after blocks.1


class _Noise(nn.Module):
    """Draws from the RNG in every mode (eval mode alone would not keep the RNG as it was)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.01 * torch.randn_like(x)


def test_one_forward_pass_changes_nothing() -> None:
    model = models.resnet18(width=4)
    model.layer1.add_module("drop", nn.Dropout(0.5))  # draws in train mode only
    model.layer1.add_module("noise", _Noise())
    model.train()
    model.layer2.eval()  # mixed flags come back as they were
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # weights and BN statistics
    flags = [m.training for m in model.modules()]
    x = torch.randn(2, 3, 32, 32)
    rng = torch.get_rng_state()
    forward_depths(model, x)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters() if p.grad is not None)
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_a_forward_that_fails_is_a_backend_error_and_changes_nothing() -> None:
    model = models.resnet18(width=4).train()
    with pytest.raises(BackendError, match=r"running the model raised RuntimeError: .*pass the inputs") as err:
        forward_depths(model, torch.randn(2, 5))  # not an image batch
    assert isinstance(err.value.__cause__, RuntimeError)
    assert all(m.training for m in model.modules())
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_bad_input_is_refused_before_running() -> None:
    with pytest.raises(SpecError, match=r"mode must be one of .*got 'block'.*did you mean 'blocks'"):
        forward_depths(models.tied_lm(), torch.zeros(1, 2, dtype=torch.long), mode="block")
    with pytest.raises(BackendError, match=r"needs a torch.nn.Module, got dict"):
        forward_order({"w": torch.zeros(2)})


def test_wrappers_and_parametrized_tensors_are_read_through() -> None:
    model = _Unused()
    torch.nn.utils.parametrizations.weight_norm(model.stem)
    x = torch.zeros(1, 4)
    direct = forward_depths(model, x)
    assert forward_depths(nn.DataParallel(model), x) == direct
    names = [n for n, _ in model.named_parameters()]
    assert list(direct) == names and "stem.parametrizations.weight.original0" in names
    assert direct["norm.weight"] == direct["stem.parametrizations.weight.original0"] == 0


def test_a_compiled_submodule_runs_in_its_place() -> None:
    model = _Unused()
    x = torch.zeros(1, 4)
    plain = forward_order(model, x)
    model.blocks[0] = torch.compile(model.blocks[0], backend="eager")  # names lose `_orig_mod.`
    assert forward_order(model, x) == plain


class _HeadFirst(nn.Module):
    """A tied embedding whose first registered name is the head's: it still runs first."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 10, bias=False)  # registered first, runs last
        self.emb = nn.Embedding(10, 4)
        self.emb.weight = self.head.weight
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(2))
        self.norm = nn.LayerNorm(4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def test_a_tied_tensor_sits_where_it_first_runs_under_any_name() -> None:
    model = _HeadFirst()
    depths = forward_depths(model, torch.tensor([[1, 2, 3]]))
    assert depths["head.weight"] == depths["emb.weight"] == 0
    assert depths["norm.weight"] == max(depths.values()) == 3
    # the plan keeps the tensor under its first registered name, at that depth
    assert _depths(model, LayerDecay(0.8, depth=depths))["head.weight"] == 0


def _tower() -> nn.ModuleDict:
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(2))
    return nn.ModuleDict({"emb": nn.Linear(4, 4), "layers": blocks, "norm": nn.LayerNorm(4)})


class _TwoTowers(nn.Module):
    """CLIP's shape: the text tower registered first, the vision tower run first."""

    def __init__(self) -> None:
        super().__init__()
        self.txt = _tower()
        self.vis = _tower()

    @staticmethod
    def _run(tower: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        x = tower["emb"](x)
        for layer in tower["layers"]:
            x = layer(x)
        return tower["norm"](x)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self._run(self.vis, image) + self._run(self.txt, text)


def test_towers_take_one_map_each_with_their_within() -> None:
    """A map of the whole model numbers the towers one after the other (the one run first
    would never reach factor 1); a map per tower counts that tower's own layers."""
    model, x = _TwoTowers(), (torch.zeros(1, 4), torch.zeros(1, 4))

    def scales(text: Any, vision: Any) -> dict[str, float]:
        towers = [LayerDecay(0.5, depth=text, within="txt.*"), LayerDecay(0.5, depth=vision, within="vis.*")]
        return {p.name: p.scale for p in multilr.plan(model, Spec(lr=1.0, layer_decay=towers)).params}

    by_forward = scales(forward_depths(model, x, within="txt.*"), forward_depths(model, x, within=multilr.Prefix("vis")))
    assert by_forward == scales("blocks", "blocks")
    assert by_forward["vis.norm.weight"] == by_forward["txt.norm.weight"] == 1.0
    assert by_forward["vis.emb.weight"] == by_forward["txt.emb.weight"] == 0.125
    with pytest.raises(multilr.CoverageError, match=r"within \(glob:text\.\*\) matches no parameter \(names look like 'txt.emb.weight'"):
        forward_depths(model, x, within="text.*")


def test_a_batch_given_as_args_is_refused_before_running() -> None:
    model = models.bert()
    with pytest.raises(BackendError, match=r"args is a mapping \(dict: a tokenizer's output\?\); pass it as kwargs=batch"):
        forward_depths(model, {"input_ids": torch.zeros(1, 3, dtype=torch.long)})
    assert not any(m._forward_pre_hooks for m in model.modules())


class _Matched(nn.Module):
    """timm's hint: a ``group_matcher`` that puts two blocks in one group (a stage)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"stem": r"^stem", "blocks": [(r"^blocks\.[01]\.", (1,)), (r"^blocks\.[23]\.", (2,))]}


def test_a_models_group_matcher_keeps_its_depths_unless_hints_are_off() -> None:
    model, x = _Matched(), torch.zeros(1, 4)
    hinted = forward_depths(model, x)
    assert _depths(model, LayerDecay(0.5, depth=hinted)) == _depths(model, LayerDecay(0.5))
    assert hinted["blocks.1.0.weight"] == hinted["blocks.0.0.weight"] == 1 and hinted["head.weight"] == 3
    by_run = forward_depths(model, x, model_hints=False)
    assert by_run["blocks.1.0.weight"] == 2 and by_run["head.weight"] == 5
    assert forward_depths(model, x, mode="outer") == forward_depths(model, x, mode="outer", model_hints=False)


class _SideEffects(nn.Module):
    """A ``train()`` override with a side effect: freezing the norm in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(x))

    def train(self, mode: bool = True) -> _SideEffects:
        super().train(mode)
        self.norm.requires_grad_(mode)
        return self


def test_eval_mode_is_set_without_calling_train_overrides() -> None:
    model = _SideEffects()
    forward_depths(model, torch.zeros(1, 4))
    assert all(p.requires_grad for p in model.parameters()) and model.training
