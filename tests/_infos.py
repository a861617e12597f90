"""Hand-made ParamInfo lists: the planner tested with no framework at all."""

from __future__ import annotations

from multilr import ParamInfo

_TYPES = {
    "conv": ("Conv2d", "_ConvNd"),
    "bn": ("BatchNorm2d", "_BatchNorm", "_NormBase"),
    "ln": ("LayerNorm",),
    "fc": ("Linear",),
    "emb": ("Embedding",),
}


def info(name: str, shape: tuple[int, ...] = (4, 4), kind: str = "fc", key: object = None) -> ParamInfo:
    module = name.rpartition(".")[0]
    return ParamInfo(name, shape, "float32", module, _TYPES[kind], True, key if key is not None else name)


def resnet_like() -> list[ParamInfo]:
    """Names of a torchvision resnet18 (62 tensors), shapes shrunk."""
    out = [info("conv1.weight", (4, 3, 3, 3), "conv"), info("bn1.weight", (4,), "bn"), info("bn1.bias", (4,), "bn")]
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            for conv in (1, 2):
                out += [
                    info(f"{p}.conv{conv}.weight", (4, 4, 3, 3), "conv"),
                    info(f"{p}.bn{conv}.weight", (4,), "bn"),
                    info(f"{p}.bn{conv}.bias", (4,), "bn"),
                ]
            if layer > 1 and block == 0:
                out += [
                    info(f"{p}.downsample.0.weight", (4, 4, 1, 1), "conv"),
                    info(f"{p}.downsample.1.weight", (4,), "bn"),
                    info(f"{p}.downsample.1.bias", (4,), "bn"),
                ]
    out += [info("fc.weight", (10, 4)), info("fc.bias", (10,))]
    return out


def bert_like(layers: int = 3) -> list[ParamInfo]:
    """Names as transformers' BertForSequenceClassification gives them."""
    out = [
        info("bert.embeddings.word_embeddings.weight", (30, 8), "emb"),
        info("bert.embeddings.position_embeddings.weight", (16, 8), "emb"),
        info("bert.embeddings.LayerNorm.weight", (8,), "ln"),
        info("bert.embeddings.LayerNorm.bias", (8,), "ln"),
    ]
    for i in range(layers):
        p = f"bert.encoder.layer.{i}"
        out += [
            info(f"{p}.attention.self.query.weight"),
            info(f"{p}.attention.self.query.bias", (4,)),
            info(f"{p}.attention.output.LayerNorm.weight", (8,), "ln"),
            info(f"{p}.output.dense.weight"),
        ]
    out += [info("bert.pooler.dense.weight"), info("bert.pooler.dense.bias", (8,))]
    out += [info("classifier.weight", (2, 8)), info("classifier.bias", (2,))]
    return out


def tied_lm() -> list[ParamInfo]:
    """An LM whose output head is the input embedding (one tensor, two names)."""
    out = [info("embed.weight", (50, 8), "emb", key="E")]
    for i in range(2):
        out += [info(f"layers.{i}.attn.weight"), info(f"layers.{i}.norm.weight", (8,), "ln")]
    out += [info("norm.weight", (8,), "ln"), info("lm_head.weight", (50, 8), "fc", key="E")]
    return out
