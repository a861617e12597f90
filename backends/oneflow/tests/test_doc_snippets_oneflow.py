"""The README's OneFlow blocks run as written, with what their prose gives them.

The OneFlow side of ``backends/torch/tests/test_doc_snippets.py`` (see its docstring):
the same blocks are OneFlow's (their code, not a comment, names ``oneflow``), the same
shape of :data:`CONTEXT` (made fresh before a block) and :data:`THEN` (what the block
claims). Nothing here compiles a graph: ``Train()`` runs ``add_optimizer`` on a graph
that is never called.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]

_MODEL = (
    "import oneflow as flow\nfrom multilr import LayerDecay, Spec\n"
    "model = cases.make_model()\n"
    "spec = Spec(lr=0.1, layer_decay=LayerDecay(0.5))\n"
)

#: The block's first line -> code run before it: what the prose has made.
CONTEXT = {
    "import multilr, multilr_oneflow, oneflow as flow": _MODEL + "steps = 100\n",
    "sch = multilr_oneflow.graph_scheduler(opt, Warmup(Cosine(1000), steps=50))  # OneFlow nn.Graph": (
        "from multilr.schedules import Cosine, Warmup  # the torch block above imports them\n"
        + _MODEL
        + "opt = flow.optim.SGD(multilr.build(model, spec, backend='oneflow-graph'))\n"
    ),
}

#: The block's first line -> code run after it: what it says it did.
THEN = {
    # the graph takes the optimizer with one base lr and each group's lr_scale
    "import multilr, multilr_oneflow, oneflow as flow": (
        "graph = Train()\n"
        "scales = [g['lr_scale'] for g in opt.param_groups]\n"
        "assert len(set(scales)) > 1 and max(scales) == 1.0, scales\n"
        "assert {g['lr'] for g in opt.param_groups} == {spec.lr}\n"
    ),
    "sch = multilr_oneflow.graph_scheduler(opt, Warmup(Cosine(1000), steps=50))  # OneFlow nn.Graph": (
        "assert sch.optimizer is opt\n"
    ),
}


def oneflow_blocks() -> Iterator[tuple[int, str, str]]:
    """(line, first line, code) of each README ```` ```python ```` block whose code names OneFlow."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        code = m.group(1)
        if "oneflow" in re.sub(r"#.*", "", code):
            yield text.count("\n", 0, m.start()) + 2, code.partition("\n")[0], code


def test_every_oneflow_block_has_its_context() -> None:
    firsts = [first for _, first, _ in oneflow_blocks()]
    assert sorted(firsts) == sorted(CONTEXT), "a OneFlow block was added or changed: give it a CONTEXT"
    assert set(THEN) <= set(CONTEXT)


def test_readme_oneflow_blocks_run_as_written(cases: Any) -> None:
    namespace: dict[str, Any] = {"cases": cases}
    for line, first, code in oneflow_blocks():
        for part, source in (("context", CONTEXT[first]), ("block", code), ("check", THEN.get(first, ""))):
            try:
                exec(compile(source, f"README.md:{line} ({part})", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"README.md, the block at line {line} ({part}): {exc!r}") from exc
