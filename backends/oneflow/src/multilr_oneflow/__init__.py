"""OneFlow backends for multilr.

* ``multilr.build(model, spec, backend="oneflow")``: eager mode, per-group ``lr``.
* ``multilr.build(model, spec, backend="oneflow-graph")``: ``nn.Graph``, one base ``lr``
  and per-group ``lr_scale``; add the optimizer with :func:`add_optimizer`.

Importing this package loads OneFlow, after loading the cuDNN/cuBLAS wheels it needs
(see ``_load.py``): no ``LD_LIBRARY_PATH`` to export.
"""

from multilr_oneflow._backend import EagerBackend, GraphBackend
from multilr_oneflow._forward import forward_depths, forward_order
from multilr_oneflow._graph import GRAPH_SCHEDULERS, add_optimizer, check_scheduler, rates_at
from multilr_oneflow._load import import_oneflow
from multilr_oneflow._recorder import graph_recorder
from multilr_oneflow._schedules import graph_scheduler

__all__ = [
    "GRAPH_SCHEDULERS",
    "EagerBackend",
    "GraphBackend",
    "add_optimizer",
    "check_scheduler",
    "forward_depths",
    "forward_order",
    "graph_recorder",
    "graph_scheduler",
    "import_oneflow",
    "rates_at",
]
