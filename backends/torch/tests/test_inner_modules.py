"""Parametrized, TorchScript and compiled submodules plan as the modules they were made from.

torch keeps their tensors but not their face (``multilr_torch._inner``): a parametrized
``ln.weight`` lives at ``ln.parametrizations.weight.original`` under a
``ParametrizationList``, a scripted LayerNorm is a ``RecursiveScriptModule``, a compiled
submodule puts ``_orig_mod.`` in its names. Read as they are, a LayerNorm's weight and
a bias got weight decay and ``module_type`` rules matched nothing, silently. Each test
here compares with the plain model, and checks that the plain reading really differed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import multilr
from multilr import LayerDecay, ModuleType, Prefix, Rule, Spec
from multilr.backend import collect_params

SPEC = Spec(lr=0.01, weight_decay=0.5, no_decay=("bias", "norm"))


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4))


class _Scale(nn.Module):
    """A parametrization without tensors of its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


class _LoRA(nn.Module):
    """LoRA written as a parametrization: two tensors of its own (as minLoRA does)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.zeros(1, n))
        self.lora_B = nn.Parameter(torch.zeros(n, 1))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + self.lora_B @ self.lora_A


def _norm_weight_and_bias(m: nn.Sequential) -> None:
    parametrize.register_parametrization(m[1], "weight", _Scale())
    parametrize.register_parametrization(m[1], "bias", _Scale())


def _weight_norm_everywhere(m: nn.Sequential) -> None:
    parametrizations.weight_norm(m[0])
    parametrizations.weight_norm(m[2])
    parametrize.register_parametrization(m[1], "bias", _Scale())


def _spectral_and_orthogonal(m: nn.Sequential) -> None:
    parametrizations.spectral_norm(m[0])
    parametrizations.orthogonal(m[2])
    parametrize.register_parametrization(m[0], "bias", _Scale())


PARAMETRIZED: dict[str, Callable[[nn.Sequential], None]] = {
    "layernorm-weight-and-bias": _norm_weight_and_bias,
    "weight_norm": _weight_norm_everywhere,
    "spectral_norm-orthogonal": _spectral_and_orthogonal,
}

_MOVED = re.compile(r"^(?:(.*)\.)?parametrizations\.([^.]+)\.original\d*$")


def _logical(name: str) -> str:
    """``ln.parametrizations.weight.original0`` -> ``ln.weight``: the plain model's name."""
    m = _MOVED.match(name)
    return name if m is None else ".".join(filter(None, (m.group(1), m.group(2))))


@pytest.mark.parametrize("form", list(PARAMETRIZED), ids=list(PARAMETRIZED))
def test_a_parametrized_tensor_keeps_its_modules_classes(form: str) -> None:
    model = _net()
    PARAMETRIZED[form](model)
    moved = [n for n, _ in model.named_parameters() if _MOVED.match(n)]
    assert moved
    plain = {p.name: (p.weight_decay, p.wd_source) for p in multilr.plan(_net(), SPEC, backend="torch").params}
    got = {p.name: (p.weight_decay, p.wd_source) for p in multilr.plan(model, SPEC, backend="torch").params}
    assert {n: got[n] for n in got} == {n: plain[_logical(n)] for n in got}
    # read as torch lists them (owner ParametrizationList, last part "original"), a moved
    # bias or norm weight is in no class: what this fixes
    walk = collect_params(model, nn.Module)
    plain_classes = {n: t for n, t in zip(walk.names, walk.module_types, strict=True)}
    assert any(plain[_logical(n)][0] == 0.0 and "ParametrizationList" in plain_classes[n] for n in moved)


def test_module_type_rules_find_a_parametrized_layernorm() -> None:
    model = _net()
    _norm_weight_and_bias(model)
    p = multilr.plan(model, Spec(lr=0.01, rules=[Rule(ModuleType("LayerNorm"), lr_mult=3)]), backend="torch")
    boosted = [x.name for x in p.params if x.lr == pytest.approx(0.03)]
    assert boosted == ["1.parametrizations.weight.original", "1.parametrizations.bias.original"]


def test_the_rates_torch_applies_to_parametrized_tensors() -> None:
    # AdamW with zero gradients moves a tensor only by weight decay: p *= 1 - lr * wd
    model = _net()
    _norm_weight_and_bias(model)
    parametrizations.weight_norm(model[2])
    groups = multilr.build(model, SPEC, backend="torch")
    opt = torch.optim.AdamW(groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        wd = 0.0 if n.startswith("1.") or n.endswith("bias") else 0.5
        torch.testing.assert_close(p.detach(), before[n] * (1 - 0.01 * wd), msg=n)


def test_a_parametrizations_own_tensors_keep_their_module_and_depth() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)) for _ in range(3)))
    for block in model:
        parametrize.register_parametrization(block[0], "weight", _LoRA(4))
        block[0].parametrizations.weight.original.requires_grad_(False)  # the frozen base
    spec = Spec(lr=0.01, rules=[Rule(ModuleType("_LoRA"), lr_mult=10)], layer_decay=LayerDecay(0.5))
    p = multilr.plan(model, spec, backend="torch")
    rows = {x.name: x for x in p.params}
    # lora_A / lora_B: their own module (rate x10), the depth of their block
    for i in range(3):
        assert rows[f"{i}.0.parametrizations.weight.0.lora_A"].lr == pytest.approx(0.1 * 0.5 ** (2 - i))
        assert rows[f"{i}.0.parametrizations.weight.original"].lr == pytest.approx(0.01 * 0.5 ** (2 - i))
    # the base the model froze stays frozen-by-the-model (not a plan decision)
    assert not rows["0.0.parametrizations.weight.original"].requires_grad


def _script(m: nn.Module) -> nn.Module:
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; models still ship with it
        warnings.simplefilter("ignore")
        return torch.jit.script(m)  # type: ignore[no-any-return]


def _scripted_norm(m: nn.Sequential) -> nn.Module:
    m[1] = _script(m[1])
    return m


def _traced_whole(m: nn.Sequential) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(m, torch.zeros(2, 4))


SCRIPTED: dict[str, Callable[[nn.Sequential], nn.Module]] = {
    "script-submodule": _scripted_norm,
    "script-whole": _script,
    "trace-whole": _traced_whole,
}


@pytest.mark.parametrize("form", list(SCRIPTED), ids=list(SCRIPTED))
def test_a_torchscript_module_plans_as_its_original_class(form: str) -> None:
    model = SCRIPTED[form](_net())
    spec = Spec(
        lr=0.01, weight_decay=0.5, no_decay=("bias", "norm"), rules=[Rule(ModuleType("LayerNorm"), lr_mult=3)]
    )
    got = multilr.plan(model, spec, backend="torch").to_json()
    assert got == multilr.plan(_net(), spec, backend="torch").to_json()
    # read as torch lists them, every class is a script class: what this fixes
    walk = collect_params(model, nn.Module)
    assert "LayerNorm" not in walk.module_types[2]


def test_a_compiled_submodule_reads_as_the_module() -> None:
    def make(compiled: bool) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 4))
        body = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        model.body = torch.compile(body, backend="eager") if compiled else body  # type: ignore[assignment]
        return model

    spec = Spec(
        lr=0.01,
        weight_decay=0.5,
        no_decay=("bias", "norm"),
        rules=[Rule(Prefix("body.0"), lr_mult=3)],
        layer_decay=LayerDecay(0.5),
    )
    model = make(True)
    assert any("._orig_mod." in n for n, _ in model.named_parameters())
    groups = multilr.build(model, spec, backend="torch")
    assert groups.plan.to_json() == multilr.plan(make(False), spec, backend="torch").to_json()
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    # emit on its own walks the model again and finds the same names
    emitted = multilr.get_backend("torch").emit(model, groups.plan)
    assert [[id(p) for p in g["params"]] for g in emitted] == [[id(p) for p in g["params"]] for g in groups]
    # a rule written with torch's names says why it matches nothing
    with pytest.raises(multilr.CoverageError, match=r"compiled with torch.compile is read without"):
        multilr.plan(model, Spec(lr=0.01, rules=[Rule("body._orig_mod.0.*", lr_mult=3)]), backend="torch")
    # only a compiled wrapper's _orig_mod is read through: a module of the user's that
    # happens to carry that name keeps it (torch._dynamo is imported by now)
    holder = nn.Module()
    holder._orig_mod = nn.Linear(2, 2)
    mixed = nn.Sequential(torch.compile(nn.Linear(2, 2), backend="eager"), holder)
    names = [p.name for p in multilr.plan(mixed, Spec(lr=0.01), backend="torch").params]
    assert names == ["0.weight", "0.bias", "1._orig_mod.weight", "1._orig_mod.bias"]


def test_a_compiled_wrapper_with_a_tensor_of_its_own_keeps_torchs_names() -> None:
    """Read through, the wrapper's own ``0.weight`` and the inner ``0._orig_mod.weight`` would
    both be ``0.weight``: one name for two tensors, so one would take the other's rule. The
    walk then keeps torch's names for the whole model, every tensor planned once.

    torch refuses ``register_parameter`` on the wrapper (the name already resolves to the
    inner module's), so the tensor goes straight into ``_parameters``, as code that builds
    modules by hand can do.
    """
    model = nn.Sequential(torch.compile(nn.Linear(2, 2), backend="eager"), nn.Linear(2, 1))
    own = nn.Parameter(torch.zeros(2))
    model[0]._parameters["weight"] = own
    torch_names = [n for n, _ in model.named_parameters()]
    assert torch_names == ["0.weight", "0._orig_mod.weight", "0._orig_mod.bias", "1.weight", "1.bias"]
    groups = multilr.build(model, Spec(lr=0.01, rules=[Rule("0._orig_mod.*", lr_mult=3)]), backend="torch")
    assert [p.name for p in groups.plan.params] == torch_names
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    rates = {p.name: p.lr for p in groups.plan.params}
    assert rates["0.weight"] == pytest.approx(0.01)
    assert rates["0._orig_mod.weight"] == rates["0._orig_mod.bias"] == pytest.approx(0.03)
