"""multilr: discriminative (layer-wise) learning rates, one spec for every framework.

Write one :class:`Spec` (rules by name, module type or depth; multipliers, weight-decay
classes, frozen flags; layer-wise decay), resolve it against a model into a
:class:`Plan` (every parameter in exactly one group, each decision traced to its
rule), and let a backend emit the optimizer groups::

    import multilr, torch
    spec = multilr.Spec(lr=1e-3, no_decay=("bias", "norm"),
                        rules=[multilr.Rule(multilr.Prefix("fc"), lr_mult=10, name="head")],
                        layer_decay=multilr.LayerDecay(0.75))
    groups = multilr.build(model, spec, backend="torch")
    print(groups.plan.table())
    opt = torch.optim.AdamW(groups)

Importing multilr loads no framework; backends load when first named.
"""

from multilr import errors
from multilr._build import ParamGroups, build, plan
from multilr._checkpoint import load_state_dict, state_dict
from multilr._control import Controller, FreezeBy
from multilr._finder import FinderJob, FinderResult, lr_find
from multilr._history import RateHistory
from multilr._mmengine import from_mmengine
from multilr._params import ParamInfo
from multilr._plantypes import Group, ParamPlan, Plan
from multilr._plot import MissingDependencyError, plot_rates, terminal_view
from multilr._recorder import Recorder
from multilr._registry import get_backend, infer_backend, list_backends, register_backend
from multilr._rules import LayerDecay, Rule, Spread
from multilr._select import Glob, ModuleType, Ndim, Predicate, Prefix, Regex, Selector
from multilr._spec import NO_DECAY_CLASSES, Spec
from multilr._stages import Stage
from multilr._timeline import planned_rates
from multilr.backend import Backend, group_options
from multilr.errors import (
    BackendError,
    BackendNotFoundError,
    CheckpointError,
    ConflictError,
    CoverageError,
    MultiLRError,
    PlanError,
    SpecError,
    UnsupportedFeatureError,
)

__version__ = "0.1.0"

__all__ = [
    "NO_DECAY_CLASSES",
    "Backend",
    "BackendError",
    "BackendNotFoundError",
    "CheckpointError",
    "ConflictError",
    "Controller",
    "FreezeBy",
    "CoverageError",
    "Glob",
    "Group",
    "LayerDecay",
    "ModuleType",
    "MultiLRError",
    "Ndim",
    "ParamGroups",
    "ParamInfo",
    "ParamPlan",
    "Plan",
    "PlanError",
    "Predicate",
    "RateHistory",
    "FinderJob",
    "FinderResult",
    "MissingDependencyError",
    "Recorder",
    "Prefix",
    "Regex",
    "Rule",
    "Selector",
    "Spec",
    "SpecError",
    "Stage",
    "Spread",
    "UnsupportedFeatureError",
    "__version__",
    "build",
    "errors",
    "from_mmengine",
    "get_backend",
    "group_options",
    "infer_backend",
    "list_backends",
    "load_state_dict",
    "plan",
    "planned_rates",
    "lr_find",
    "plot_rates",
    "terminal_view",
    "register_backend",
    "state_dict",
]
