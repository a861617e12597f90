"""Small, deterministic reference models for the examples and the test-suite.

Everything here is built from scratch (no torchvision, no timm, no downloads), and every
builder takes ``seed`` and seeds torch before constructing, so two calls with the same
arguments give bit-identical weights. What the tests rely on is the *parameter naming*
of well-known architectures, so each builder documents the names it produces.

* :func:`resnet18`: torchvision's ResNet-18 names (62 tensors), any width.
* :func:`bert`: ``transformers.BertForSequenceClassification`` from a tiny config.
* :func:`tied_lm`: a decoder LM whose ``lm_head.weight`` *is* ``embed.weight``.
* :func:`mlp`: two linear layers named ``layer1``/``layer2``.
* :func:`digits_cnn`: the demo's stem / numbered blocks / head CNN (``examples/_digits.py``).

Example:
    >>> [n for n, _ in resnet18(width=8).named_parameters()][-2:]
    ['fc.weight', 'fc.bias']
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BasicBlock",
    "ResNet18",
    "TiedLM",
    "bert",
    "digits_cnn",
    "mlp",
    "resnet18",
    "tied_lm",
]


# -- ResNet-18 -------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two 3x3 convs, optional ``downsample`` shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        # attribute order == registration order == torchvision's parameter order
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's module names; ``width`` scales every channel count."""

    def __init__(self, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(width, width, stride=1)
        self.layer2 = self._stage(width, 2 * width, stride=2)
        self.layer3 = self._stage(2 * width, 4 * width, stride=2)
        self.layer4 = self._stage(4 * width, 8 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)

    @staticmethod
    def _stage(inplanes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 10, width: int = 64, *, seed: int = 0) -> nn.Module:
    """ResNet-18 whose ``named_parameters()`` match torchvision's exactly.

    62 tensors: ``conv1.weight``, ``bn1.weight``, ``bn1.bias``, then per block
    ``layerN.M.{conv1,bn1,conv2,bn2}...`` (``layer1.0.conv1.weight`` first), the
    shortcuts ``layer{2,3,4}.0.downsample.{0.weight,1.weight,1.bias}``, and last
    ``fc.weight``, ``fc.bias``. Names and count do not depend on ``width``.

    Args:
        num_classes: Outputs of ``fc``.
        width: Channels of the stem (torchvision: 64); use 8 in tests for speed.
        seed: Seed for the initial weights.

    Example:
        >>> len(list(resnet18(width=8).parameters()))
        62
    """
    torch.manual_seed(seed)
    return ResNet18(num_classes, width)


# -- BERT ------------------------------------------------------------------------------


def bert(
    num_labels: int = 2, layers: int = 4, hidden: int = 32, *, vocab: int = 100, seed: int = 0
) -> nn.Module:
    """``BertForSequenceClassification`` from a tiny random ``BertConfig`` (no download).

    Parameter names (transformers 5.x), 16 per encoder layer, 5 + 16 * layers + 4 in all
    (73 for 4 layers)::

        bert.embeddings.word_embeddings.weight
        bert.embeddings.position_embeddings.weight
        bert.embeddings.token_type_embeddings.weight
        bert.embeddings.LayerNorm.weight / .bias
        bert.encoder.layer.{i}.attention.self.{query,key,value}.weight / .bias
        bert.encoder.layer.{i}.attention.output.dense.weight / .bias
        bert.encoder.layer.{i}.attention.output.LayerNorm.weight / .bias
        bert.encoder.layer.{i}.intermediate.dense.weight / .bias
        bert.encoder.layer.{i}.output.dense.weight / .bias
        bert.encoder.layer.{i}.output.LayerNorm.weight / .bias
        bert.pooler.dense.weight / .bias
        classifier.weight / .bias

    Args:
        num_labels: Outputs of ``classifier``.
        layers: Encoder layers.
        hidden: Hidden size (a multiple of 4: 4 attention heads).
        vocab: Vocabulary size; small, so the embedding stays tiny.
        seed: Seed for the initial weights.
    """
    # imported here: transformers is slow to import and only the BERT tests need it
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model: nn.Module = BertForSequenceClassification(config)
    return model


# -- tied decoder LM -------------------------------------------------------------------


class _Attention(nn.Module):
    """Causal multi-head self-attention with one fused ``qkv`` projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class _Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TiedLM(nn.Module):
    """Decoder LM whose output projection shares the embedding tensor."""

    def __init__(self, vocab: int = 50, dim: int = 16, layers: int = 2, heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        # weight tying: one tensor, two names (GPT-2, T5, ...)
        self.lm_head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.layers:
            x = block(x)
        return self.lm_head(self.norm(x))


def tied_lm(vocab: int = 50, dim: int = 16, layers: int = 2, *, seed: int = 0) -> nn.Module:
    """Tiny decoder LM with ``lm_head.weight`` tied to ``embed.weight``.

    ``named_parameters()`` lists ``embed.weight`` once and never ``lm_head.weight``
    (1 + 12 * layers + 2 names: 27 for 2 layers); ``named_parameters(remove_duplicate=False)``
    lists ``lm_head.weight`` last as well (28), and it is the same tensor. Per block:
    ``layers.{i}.norm1.{weight,bias}``, ``layers.{i}.attn.{qkv,proj}.{weight,bias}``,
    ``layers.{i}.norm2.{weight,bias}``, ``layers.{i}.mlp.{0,2}.{weight,bias}``.

    Args:
        vocab: Vocabulary size.
        dim: Model width (even: 2 heads).
        layers: Transformer blocks.
        seed: Seed for the initial weights.

    Example:
        >>> m = tied_lm()
        >>> names = [n for n, _ in m.named_parameters(remove_duplicate=False)]
        >>> names[0], names[-1], m.lm_head.weight is m.embed.weight
        ('embed.weight', 'lm_head.weight', True)
    """
    torch.manual_seed(seed)
    return TiedLM(vocab, dim, layers)


# -- MLP -------------------------------------------------------------------------------


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(10, 20)
        self.layer2 = nn.Linear(20, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x)))


def mlp(*, seed: int = 0) -> nn.Module:
    """``layer1 = Linear(10, 20)``, ``layer2 = Linear(20, 1)``: 4 tensors.

    Names: ``layer1.weight``, ``layer1.bias``, ``layer2.weight``, ``layer2.bias``.
    """
    torch.manual_seed(seed)
    return _MLP()


# -- digits CNN ------------------------------------------------------------------------
# The demo's own model (examples/_digits.py), one copy.


def digits_cnn(num_classes: int = 5, *, seed: int = 0) -> nn.Module:
    """The demo's CNN: 24 tensors, ``stem.0.weight`` first, ``head.bias`` last.

    Names: ``stem.0.{weight,bias}``, ``stem.1.{weight,bias}``, then per block
    ``blocks.{i}.conv1.weight``, ``blocks.{i}.bn1.{weight,bias}``, ``blocks.{i}.conv2.weight``,
    ``blocks.{i}.bn2.{weight,bias}``, then ``head.{weight,bias}``.

    Args:
        num_classes: Outputs of ``head``.
        seed: Seed for the initial weights.
    """
    from _digits import DigitsCNN

    torch.manual_seed(seed)
    return DigitsCNN(num_classes)
