"""Every Python block of the README and ``docs/`` runs as written, with what its prose gives it.

A block is a fragment: it uses the ``model``, ``opt`` or ``loader`` the text around it
speaks of. :data:`CONTEXT` makes those, fresh, just before the block runs (keyed by the
block's first line); the blocks of one document share one namespace, in order, so a
block may use what an earlier one imported, as a reader's session would. :data:`THEN`
checks what a block claims where it says so in a comment (the recorder saves one rate
per step, the finder's suggestion becomes the spec's rate, a resume restores the rates).

Blocks for OneFlow run on the OneFlow side
(``backends/oneflow/tests/test_doc_snippets_oneflow.py``); the rest of the blocks not
run here are in :data:`NOT_RUN`, each with the test that runs its recipe instead.
``test_every_block_is_run_somewhere`` fails when a new block is in none of the three.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = ("README.md", "docs/checkpoints.md", "docs/distributed.md", "docs/translating.md")

_FRESH_RESNET = "torch.manual_seed(0)\nmodel = models.resnet18(width=4)\n"
_DATA = (
    "gen = torch.Generator().manual_seed(0)\n"
    "loader = [(torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen))"
    " for _ in range(4)]\n"
    "loss_fn = torch.nn.CrossEntropyLoss()\n"
)
#: The context a fake-free third-party backend needs: the torch backend under another name.
_MYBACKEND = (
    "from multilr_torch import TorchBackend\n"
    "class Mine(TorchBackend):\n    name = 'mybackend'\n"
    "multilr.register_backend('mybackend', Mine)\n"
)

#: (document, the block's first line) -> code run before the block: what the prose has made.
CONTEXT: dict[tuple[str, str], str] = {
    ("README.md", "import multilr, torch"): "import models, torch\n" + _FRESH_RESNET,
    ("README.md", "spec = Spec("): _FRESH_RESNET,
    ("README.md", "spec = Spec(lr=2e-5, weight_decay=0.01, no_decay=(\"bias\", \"norm\"), layer_decay=LayerDecay(0.75))"): (
        "bert = models.bert()\n"
    ),
    ("README.md", "print(multilr.plan(resnet18, Spec(lr=1e-2, layer_decay=LayerDecay(0.9, depth=\"top\"))).summary())"): (
        "resnet18 = models.resnet18(width=4)\n"
    ),
    ("README.md", "from multilr_torch import forward_depths"): (
        "from transformers import OPTConfig, OPTForCausalLM\n"
        "torch.manual_seed(0)\n"
        "model = OPTForCausalLM(OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, ffn_dim=32,\n"
        "    num_attention_heads=2, max_position_embeddings=32, word_embed_proj_dim=16))\n"
        "batch = {'input_ids': torch.randint(0, 50, (1, 6)), 'attention_mask': torch.ones(1, 6, dtype=torch.long)}\n"
    ),
    ("README.md", "from multilr.schedules import OneCycle, Warmup, Cosine"): (
        _FRESH_RESNET + "groups = multilr.build(model, Spec(lr=1e-3))\nopt = torch.optim.AdamW(groups)\n"
    ),
    ("README.md", "groups = multilr.build(model, spec)"): (
        _FRESH_RESNET + _DATA + "spec = Spec(lr=0.1, layer_decay=LayerDecay(0.75), schedule=Cosine(8))\n"
    ),
    ("README.md", "rec = multilr.Recorder(opt, meta={\"run\": \"ft-3\"})  # nn.Graph: multilr_oneflow.graph_recorder(opt, sch)"): (
        _FRESH_RESNET + _DATA + "head = Rule(Prefix('fc'), lr_mult=10, name='head')  # the comment's group\n"
        "groups = multilr.build(model, Spec(lr=0.1, rules=[head]))\n"
        "opt = torch.optim.SGD(groups)\n"
        "sched = torch.optim.lr_scheduler.LambdaLR(opt, OneCycle(total=8))\n"
    ),
    ("README.md", "import itertools"): (
        _FRESH_RESNET + _DATA + "spec = Spec(lr=1e-3, layer_decay=LayerDecay(0.75))\n"
        "groups = multilr.build(model, spec)\nopt = torch.optim.SGD(groups, momentum=0.9)\n"
    ),
    ("README.md", "import torch"): _MYBACKEND,
    ("docs/checkpoints.md", "# saving"): (
        "import models, multilr, torch\nfrom multilr import Spec\nfrom multilr.schedules import Cosine\n"
        + _FRESH_RESNET + _DATA
        + "def make_model():\n    return models.resnet18(width=4)\n"
        "spec = Spec(lr=0.1, schedule=Cosine(8))\n"
        "groups = multilr.build(model, spec)\nopt = torch.optim.AdamW(groups)\n"
        "ctl = multilr.Controller(opt, groups)\n"
        "for x, y in loader:\n"
        "    opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step(); ctl.step()\n"
        "before = [g['lr'] for g in opt.param_groups]\n"
    ),
    ("docs/translating.md", "Spec(lr=lr, weight_decay=wd, no_decay=[\"1d\"], layer_decay=LayerDecay(ld))"): (
        "import multilr, torch\nfrom torch import nn\n"
        "from multilr import LayerDecay, Predicate, Prefix, Rule, Spec\n"
        "lr, wd, ld = 1e-3, 0.05, 0.75\n"
    ),
    ("docs/translating.md", "modules = dict(model.named_modules())"): (
        "model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1))\n"
    ),
}

#: (document, first line) -> code run after the block: what its comments say it did.
THEN: dict[tuple[str, str], str] = {
    ("README.md", "import multilr, torch"): "assert len(opt.param_groups) == len(groups)\n",
    ("README.md", "rec = multilr.Recorder(opt, meta={\"run\": \"ft-3\"})  # nn.Graph: multilr_oneflow.graph_recorder(opt, sch)"): (
        "history = multilr.RateHistory.load('rates.json')\n"
        "assert history.steps == tuple(range(len(loader))), history.steps\n"
        "assert history.rates['head'][1] > history.rates['head'][0]  # one-cycle warms up\n"
    ),
    ("README.md", "from multilr_torch import forward_depths"): (
        "plan = multilr.plan(model, spec)  # OPT's final norm, registered first, runs last: the head\n"
        "assert plan.param('model.decoder.final_layer_norm.weight').depth == plan.max_depth == 4\n"
    ),
    ("README.md", "import itertools"): (
        "import os\nassert spec.lr == result.suggestion and os.path.getsize('finder.png') > 0\n"
    ),
    ("README.md", "import pytest, torch"): (
        "cells = conformance_cells('mybackend')\n"
        "test_conformance(cells[0].values[0])  # the decorated test, on its first cell\n"
    ),
    ("docs/checkpoints.md", "# saving"): (
        "assert [g['lr'] for g in opt.param_groups] == before\n"
        "assert all(len(s) for s in opt.state.values()) and len(opt.state) > 0\n"
    ),
    ("docs/translating.md", "modules = dict(model.named_modules())"): (
        "decay = {p.name: p.weight_decay for p in multilr.plan(model, spec).params}\n"
        "assert decay == {'0.weight': 1e-4, '0.bias': 1e-4, '1.weight': 0.0, '1.bias': 0.0,\n"
        "                 '2.weight': 1e-4, '2.bias': 1e-4}, decay\n"
    ),
}

#: (document, first line) -> why it does not run here, and what runs its recipe.
NOT_RUN: dict[tuple[str, str], str] = {
    ("docs/distributed.md", "import multilr, torch"): (
        "needs a process group: the `ddp` scenario of test_distributed.py (_dist_worker.run_ddp) "
        "runs this order (build, optimizer, Controller(freeze_by='grad'), DDP) on 2 gloo ranks"
    ),
    ("docs/distributed.md", "plan = multilr.plan(model, spec)        # optional: before sharding, e.g. print it on rank 0"): (
        "needs a process group: the `fsdp2` scenarios of test_distributed.py "
        "(_dist_worker.run_fsdp2, run_fsdp2_stages) shard, then build, on 2 gloo ranks"
    ),
}


def blocks(doc: str) -> Iterator[tuple[int, str, str]]:
    """(line, first line, code) of each ```` ```python ```` block of ``doc``, in order."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        code = m.group(1)
        yield text.count("\n", 0, m.start()) + 2, code.partition("\n")[0], code


def is_oneflow(code: str) -> bool:
    """A block for OneFlow (its code, not its comments, names it): the OneFlow side runs it."""
    return "oneflow" in re.sub(r"#.*", "", code)


def _torch_docs() -> list[str]:
    return [d for d in DOCS if any(not is_oneflow(c) and (d, f) not in NOT_RUN for _, f, c in blocks(d))]


def test_every_block_is_run_somewhere() -> None:
    keys = [(doc, first) for doc in DOCS for _, first, _ in blocks(doc)]
    assert len(keys) == len(set(keys)), "two blocks of one document start alike: give CONTEXT a longer key"
    for table in (CONTEXT, THEN, NOT_RUN):
        assert set(table) <= set(keys), f"stale keys (no such block): {set(table) - set(keys)}"
    oneflow = [k for doc in DOCS for _, first, code in blocks(doc) if is_oneflow(code) for k in [(doc, first)]]
    assert oneflow, "the README's OneFlow blocks are found"
    assert not set(oneflow) & set(NOT_RUN)


@pytest.mark.parametrize("doc", _torch_docs())
def test_doc_blocks_run_as_written(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # blocks save rates.json, finder.png, ckpt.pt
    from multilr import _registry

    namespace: dict[str, object] = {}
    ran = 0
    try:
        for line, first, code in blocks(doc):
            if is_oneflow(code) or (doc, first) in NOT_RUN:
                continue
            for part, source in (("context", CONTEXT.get((doc, first), "")), ("block", code),
                                 ("check", THEN.get((doc, first), ""))):  # fmt: skip
                try:
                    exec(compile(source, f"{doc}:{line} ({part})", "exec"), namespace)
                except Exception as exc:
                    raise AssertionError(f"{doc}, the block at line {line} ({part}): {exc!r}") from exc
            ran += 1
    finally:
        _registry._registered.pop("mybackend", None)
        _registry._instances.pop("mybackend", None)
    assert ran > 0
