"""Layer-wise rate decay on BERT, with the rates read back from a real optimizer step.

A ``BertForSequenceClassification`` built from a tiny random config (``models.bert``: 4
encoder layers, hidden size 32; nothing is downloaded) is fine-tuned on generated token
sequences: the label says whether the first token comes from the upper half of the
vocabulary, and the other tokens are noise. One spec gives every layer
``0.75 ** (distance from the top)`` of the rate (``LayerDecay(0.75, depth="blocks")``:
embeddings at depth 0, ``encoder.layer.i`` at ``i + 1``, pooler and classifier on top)
and keeps biases and LayerNorms out of weight decay.

What it prints:

1. the plan's summary: one line per group with its rate;
2. the rates measured per layer: one SGD step on a float64 copy of the model, built
   from the same spec, moves every tensor by exactly ``-lr * (grad + wd * p)``, so
   ``lr = -<delta, d> / <d, d>`` with ``d = grad + wd * p`` is the rate the optimizer
   really applied. It must equal the plan's rate for every tensor of every layer;
3. loss and accuracy before and after a short AdamW fine-tuning on the same groups.

The exit status is 1 if a measured rate differs from the planned one.

Run (about 10 s on 2 CPU cores, most of it importing torch and transformers)::

    .venv/bin/python examples/bert_layer_decay.py
    .venv/bin/python examples/bert_layer_decay.py --steps 40 --decay 0.9
"""

from __future__ import annotations

import argparse
import copy
import re
from dataclasses import dataclass

import models
import torch
from _text import table
from torch import nn

import multilr
from multilr import LayerDecay, Spec

VOCAB, LENGTH = 100, 16  # models.bert's vocabulary; sequences well under its 64 positions
# A read-back rate carries float64 rounding of about eps * |p| / |delta| (p1 - p0 loses
# that much of the 1e-16): at most 1e-10 here. A tensor at a wrong depth would be off by
# 1 - 0.75 = 25% or more, so 1e-6 separates the two by orders of magnitude either way.
RTOL = 1e-6


def make_spec(lr: float, decay: float) -> Spec:
    """Layer-wise decay over the encoder's numbered blocks; no weight decay on biases and norms."""
    return Spec(lr=lr, weight_decay=0.01, no_decay=("bias", "norm"),
                layer_decay=LayerDecay(decay, depth="blocks"))


def layer_of(name: str) -> str:
    """The layer a BERT parameter belongs to, as the rates table lists them.

    Example:
        >>> layer_of("bert.encoder.layer.2.attention.self.query.weight"), layer_of("classifier.bias")
        ('layer.2', 'classifier')
        >>> layer_of("bert.embeddings.LayerNorm.weight"), layer_of("bert.pooler.dense.bias")
        ('embeddings', 'pooler')
    """
    block = re.match(r"bert\.encoder\.layer\.(\d+)\.", name)
    if block:
        return f"layer.{block.group(1)}"
    return name.removeprefix("bert.").split(".")[0]


@dataclass(frozen=True)
class Data:
    """Token ids ``(N, LENGTH)`` and labels ``(N,)``."""

    ids: torch.Tensor
    labels: torch.Tensor


def make_data(n: int, seed: int) -> Data:
    """Random sequences; label 1 when the first token is in the upper half of the vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=gen)
    return Data(ids, (ids[:, 0] >= VOCAB // 2).long())


def loss_of(model: nn.Module, data: Data) -> torch.Tensor:
    loss: torch.Tensor = model(input_ids=data.ids, labels=data.labels).loss
    return loss


@torch.no_grad()
def evaluate(model: nn.Module, data: Data) -> tuple[float, float]:
    """Loss and accuracy in eval mode (no dropout)."""
    model.eval()
    out = model(input_ids=data.ids, labels=data.labels)
    acc = (out.logits.argmax(dim=1) == data.labels).float().mean()
    return float(out.loss), float(acc)


def measure_rates(model: nn.Module, spec: Spec, batch: Data) -> dict[str, float]:
    """Each tensor's rate read back from one SGD step on a float64 copy built from ``spec``.

    SGD without momentum moves a tensor by exactly ``-lr * (grad + wd * p)`` (torch adds
    the L2 term to the gradient), so the least-squares ``lr`` over the whole tensor is the
    rate applied; float64 keeps the read-back exact to about 1e-12. Tensors that got no
    gradient and no decay cannot show a rate and are left out.
    """
    probe = copy.deepcopy(model).double()
    groups = multilr.build(probe, spec, backend="torch")
    opt = torch.optim.SGD(groups)  # SGD's own default is momentum 0: the update is rate x direction
    decay = {id(p): float(g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    probe.eval()  # no dropout: the same gradient on every run
    loss_of(probe, batch).backward()  # type: ignore[no-untyped-call, unused-ignore]
    before = {n: p.detach().clone() for n, p in probe.named_parameters()}
    opt.step()
    rates = {}
    for name, p in probe.named_parameters():
        if p.grad is None:  # not reached by the loss: nothing to read a rate from
            continue
        direction = p.grad + decay[id(p)] * before[name]
        norm = float((direction * direction).sum())
        if norm > 0:
            rates[name] = -float(((p.detach() - before[name]) * direction).sum()) / norm
    return rates


def rate_rows(plan: multilr.Plan, measured: dict[str, float]) -> tuple[list[list[str]], float]:
    """One row per layer (planned rate, measured min and max, worst relative error) and that error."""
    by_layer: dict[str, list[str]] = {}
    for p in plan.params:
        by_layer.setdefault(layer_of(p.name), []).append(p.name)
    rows, worst = [], 0.0
    for layer, names in by_layer.items():
        planned = {plan.param(n).lr for n in names}
        got = [measured[n] for n in names if n in measured]
        if not got:  # no tensor of the layer could show its rate
            rows.append([layer, str(len(names)), str(plan.param(names[0]).depth),
                         " / ".join(f"{r:.7g}" for r in sorted(planned)), "-", "-", "-"])
            continue
        err = max(abs(measured[n] - plan.param(n).lr) / plan.param(n).lr for n in names if n in measured)
        worst = max(worst, err)
        rows.append([layer, str(len(names)), str(plan.param(names[0]).depth),
                     " / ".join(f"{r:.7g}" for r in sorted(planned)),
                     f"{min(got):.7g}", f"{max(got):.7g}", f"{err:.1e}"])
    return rows, worst


def train(model: nn.Module, opt: torch.optim.Optimizer, data: Data, *, steps: int, batch: int, seed: int
          ) -> None:
    """``steps`` optimizer steps on random batches drawn from a generator seeded by ``seed`` alone."""
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data.labels), (batch,), generator=gen)
        loss = loss_of(model, Data(data.ids[idx], data.labels[idx]))
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
        opt.step()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=5e-3, help="the top layer's rate (default 5e-3)")
    parser.add_argument("--decay", type=float, default=0.75, help="rate factor per layer (default 0.75)")
    parser.add_argument("--steps", type=int, default=80, help="AdamW fine-tuning steps (default 80)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model = models.bert(num_labels=2, layers=4, hidden=32, vocab=VOCAB, seed=args.seed)
    spec = make_spec(args.lr, args.decay)
    train_data, test_data = make_data(1024, args.seed), make_data(512, args.seed + 1)

    groups = multilr.build(model, spec, backend="torch")
    print(groups.plan.summary(rich=False))

    # measured before training, on a copy: the run below starts from the same weights
    measured = measure_rates(model, spec, Data(train_data.ids[:64], train_data.labels[:64]))
    rows, worst = rate_rows(groups.plan, measured)
    print(f"\nrates read back from one SGD step (float64 copy; {len(measured)} of "
          f"{len(groups.plan.params)} tensors had a gradient)")
    print(table(["layer", "tensors", "depth", "planned lr", "measured min", "measured max", "max rel err"],
                rows), end="\n\n")
    ok = worst <= RTOL
    print(f"measured == planned for every tensor: {'yes' if ok else 'NO'} "
          f"(worst relative error {worst:.1e}, tolerance {RTOL:g})")

    before = evaluate(model, train_data), evaluate(model, test_data)
    opt = torch.optim.AdamW(groups)  # the groups carry every rate and weight decay
    train(model, opt, train_data, steps=args.steps, batch=32, seed=args.seed)
    after = evaluate(model, train_data), evaluate(model, test_data)
    print(f"\nfine-tuning: AdamW on the same groups, {args.steps} steps of 32 sequences")
    print(table(["when", "train loss", "train acc", "test loss", "test acc"],
                [[when, f"{tr[0]:.4f}", f"{tr[1]:.4f}", f"{te[0]:.4f}", f"{te[1]:.4f}"]
                 for when, (tr, te) in (("before", before), ("after", after))]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
