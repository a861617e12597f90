"""The entry points: ``plan`` (spec -> Plan) and ``build`` (spec -> optimizer groups)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, cast

from multilr._emitted import check_emitted
from multilr._hints import ModelHints, flagged_names, read_hints, with_flags
from multilr._params import ParamInfo, ParamTable
from multilr._plan import resolve
from multilr._plantypes import Plan
from multilr._registry import get_backend, infer_backend
from multilr._spec import Spec, as_spec
from multilr.backend import Backend, TableBackend

__all__ = ["ParamGroups", "build", "plan"]

SpecLike = Spec | Mapping[str, Any] | str | os.PathLike[str]


class ParamGroups(list[dict[str, Any]]):
    """The optimizer groups ``build`` returns.

    A plain list of dicts (what every optimizer constructor takes) that also
    carries the plan it came from.

    Attributes:
        plan: The :class:`~multilr.Plan` these groups implement.
        backend: Name of the backend that emitted them.
    """

    def __init__(self, groups: Iterable[dict[str, Any]], *, plan: Plan, backend: str) -> None:
        super().__init__(groups)
        self.plan = plan
        self.backend = backend


def plan(model: Any, spec: SpecLike, *, backend: str | Backend | None = None) -> Plan:
    """Resolve a spec against a model without touching the model.

    Args:
        model: A framework model (read through ``backend``) or a list of
            :class:`~multilr.ParamInfo` (no framework needed).
        spec: A :class:`~multilr.Spec`, a mapping, or a ``.json``/``.yaml`` path.
        backend: Backend name or instance used to read ``model``; by default the
            model's framework decides (``torch``, or ``oneflow`` for eager OneFlow).

    Returns:
        The plan; ``print(plan.table())`` shows who decided what.

    Example:
        >>> infos = [ParamInfo(n, (4,), "float32", n[:-2], ("Linear",), True, n)
        ...          for n in ("stem.w", "head.w")]
        >>> p = plan(infos, {"lr": 0.01, "rules": [{"prefix": "stem", "frozen": True}]})
        >>> [(g.name, g.frozen) for g in p.groups]
        [('prefix:stem/frozen', True), ('default', False)]
    """
    spec = as_spec(spec)
    if _is_infos(model):
        return resolve(model, spec)
    be = get_backend(backend or infer_backend(model))
    if _reads_once(be):
        table = cast(TableBackend, be).extract_table(model)
        return resolve(table, spec, hints=_hints(_unwrapped(be, model), spec, table))
    return resolve(be.extract(model), spec, hints=_hints(_unwrapped(be, model), spec))


def build(model: Any, spec: SpecLike, backend: str | Backend | None = None) -> ParamGroups:
    """Plan a spec for ``model`` and emit optimizer groups for ``backend``.

    Nothing about the model changes unless the whole build succeeds; then the only
    change is ``requires_grad=False`` on parameters a rule marks frozen. A backend
    with table methods (torch's) reads the model once: the planner's table and the
    emitted tensors come from the same walk.

    Args:
        model: The model (``torch.nn.Module`` for ``"torch"``).
        spec: A :class:`~multilr.Spec`, a mapping, or a ``.json``/``.yaml`` path.
        backend: ``"torch"``, ``"oneflow"``, ``"oneflow-graph"``, another installed
            backend's name, or a backend instance. By default the model's framework
            decides (``torch``, or ``oneflow`` eager); name ``"oneflow-graph"`` for nn.Graph.

    Returns:
        The groups, ready for the framework's optimizer; ``.plan`` holds the plan.

    Raises:
        MultiLRError: The spec, the plan or the backend refused (a subclass naming the
            key, rule or parameter); a ``BackendError`` when a backend's ``emit`` returns
            groups that do not implement the plan, one per plan group, in order.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        >>> groups = build(model, {"lr": 1e-3, "rules": [{"prefix": "1", "lr_mult": 10}]})
        >>> opt = torch.optim.AdamW(groups)
        >>> [g["lr"] for g in opt.param_groups]
        [0.001, 0.01]
    """
    be = get_backend(backend or infer_backend(model))
    if _reads_once(be) and not _is_infos(model):
        # one walk of the model: emit takes the tensors the planner's table came with
        reader, checked = cast(TableBackend, be), as_spec(spec)  # the spec first, as plan() does
        table = reader.extract_table(model)
        resolved = resolve(table, checked, hints=_hints(_unwrapped(be, model), checked, table))
        groups = reader.emit_table(table, resolved)
        if not _shipped(be):  # a third-party backend's table methods are checked as its emit is
            groups = check_emitted(be.name, resolved, be.convention, groups)
        return ParamGroups(groups, plan=resolved, backend=be.name)
    resolved = plan(model, spec, backend=be)
    groups = check_emitted(be.name, resolved, be.convention, be.emit(model, resolved))
    return ParamGroups(groups, plan=resolved, backend=be.name)


#: The backend packages of this repository: the conformance suite runs their one-walk path
#: (``emit_table``) on every case, so ``build`` does not check its groups again.
_SHIPPED = ("multilr_torch", "multilr_oneflow")


def _shipped(be: Backend) -> bool:
    """Whether ``be``'s table methods are those of a backend package shipped with multilr."""
    owner = next((cls for cls in type(be).__mro__ if "emit_table" in vars(cls)), type(be))
    return owner.__module__.partition(".")[0] in _SHIPPED


def _unwrapped(be: Backend, model: Any) -> Any:
    """The model inside a wrapper the backend knows (DDP's ``module``): its hints are read.

    ``unwrap`` is optional in the backend contract; the backend's own ``extract`` and
    ``emit`` read through the wrapper themselves.
    """
    unwrap = getattr(be, "unwrap", None)
    return model if unwrap is None else unwrap(model)


def _hints(model: Any, spec: Spec, table: ParamTable | None = None) -> ModelHints | None:
    """The model's own hints, unless the spec says no.

    timm's ``no_weight_decay()`` and ``group_matcher()``, and the ``_no_weight_decay``
    flags on the tensors of ``table`` (a backend's ``extract`` gives records without
    the tensors, so only a backend with table methods passes them on).
    """
    if not spec.model_hints:
        return None
    hints = read_hints(model)
    if table is None or not table.tensors:
        return hints
    return with_flags(hints, flagged_names(table.names, table.tensors))


def _is_infos(model: Any) -> bool:
    """A list of :class:`~multilr.ParamInfo`: planned as is, no framework needed."""
    return isinstance(model, (list, tuple)) and all(isinstance(x, ParamInfo) for x in model)


_TABLE_PATH = ("extract", "emit", "extract_table", "emit_table")


def _reads_once(be: Backend) -> bool:
    """Whether ``be``'s table methods may stand in for its ``extract`` and ``emit``.

    Only when all four come from one class: a subclass that overrides ``emit`` (to
    change the groups) or ``extract`` (to hide parameters) is called as written.
    """
    if not isinstance(be, TableBackend) or any(m in getattr(be, "__dict__", ()) for m in _TABLE_PATH):
        return False
    mro = type(be).__mro__
    owners = {next((cls for cls in mro if m in vars(cls)), None) for m in _TABLE_PATH}
    return len(owners) == 1 and None not in owners
