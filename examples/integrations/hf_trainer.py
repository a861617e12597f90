"""multilr with Hugging Face's ``Trainer``: layer-wise decay on BERT, ``optimizers=(opt, sched)``.

A ``BertForSequenceClassification`` built from a tiny ``BertConfig`` (random weights, no
download) learns which half of the vocabulary the first of some generated tokens
comes from (the rest is noise).
The spec gives every encoder layer ``0.75 ** (distance from the top)`` of the rate
(embeddings lowest, classifier highest), keeps biases and LayerNorms out of weight decay, and drives all
groups with Hugging Face's linear warm-up and decay (multilr's ``Warmup`` over a linear
``Polynomial`` is the same curve). The Trainer takes the optimizer and a
``multilr_torch.MultiLRScheduler`` as they are and steps the scheduler once per
optimizer step; a ``Recorder`` attached to the optimizer reads the rates each step
really used, and the Trainer's own logged ``learning_rate`` is group 0's (the embeddings').

Run: ``python examples/integrations/hf_trainer.py`` (under a minute on 2 CPU cores).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import torch
from multilr_torch import MultiLRScheduler
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import multilr
from multilr import LayerDecay, RateHistory, Spec
from multilr.schedules import Polynomial, Schedule, Warmup

VOCAB, LENGTH = 64, 16


def make_spec(steps: int, warmup: int) -> Spec:
    """Layer decay 0.75, no decay on biases and norms, HF's linear warm-up/decay over ``steps``."""
    return Spec(
        lr=5e-3,
        weight_decay=0.01,
        no_decay=("bias", "norm"),
        layer_decay=LayerDecay(0.75),
        # transformers' get_linear_schedule_with_warmup: t/w, then (T - t)/(T - w)
        schedule=Warmup(Polynomial(steps - warmup), steps=warmup, start=0.0),
    )


def make_model(layers: int = 3, hidden: int = 32, seed: int = 0) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=2 * hidden, max_position_embeddings=LENGTH, num_labels=2,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


class KeywordData(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Random token sequences; the label says whether the first token is in the upper half."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, LENGTH), generator=gen)
        self.labels = (self.ids[:, 0] >= VOCAB // 2).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.long),
                "labels": self.labels[i]}


@dataclass(frozen=True)
class Result:
    """What the run did: the plan, the rates each step used, HF's logs, the weights."""

    plan: multilr.Plan
    schedule: Schedule
    history: RateHistory
    log_history: list[dict[str, float]]
    initial: dict[str, torch.Tensor]
    final: dict[str, torch.Tensor]
    group_count: int


def main(steps: int = 40, warmup: int = 8, output_dir: str | None = None, seed: int = 0,
         verbose: bool = True) -> Result:
    """Fine-tune for ``steps`` optimizer steps with the Trainer and report."""
    model = make_model(seed=seed)
    groups = multilr.build(model, make_spec(steps, warmup), backend="torch")
    opt = torch.optim.AdamW(groups)
    sched = MultiLRScheduler(opt, groups)
    recorder = multilr.Recorder(opt).attach()
    if verbose:
        print(groups.plan.summary())
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=output_dir or tmp, max_steps=steps, per_device_train_batch_size=16,
            logging_steps=10, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0, seed=seed,
        )
        trainer = Trainer(model=model, args=args, train_dataset=KeywordData(640, seed),
                          optimizers=(opt, sched))
        trainer.train()
    recorder.detach()

    history = recorder.history()
    if verbose:
        for row in trainer.state.log_history:
            if "loss" in row:
                step, loss, lr = row["step"], row["loss"], row["learning_rate"]
                print(f"step {step:3.0f}  loss {loss:.3f}  HF's learning_rate {lr:.3g}")
        print(f"rates the optimizer used (of {len(history.steps)} steps), at steps 0, {warmup}, {steps - 1}:")
        for g in history.groups:
            r = history.rates[g]
            print(f"  {g:18s} {r[0]:.3g}  {r[warmup]:.3g}  {r[-1]:.3g}")
    return Result(
        groups.plan, sched.controller.schedule, history, list(trainer.state.log_history), initial,
        {n: p.detach().clone() for n, p in model.named_parameters()}, len(opt.param_groups),
    )


if __name__ == "__main__":
    main()
