"""PyTorch backend for multilr: ``multilr.build(model, spec, backend="torch")``.

Emits one dict per plan group with the group's own rate in ``lr`` (the scale is
already multiplied in, so torch's schedulers, which scale each group from its
``initial_lr``, keep the ratios) and no ``lr_scale`` key, which torch would ignore.

Frozen parameters stay in the optimizer, in their own groups with ``lr`` 0, and get
``requires_grad=False``: they receive no gradient, so no update, no momentum and no
weight decay touch them, and the group list never has to grow when they are
unfrozen later. Parameters the model already has ``requires_grad=False`` on are
planned like any other and left as they are.
"""

from multilr_torch._backend import TorchBackend
from multilr_torch._forward import forward_depths, forward_order
from multilr_torch._scheduler import MultiLRScheduler

__all__ = ["MultiLRScheduler", "TorchBackend", "forward_depths", "forward_order"]
