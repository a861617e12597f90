"""The README's three recipes, printed: run ``python examples/recipes.py``.

``tests/test_readme.py`` checks that the README shows exactly what this prints.
"""

from __future__ import annotations

import models

import multilr
from multilr import LayerDecay, Prefix, Regex, Rule, Spec


def head_backbone() -> str:
    """Head at full rate, backbone at a tenth, stem frozen, no decay on biases and norms."""
    model = models.resnet18(width=8)
    spec = Spec(
        lr=1e-3,
        weight_decay=0.05,
        no_decay=("bias", "norm"),
        rules=[
            Rule(Prefix("fc"), lr_mult=1.0, name="head"),
            Rule("layer*", lr_mult=0.1, name="backbone"),
            Rule(Regex(r"^(conv1|bn1)\."), frozen=True, name="stem"),
        ],
    )
    groups = multilr.build(model, spec, backend="torch")
    return groups.plan.table(rich=False, max_rows=8)


def bert_layer_decay() -> str:
    """Layer-wise decay 0.75 on a BERT: embeddings lowest, classifier at the full rate."""
    model = models.bert(layers=4)
    spec = Spec(
        lr=2e-5,
        weight_decay=0.01,
        no_decay=("bias", "norm"),
        layer_decay=LayerDecay(0.75, depth="blocks"),
    )
    return multilr.plan(model, spec, backend="torch").summary(rich=False)


def seed_000() -> str:
    """Seed 000's recipe in one line: x0.9 per top-level block, counting back from the head."""
    model = models.resnet18(width=8)
    return multilr.plan(model, Spec(lr=1e-2, layer_decay=LayerDecay(0.9, depth="top"))).summary(rich=False)


RECIPES = {"head-backbone": head_backbone, "bert-layer-decay": bert_layer_decay, "seed-000": seed_000}


def main() -> None:
    for name, fn in RECIPES.items():
        print(f"## {name}\n{fn()}\n")


if __name__ == "__main__":
    main()
