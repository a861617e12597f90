"""The README's spellings, type-checked: mypy (strict) runs on this file in ``make test``.

Not a pytest module (no ``test_`` prefix): it is never run, only checked, so that what
users write from the README (lists where the dataclasses keep tuples, a glob string as a
rule's selector) stays accepted by a type checker, not only at run time.
"""

from __future__ import annotations

from multilr import Glob, LayerDecay, Prefix, Rule, Spec, Spread, Stage
from multilr.schedules import SGDR, Warmup

spec = Spec(
    lr=1e-3,
    weight_decay=0.05,
    rules=[
        Rule("layer*", lr_mult=0.1, name="backbone"),
        Rule(Prefix("fc"), lr_mult=1.0, name="head"),
        Rule(Glob("conv1.*"), frozen=True, name="stem"),
    ],
    no_decay=["bias", "norm"],
    layer_decay=LayerDecay(0.75, depth="blocks"),
    schedule=Warmup(SGDR(100, 2), steps=10),
    stages=[Stage(unfreeze=["stem"], at=100, lr_mult=0.1)],
)
spread = Spread(1e-5, 1e-3, over=["backbone", "head"])
names: tuple[str, ...] = tuple(r.name for r in spec.rules)
faster: Spec = spec.with_lr(1e-2)
# towers: a list of layer decays (README "Towers")
towers = Spec(
    lr=1e-4,
    layer_decay=[LayerDecay(0.85, within=Prefix("vision_model")), LayerDecay(0.75, within=Prefix("text_model"))],
)
decays: tuple[LayerDecay, ...] = towers.layer_decays


def forward_spec(model: object, batch: dict[str, object]) -> Spec:
    """README "Depth": a depth map from one forward pass, as ``LayerDecay``'s ``depth``."""
    from multilr_torch import forward_depths

    depths = forward_depths(model, kwargs=batch)
    text = forward_depths(model, kwargs=batch, within="text_model.*", model_hints=False)  # one tower's map
    assert LayerDecay(0.8, within="text_model.*", depth=text)
    return Spec(lr=2e-5, weight_decay=0.01, no_decay=("bias", "norm"), layer_decay=LayerDecay(0.8, depth=depths))
