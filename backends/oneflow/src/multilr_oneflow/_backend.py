"""Extraction from ``oneflow.nn.Module`` and emission for eager and ``nn.Graph``.

The two backends differ only in their convention (see :data:`multilr.backend.Convention`):
eager OneFlow's ``step`` reads only ``lr`` and ignores ``lr_scale``, so ``oneflow`` writes
each group's own rate into ``lr``; ``nn.Graph`` compiles ``lr * lr_scale``, so
``oneflow-graph`` writes the base rate into every ``lr`` and the scale into ``lr_scale``.
Writing both would apply the scale twice in a graph.
"""

from __future__ import annotations

from typing import Any

from multilr import BackendError, ParamInfo, Plan, UnsupportedFeatureError
from multilr.backend import Convention, ParamTable, attach_table, collect_params, frozen_tensors
from multilr_oneflow._load import import_oneflow

__all__ = ["EagerBackend", "GraphBackend"]


class _OneFlowBackend:
    name: str
    convention: Convention

    def __init__(self) -> None:
        self.flow = import_oneflow()

    def _module(self, model: Any) -> Any:
        if not isinstance(model, self.flow.nn.Module):
            raise BackendError(f"backend {self.name!r} needs a oneflow.nn.Module, got {type(model).__name__}")
        return model

    def extract(self, model: Any) -> list[ParamInfo]:
        """Every named parameter, tied ones under each name (key: tensor identity)."""
        return self.extract_table(model).infos()

    def extract_table(self, model: Any) -> ParamTable:
        """:meth:`extract` as columns, with the tensors: one walk of the model (``build`` reads this)."""
        names, modules, module_types, tensors = collect_params(self._module(model), self.flow.nn.Module)
        return ParamTable(
            names,
            [tuple(p.shape) for p in tensors],
            lambda: [str(p.dtype).removeprefix("oneflow.") for p in tensors],  # made only if ParamInfos are
            modules,
            module_types,
            [bool(p.requires_grad) for p in tensors],
            list(map(id, tensors)),
            tensors,
        )

    def _check(self, tensors: dict[str, Any], plan: Plan) -> None:
        """Backend-specific refusals, before anything changes."""

    def emit(self, model: Any, plan: Plan) -> list[dict[str, Any]]:
        """``{'params', 'name', 'lr', ['lr_scale',] 'weight_decay', **hyper}`` per group.

        Raises:
            BackendError: The model's parameters no longer match the plan.
            UnsupportedFeatureError: The target cannot run this model or plan.
        """
        walk = collect_params(self._module(model), self.flow.nn.Module)
        # emit reads only names and tensors: the other columns stay empty
        return self._emit(plan, ParamTable(walk.names, [], [], [], [], [], [], walk.tensors))

    def emit_table(self, table: ParamTable, plan: Plan) -> list[dict[str, Any]]:
        """:meth:`emit` with the tensors of the table :meth:`extract_table` just read."""
        if table.tensors is None:
            raise BackendError("emit_table needs a table from extract_table (one with tensors)")
        return self._emit(plan, table)

    def _emit(self, plan: Plan, table: ParamTable) -> list[dict[str, Any]]:
        assert table.tensors is not None
        tensors: dict[str, Any] = {}
        for name, p in zip(table.names, table.tensors, strict=True):
            tensors.setdefault(plan.aliases.get(name, name), p)
        _refuse_group_clipping(plan)
        self._check(tensors, plan)
        groups = attach_table(plan, self.convention, table)
        # Everything is validated; only now touch the model.
        for p in frozen_tensors(plan, groups):
            p.requires_grad = False
        return groups


#: OneFlow's per-group gradient clipping keys (``flow.optim`` reads them from each group).
_CLIP_KEYS = ("clip_grad_max_norm", "clip_grad_norm_type")


def _refuse_group_clipping(plan: Plan) -> None:
    """Refuse clipping through ``hyper`` where it would not clip what the user meant.

    OneFlow clips each param group by that group's own gradient norm (``opt.clip_grad()``
    in eager mode, automatically in nn.Graph). Copied into several groups, the clip
    keys would bound each group on its own: the model's gradient norm would exceed
    ``max_norm`` (two groups clipped to 1.0 give 1.41: ``test_refusals.py``), the smaller groups
    clipped far less than one global clip would. With one key of the two OneFlow
    clips nothing at all.

    Raises:
        UnsupportedFeatureError: One key without the other, or the keys with more than
            one group that can train.
    """
    given = [k for k in _CLIP_KEYS if k in plan.spec.hyper]
    if not given:
        return
    if len(given) == 1:
        (other,) = set(_CLIP_KEYS) - set(given)
        raise UnsupportedFeatureError(
            f"hyper.{given[0]} without hyper.{other}: OneFlow clips a group's gradients only when both "
            "are set, so nothing would be clipped; set both"
        )
    training = [g.name for g in plan.groups if not g.frozen or g.stage is not None]
    if len(training) > 1:
        shown = ", ".join(repr(n) for n in training[:3]) + (" ..." if len(training) > 3 else "")
        raise UnsupportedFeatureError(
            f"hyper.clip_grad_max_norm: OneFlow clips each param group by its own gradient norm, and this "
            f"plan has {len(training)} groups that train ({shown}): each would be clipped on its own, not "
            "the model's gradient as a whole. In eager mode, leave the clip keys out of hyper and call "
            "flow.nn.utils.clip_grad_norm_(model.parameters(), max_norm) before optimizer.step(); "
            "nn.Graph clips per param group only (one group, a spec without rules, clips the whole model)"
        )


class EagerBackend(_OneFlowBackend):
    """``oneflow``: eager mode, each group's own rate in ``lr`` (convention ``"lr"``)."""

    name = "oneflow"
    convention: Convention = "lr"


class GraphBackend(_OneFlowBackend):
    """``oneflow-graph``: one base ``lr`` and per-group ``lr_scale`` (convention ``"lr_scale"``).

    Use the groups with ``multilr_oneflow.add_optimizer(graph, optimizer, lr_sch=...)``,
    which checks the scheduler and guards the rates that the graph compiles in.
    """

    name = "oneflow-graph"
    convention: Convention = "lr_scale"

    def _check(self, tensors: dict[str, Any], plan: Plan) -> None:
        # nn.Graph runs one scheduler on one shared base rate and compiles requires_grad and
        # lr_scale at its first call: nothing can change one group's rate, or unfreeze a
        # tensor, later. Refuse the spec's runtime parts here rather than ignore them.
        if plan.spec.stages:
            st = plan.spec.stages[0]
            raise UnsupportedFeatureError(
                f"spec stage {st.name!r} unfreezes parameters at {st.when}, and nn.Graph compiles "
                "requires_grad and the rates at its first call (a new graph would lose the optimizer "
                "state); train the stages in eager mode (backend='oneflow'), or build one graph per stage "
                "from a spec without stages"
            )
        own = [(g.name, g.schedule) for g in plan.groups if g.schedule is not None]
        if own:
            name, schedule = own[0]
            raise UnsupportedFeatureError(
                f"group {name!r} has its own schedule ({schedule.describe()}) from a spec rule, and "
                "nn.Graph runs one scheduler on one base rate for all groups; use the eager backend "
                "(backend='oneflow'), or fold the schedule into the spec's schedule when all groups share it"
            )
        for name, p in tensors.items():
            if p.dtype == self.flow.float64:
                raise UnsupportedFeatureError(
                    f"parameter {name!r} is float64, and OneFlow 0.9's nn.Graph cannot compile float64 "
                    "parameters; cast the model to float32 or use the 'oneflow' (eager) backend"
                )
