"""Small, deterministic reference models for the examples and the test-suite.

Everything here is built from scratch (no torchvision, no timm, no downloads), and every
builder takes ``seed`` and seeds torch before constructing, so two calls with the same
arguments give bit-identical weights. What the tests rely on is the *parameter naming*
of well-known architectures, so each builder documents the names it produces.

* :func:`resnet18`: torchvision's ResNet-18 names (62 tensors), any width.
* :func:`bert`: ``transformers.BertForSequenceClassification`` from a tiny config.
* :func:`tied_lm`: a decoder LM whose ``lm_head.weight`` *is* ``embed.weight``.
* :func:`mlp`: two linear layers named ``layer1``/``layer2``.
* :func:`tiny_net`: stem, two numbered blocks, a head (the Controller tests' model).
* :func:`digits_cnn`: the demo's stem / numbered blocks / head CNN (``examples/_digits.py``).
* :func:`tiny_vit`: a timm-style ViT with timm's ``no_weight_decay()`` and ``group_matcher()``.
* :func:`llama`: LLaMA's module tree and names (LLaMA-7B shapes by default), made on the
  meta device: 6.7e9 parameters and no memory for them (shapes only, no forward).

Example:
    >>> [n for n, _ in resnet18(width=8).named_parameters()][-2:]
    ['fc.weight', 'fc.bias']
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "TinyNet",
    "tiny_net",
    "TinyViT",
    "tiny_vit",
    "LlamaConfig",
    "LlamaForCausalLM",
    "llama",
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

    # num_labels and attn_implementation go through PretrainedConfig's keyword handling at
    # run time; transformers 5's typed signature lists only BERT's own fields
    config = BertConfig(  # type: ignore[call-arg]
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
    """Multi-head self-attention with one fused ``qkv`` projection (causal for the LM, not for the ViT)."""

    def __init__(self, dim: int, heads: int, *, causal: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
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


def t5(layers: int = 2, dim: int = 16, *, vocab: int = 50, seed: int = 0) -> nn.Module:
    """``T5ForConditionalGeneration`` from a tiny random ``T5Config`` (no download).

    Its blocks nest a numbered stack of sublayers: ``encoder.block.{i}.layer.0``
    (self-attention) and ``.layer.1`` (feed-forward); the decoder's ``block.{i}`` has three
    (self-attention, cross-attention, feed-forward). ``shared.weight`` is tied to both
    ``embed_tokens`` and ``lm_head``. The model for layer decay's ``"outer"`` depth mode.

    Args:
        layers: Encoder and decoder blocks (each).
        dim: Model width (even: 2 heads of ``dim // 2``).
        vocab: Vocabulary size.
        seed: Seed for the initial weights.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=vocab,
        d_model=dim,
        d_kv=dim // 2,
        d_ff=2 * dim,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=2,
    )
    torch.manual_seed(seed)
    model: nn.Module = T5ForConditionalGeneration(config)
    return model


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


class TinyNet(nn.Module):
    """Stem, two blocks, an optional final norm, a head (3 -> 4 -> 2): see :func:`tiny_net`."""

    def __init__(self, *, nested: bool, norm: bool, act: str) -> None:
        super().__init__()
        self.stem = nn.Linear(3, 4)
        block = (lambda: nn.Sequential(nn.Linear(4, 4))) if nested else (lambda: nn.Linear(4, 4))
        self.blocks = nn.ModuleList(block() for _ in range(2))
        self.norm = nn.LayerNorm(4) if norm else None
        self.head = nn.Linear(4, 2)
        self.act = getattr(torch, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = self.act(b(x))
        return self.head(x if self.norm is None else self.norm(x))


def tiny_net(*, nested: bool = False, norm: bool = False, act: str = "tanh", seed: int = 0) -> TinyNet:
    """The Controller and atomicity tests' model: stem, two numbered blocks, a head.

    Names: ``stem.{weight,bias}``, ``blocks.{0,1}.{weight,bias}`` (``blocks.{0,1}.0.*``
    with ``nested``, a Sequential per block), ``norm.{weight,bias}`` with ``norm``,
    ``head.{weight,bias}``. ``act`` names a torch function (``tanh``, ``relu``).

    Example:
        >>> [n for n, _ in tiny_net(nested=True).named_parameters()][2:4]
        ['blocks.0.0.weight', 'blocks.0.0.bias']
    """
    torch.manual_seed(seed)
    return TinyNet(nested=nested, norm=norm, act=act)


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


# -- timm-style ViT --------------------------------------------------------------------
# timm's VisionTransformer names and hints, without timm (it would pull torchvision).


class _ViTMlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, causal=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _ViTMlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TinyViT(nn.Module):
    """timm's ``VisionTransformer`` layout, with its two hints.

    ``no_weight_decay()`` returns timm's set, ``dist_token`` included although this
    model has none (timm lists it for every ViT). ``group_matcher(coarse=False)`` is
    timm's: the stem (``cls_token``, ``pos_embed``, ``patch_embed``) is layer 0, block
    ``i`` layer ``i + 1``, the final ``norm`` joins the last block (``(99999,)``), and
    the unmatched ``head`` comes last.
    """

    def __init__(
        self, img: int = 8, patch: int = 4, chans: int = 1, dim: int = 16, depth: int = 2, classes: int = 10
    ) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(patch, chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, (img // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*(_ViTBlock(dim, 2) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "dist_token"}

    def group_matcher(self, coarse: bool = False) -> dict[str, object]:
        return {
            "stem": r"^cls_token|^pos_embed|^patch_embed",
            "blocks": r"^blocks\.(\d+)" if coarse else [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def tiny_vit(depth: int = 2, dim: int = 16, classes: int = 10, *, seed: int = 0) -> TinyViT:
    """A timm-style ViT on 8x8 one-channel images (digits): 4 + 12 * depth + 4 tensors.

    Names, in model order: ``cls_token``, ``pos_embed``, ``patch_embed.proj.{weight,bias}``,
    per block ``blocks.{i}.norm1.{weight,bias}``, ``blocks.{i}.attn.{qkv,proj}.{weight,bias}``,
    ``blocks.{i}.norm2.{weight,bias}``, ``blocks.{i}.mlp.{fc1,fc2}.{weight,bias}``, then
    ``norm.{weight,bias}``, ``head.{weight,bias}``.

    Example:
        >>> m = tiny_vit()
        >>> [n for n, _ in m.named_parameters()][:3], len(list(m.parameters()))
        (['cls_token', 'pos_embed', 'patch_embed.proj.weight'], 32)
    """
    torch.manual_seed(seed)
    return TinyViT(dim=dim, depth=depth, classes=classes)


# -- LLaMA (shapes only) ---------------------------------------------------------------


@dataclass(frozen=True)
class LlamaConfig:
    """The sizes of a LLaMA model; the defaults are LLaMA-7B's (6,738,415,616 parameters)."""

    vocab: int = 32000
    hidden: int = 4096
    intermediate: int = 11008
    layers: int = 32
    tied: bool = False  # lm_head.weight is embed_tokens.weight


class LlamaRMSNorm(nn.Module):
    """RMSNorm: one scale vector, no bias (the class name is what ``no_decay: norm`` reads)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))


class LlamaAttention(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=False)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)


class LlamaMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config.hidden)
        self.mlp = LlamaMLP(config.hidden, config.intermediate)
        self.input_layernorm = LlamaRMSNorm(config.hidden)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden)


class LlamaModel(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab, config.hidden)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config) for _ in range(config.layers))
        self.norm = LlamaRMSNorm(config.hidden)


class LlamaForCausalLM(nn.Module):
    """``transformers.LlamaForCausalLM``'s module tree and parameter names, without a forward."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden, config.vocab, bias=False)
        if config.tied:
            self.lm_head.weight = self.model.embed_tokens.weight


def llama(config: LlamaConfig | None = None, *, device: str | torch.device = "meta") -> LlamaForCausalLM:
    """A LLaMA-shaped model, by default LLaMA-7B's sizes on the meta device (no weight memory).

    Names, in model order: ``model.embed_tokens.weight``, per layer
    ``model.layers.{i}.self_attn.{q,k,v,o}_proj.weight``,
    ``model.layers.{i}.mlp.{gate,up,down}_proj.weight``,
    ``model.layers.{i}.{input,post_attention}_layernorm.weight``, then ``model.norm.weight``
    and ``lm_head.weight``: 2 + 9 * layers + 1 tensors (291 for LLaMA-7B).

    Example:
        >>> m = llama()
        >>> len(list(m.parameters())), sum(p.numel() for p in m.parameters()), m.lm_head.weight.is_meta
        (291, 6738415616, True)
    """
    with torch.device(device):
        return LlamaForCausalLM(config or LlamaConfig())
