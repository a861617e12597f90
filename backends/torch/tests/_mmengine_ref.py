"""MMEngine's ``DefaultOptimWrapperConstructor.add_params`` transcribed (mmengine is not installed here).

From mmengine's ``optim/optimizer/default_constructor.py`` (0.4 and later): custom keys
(the longest key that is a substring of ``prefix.name``, alphabetical among equals; a
root tensor's ``prefix.name`` starts with a dot) decide rate and decay and copy every
option into the group; otherwise ``bias_lr_mult`` for biases outside norm layers, and
the weight decay from the first of norm (``_BatchNorm``, ``_InstanceNorm``,
``GroupNorm``, ``LayerNorm``) > bias > depthwise conv > ``ndim == 1``, each only when
its multiplier is given. Used by ``test_translating.py`` and ``test_mmengine.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

MM_NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
#: Per tensor name: (lr, weight_decay, frozen).
Settings = dict[str, tuple[float, float, bool]]


class Detector(nn.Module):
    """Every kind of tensor MMEngine tells apart: conv with bias, the four norm classes and
    two it does not count (RMSNorm), a depthwise conv, a 0-d scalar, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, groups=8),
            nn.GroupNorm(2, 8), nn.LayerNorm(8), nn.RMSNorm(8), nn.InstanceNorm2d(8, affine=True),
        )  # fmt: skip
        self.neck = nn.Linear(8, 8)
        self.logit_scale = nn.Parameter(torch.tensor(1.0))
        self.head = nn.Linear(8, 4)


def add_params(model: nn.Module, lr: float, wd: float | None, cfg: dict[str, Any], default_wd: float = 0.0) -> Settings:
    """Per tensor ``(lr, weight_decay, frozen)`` as ``add_params`` decides them (``wd=None``: no base)."""
    custom = cfg.get("custom_keys", {})
    keys = sorted(sorted(custom), key=len, reverse=True)
    out: Settings = {}

    def visit(module: nn.Module, prefix: str) -> None:
        is_norm = isinstance(module, MM_NORMS)
        is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups
        for name, p in module.named_parameters(recurse=False):
            group: dict[str, Any] = {}
            for key in keys:
                if key in f"{prefix}.{name}":
                    group["lr"] = lr * custom[key].get("lr_mult", 1.0)
                    if wd is not None:
                        group["weight_decay"] = wd * custom[key].get("decay_mult", 1.0)
                    group.update(custom[key])
                    break
            else:
                if name == "bias" and not is_norm and cfg.get("bias_lr_mult") is not None:
                    group["lr"] = lr * cfg["bias_lr_mult"]
                if wd is not None:
                    if is_norm and cfg.get("norm_decay_mult") is not None:
                        group["weight_decay"] = wd * cfg["norm_decay_mult"]
                    elif name == "bias" and cfg.get("bias_decay_mult") is not None:
                        group["weight_decay"] = wd * cfg["bias_decay_mult"]
                    elif is_dwconv and cfg.get("dwconv_decay_mult") is not None:
                        group["weight_decay"] = wd * cfg["dwconv_decay_mult"]
                    elif p.ndim == 1 and cfg.get("flat_decay_mult") is not None:
                        group["weight_decay"] = wd * cfg["flat_decay_mult"]
            full = f"{prefix}.{name}" if prefix else name
            base_wd = wd if wd is not None else default_wd  # the optimizer's default
            out[full] = (group.get("lr", lr), group.get("weight_decay", base_wd), not group.get("requires_grad", True))
        for child_name, child in module.named_children():
            visit(child, f"{prefix}.{child_name}" if prefix else child_name)

    visit(model, "")
    return out
