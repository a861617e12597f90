"""The contract a backend plugin implements.

A backend knows one framework and nothing about rates: ``extract`` lists a model's
named parameters as :class:`~multilr.ParamInfo`, ``emit`` turns a :class:`~multilr.Plan`
into that framework's optimizer groups. The rate arithmetic lives in the core
(:func:`group_options`), so every backend writes the same numbers.

A plugin registers a factory (a class or function taking no arguments) in the
``multilr.backends`` entry-point group::

    [project.entry-points."multilr.backends"]
    mybackend = "my_package:MyBackend"

A backend that also implements :class:`TableBackend` lets ``build`` read the model
once: its table (columns plus the tensors) serves both the planner and ``emit``.

Optional: ``unwrap(model)`` returns the model inside a framework wrapper (torch's DDP,
``DataParallel``, ``torch.compile``); ``plan`` and ``build`` read the model's hints
(timm's ``group_matcher()``) from it. A backend with ``unwrap`` reads through the
wrapper in ``extract`` and ``emit`` too, so names and depths are the model's own and
a spec matches the same tensors with or without the wrapper.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from multilr._decisions import Decisions
from multilr._emitted import check_emitted  # public here, where backend authors look
from multilr._params import ParamInfo, ParamTable
from multilr._plantypes import Plan
from multilr.errors import BackendError

__all__ = [
    "Backend",
    "Convention",
    "ModuleWalk",
    "ParamTable",
    "TableBackend",
    "attach_params",
    "attach_table",
    "check_emitted",
    "class_names",
    "collect_params",
    "frozen_params",
    "frozen_tensors",
    "group_options",
    "known_class_names",
    "walk_params",
]

#: How a target applies a group's scale. ``"lr"``: the scale is multiplied into each
#: group's ``lr`` (torch, OneFlow eager, and every scheduler that scales from
#: ``initial_lr``). ``"lr_scale"``: one base ``lr`` everywhere and the scale in
#: ``lr_scale`` (OneFlow ``nn.Graph``). Never both: that applies the scale twice.
Convention = Literal["lr", "lr_scale"]


@runtime_checkable
class Backend(Protocol):
    """What a backend provides.

    ``name`` and ``convention`` are read-only members: a class attribute
    (``convention: Convention = "lr"``; annotate it, or a type checker reads ``str``), a
    ``Final`` or a property all satisfy the protocol.
    """

    @property
    def name(self) -> str:
        """The name users pass as ``backend=``."""
        ...

    @property
    def convention(self) -> Convention:
        """How this target applies scales (see :data:`Convention`)."""
        ...

    def extract(self, model: Any) -> Sequence[ParamInfo]:
        """Every named parameter of ``model``, in model order.

        Tied tensors appear under every name with one shared ``key``. Must not
        modify the model.
        """
        ...

    def emit(self, model: Any, plan: Plan) -> list[dict[str, Any]]:
        """Optimizer groups for ``plan``: :func:`group_options` plus the tensors.

        The tensors go under ``"params"``. Validates everything before it changes
        the model (frozen flags).
        """
        ...


@runtime_checkable
class TableBackend(Backend, Protocol):
    """A backend that reads a model once for both planning and emitting.

    ``build`` calls these two instead of ``extract`` and ``emit`` when all four come
    from one class (a subclass that overrides only ``emit`` is called as written): the
    model is walked once, and emit takes its tensors from the table of that walk, a
    moment later in the same call. ``plan``, ``extract`` and ``emit`` called on their own
    each read the model afresh.
    """

    def extract_table(self, model: Any) -> ParamTable:
        """What ``extract`` gives, as columns, with ``tensors`` filled in."""
        ...

    def emit_table(self, table: ParamTable, plan: Plan) -> list[dict[str, Any]]:
        """What ``emit`` gives for the model ``table`` was just read from."""
        ...


def group_options(plan: Plan, convention: Convention) -> list[dict[str, Any]]:
    """Every group's settings except its tensors, in plan order, all keys explicit.

    Args:
        plan: The plan.
        convention: ``"lr"`` writes each group's own rate into ``lr`` and no
            ``lr_scale``; ``"lr_scale"`` writes the base rate into every ``lr`` and the
            group's scale into ``lr_scale``.

    Example:
        >>> from multilr import ParamInfo, Rule, Spec, plan
        >>> infos = [ParamInfo(n, (2, 2), "float32", "", ("Linear",), True, n) for n in ("a.w", "b.w")]
        >>> p = plan(infos, Spec(lr=0.1, rules=[Rule("b.*", lr_mult=0.5, name="b")]))
        >>> [(o["name"], o["lr"]) for o in group_options(p, "lr")]
        [('default', 0.1), ('b', 0.05)]
        >>> [(o["lr"], o["lr_scale"]) for o in group_options(p, "lr_scale")]
        [(0.1, 1.0), (0.1, 0.5)]
    """
    hyper, base = _checked(plan, convention)
    if convention == "lr":
        out = [
            {"name": name, "lr": 0.0 if frozen else lr, "weight_decay": wd}
            for name, _, lr, _, wd, frozen in plan._group_rows()
        ]
    else:
        out = [
            {"name": name, "lr": base, "lr_scale": 0.0 if frozen else scale, "weight_decay": wd}
            for name, _, _, scale, wd, frozen in plan._group_rows()
        ]
    if hyper:
        for opts in out:
            opts.update(hyper)
    return out


def _checked(plan: Plan, convention: Convention) -> tuple[dict[str, Any], float]:
    """The spec's ``hyper`` and base rate, once ``convention`` is known to be valid."""
    if convention not in ("lr", "lr_scale"):
        raise ValueError(f"convention must be 'lr' or 'lr_scale', got {convention!r}")
    return dict(plan.spec.hyper), plan.base_lr


def attach_params(plan: Plan, convention: Convention, tensors: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Complete optimizer groups: :func:`group_options` plus each group's tensors.

    A backend calls this from ``emit`` with its model's tensors by name, then, once it
    returns, sets its framework's frozen flag on :func:`frozen_params`: every check
    happens here, before the model is touched.

    Args:
        plan: The plan.
        convention: The backend's convention.
        tensors: Canonical parameter name -> the framework's tensor.

    Raises:
        BackendError: A planned parameter is missing from ``tensors`` (the model changed
            after planning).

    Example:
        >>> from multilr import ParamInfo, Spec, plan
        >>> p = plan([ParamInfo("w", (1,), "float32", "", (), True, "w")], Spec(lr=0.1))
        >>> attach_params(p, "lr", {"w": "tensor-w"})
        [{'params': ['tensor-w'], 'name': 'default', 'lr': 0.1, 'weight_decay': 0.0}]
    """
    hyper, base = _checked(plan, convention)
    get = tensors.__getitem__
    try:
        members = [list(map(get, params)) for _, params, *_ in plan._group_rows()]
    except KeyError:
        for name, params, *_ in plan._group_rows():  # the first group, in order, that misses one
            missing = [n for n in params if n not in tensors]
            if missing:
                raise BackendError(
                    f"the model has no parameter {missing[0]!r} that the plan puts in group "
                    f"{name!r}; was the model changed after planning?"
                ) from None
        raise
    return _with_options(plan, convention, members, hyper, base)


def attach_table(plan: Plan, convention: Convention, table: ParamTable) -> list[dict[str, Any]]:
    """:func:`attach_params` with the tensors of the table ``plan`` was resolved from.

    A backend's ``emit_table`` calls this. When ``plan`` came from ``table`` itself (the
    planner kept its list of names), each tensor goes to its group by position, in one
    pass, with no lookup by name; any other plan is matched by name, as
    :func:`attach_params` does, tied names folded into the plan's canonical ones.

    Args:
        plan: The plan.
        convention: The backend's convention.
        table: A table with ``tensors`` (what ``extract_table`` returns).

    Raises:
        BackendError: The table has no tensors, or lacks a parameter the plan names.

    Example:
        >>> from multilr import ParamInfo, Rule, Spec, plan
        >>> table = ParamTable.from_infos([ParamInfo(n, (1,), "f", "", (), True, n) for n in ("a", "b")])
        >>> table.tensors = ["tensor-a", "tensor-b"]
        >>> p = plan(table.infos(), Spec(lr=0.1, rules=[Rule("b", lr_mult=2, name="b")]))
        >>> [(g["name"], g["params"]) for g in attach_table(p, "lr", table)]
        [('default', ['tensor-a']), ('b', ['tensor-b'])]
    """
    tensors = table.tensors
    if tensors is None:
        raise BackendError("emit_table needs a table from extract_table (one with tensors)")
    members = _members_by_position(plan, table)
    if members is None:
        aliases = plan.aliases
        by_name: dict[str, Any] = {}
        for name, p in zip(table.names, tensors, strict=True):
            by_name.setdefault(aliases.get(name, name), p)
        return attach_params(plan, convention, by_name)
    hyper, base = _checked(plan, convention)
    return _with_options(plan, convention, members, hyper, base)


def _members_by_position(plan: Plan, table: ParamTable) -> list[list[Any]] | None:
    """Each group's tensors, by position, when ``plan`` was resolved from ``table`` untied.

    The planner keeps the table's own list of names when no tensor is tied, so the
    same list object proves the positions line up; anything else returns ``None``.
    """
    decided = plan.__dict__.get("_decided")
    if not isinstance(decided, Decisions) or decided.names is not table.names:
        return None
    assert table.tensors is not None
    if len(table.tensors) != len(decided.group_of):
        return None
    return decided.group_members(table.tensors)


def _with_options(
    plan: Plan, convention: Convention, members: list[list[Any]], hyper: dict[str, Any], base: float
) -> list[dict[str, Any]]:
    """One dict per group: its tensors, then its settings."""
    # Written out whole: the same keys, in the same order, as
    # ``{"params": [...], **group_options(plan, convention)[i]}``, without the second dict.
    rows = plan._group_rows()
    if convention == "lr":
        groups = [
            {"params": params, "name": name, "lr": 0.0 if frozen else lr, "weight_decay": wd}
            for params, (name, _, lr, _, wd, frozen) in zip(members, rows, strict=True)
        ]
    else:
        groups = [
            {
                "params": params,
                "name": name,
                "lr": base,
                "lr_scale": 0.0 if frozen else scale,
                "weight_decay": wd,
            }
            for params, (name, _, _, scale, wd, frozen) in zip(members, rows, strict=True)
        ]
    if hyper:
        for group in groups:
            group.update(hyper)
    return groups


def frozen_tensors(plan: Plan, groups: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The tensors of the frozen groups of ``plan``, from the groups emitted for it.

    Example:
        >>> from multilr import ParamInfo, Rule, Spec, plan
        >>> p = plan([ParamInfo(n, (1,), "f", "", (), True, n) for n in ("a", "b")],
        ...          Spec(lr=0.1, rules=[Rule("b", frozen=True)]))
        >>> frozen_tensors(p, attach_params(p, "lr", {"a": "A", "b": "B"}))
        ['B']
    """
    rows = plan._group_rows()
    return [p for row, group in zip(rows, groups, strict=True) if row[5] for p in group["params"]]


def frozen_params(plan: Plan) -> list[str]:
    """Canonical names of the parameters in frozen groups, in plan order.

    Example:
        >>> from multilr import ParamInfo, Rule, Spec, plan
        >>> p = plan([ParamInfo(n, (1,), "float32", "", (), True, n) for n in ("a", "b")],
        ...          Spec(lr=0.1, rules=[Rule("b", frozen=True)]))
        >>> frozen_params(p)
        ['b']
    """
    return [n for _, params, _, _, _, frozen in plan._group_rows() if frozen for n in params]


class ModuleWalk(NamedTuple):
    """Every parameter of a module tree, as columns (see :func:`collect_params`)."""

    names: list[str]
    modules: list[str]
    module_types: list[tuple[str, ...]]
    tensors: list[Any]


def collect_params(root: Any, base: type) -> ModuleWalk:
    """Every parameter of ``root``, ties included, in :func:`walk_params` order, as columns.

    The same pre-order walk over ``_parameters`` and ``_modules`` as :func:`walk_params`,
    without a generator frame per module, and with each owning module's
    :func:`class_names` looked up once per module rather than once per parameter:
    about a fifth less time on 2,000 tensors, half of ``named_parameters()``.

    Args:
        root: A torch or OneFlow module.
        base: The framework's module base class, left out of the class names.

    Example:
        >>> class Mod:  # what torch and OneFlow modules keep
        ...     def __init__(self, params=(), **children):
        ...         self._parameters, self._modules = dict(params), children
        >>> walk = collect_params(Mod([("w", "W")], fc=Mod([("b", "B")])), object)
        >>> walk.names, walk.modules, walk.module_types, walk.tensors
        (['w', 'fc.b'], ['', 'fc'], [('Mod',), ('Mod',)], ['W', 'B'])
    """
    walk = ModuleWalk([], [], [], [])
    names, modules, types, tensors = walk
    known = _CLASS_NAMES

    def visit(module: Any, prefix: str) -> None:
        params = module._parameters
        if params:
            cls = type(module)
            classes = known.get(cls) or class_names(cls, base)
            path = prefix[:-1]  # the module's own path: its prefix without the dot
            for pname, p in params.items():
                if p is not None:
                    names.append(prefix + pname)
                    modules.append(path)
                    types.append(classes)
                    tensors.append(p)
        for cname, child in module._modules.items():
            if child is not None:
                visit(child, f"{prefix}{cname}.")

    try:
        visit(root, "")
    except RecursionError:
        # A module that holds an ancestor (a child keeping its parent as an attribute, which
        # registers it) or a tree deeper than the recursion limit: walk again without
        # recursion, skipping any module already on the path, as torch's memo does.
        return _collect_without_recursion(root, base)
    return walk


def _collect_without_recursion(root: Any, base: type) -> ModuleWalk:
    """:func:`collect_params` with an explicit stack; a module inside itself is walked once.

    Slower (it keeps each module's ancestors), so only taken when the recursive walk
    cannot finish.
    """
    walk = ModuleWalk([], [], [], [])
    names, modules, types, tensors = walk
    stack: list[tuple[Any, str, frozenset[int]]] = [(root, "", frozenset())]
    while stack:
        module, prefix, ancestors = stack.pop()
        params = module._parameters
        if params:
            classes = class_names(type(module), base)
            for pname, p in params.items():
                if p is not None:
                    names.append(prefix + pname)
                    modules.append(prefix[:-1])
                    types.append(classes)
                    tensors.append(p)
        inside = ancestors | {id(module)}
        children = [
            (child, f"{prefix}{cname}.", inside)
            for cname, child in module._modules.items()
            if child is not None and id(child) not in inside
        ]
        stack.extend(reversed(children))  # popped in registration order: the same pre-order
    return walk


def walk_params(module: Any, prefix: str = "") -> Iterator[tuple[str, str, Any, Any]]:
    """(full name, module path, owning module, parameter) for every parameter, ties included.

    Pre-order over each module's own ``_parameters`` and ``_modules`` tables, a layout
    torch and OneFlow share: the order of torch's ``named_parameters(remove_duplicate=False)``,
    about three times faster than the public generators, and it keeps tied names, which
    OneFlow 0.9's ``named_parameters`` drops with no switch to keep them.

    Example:
        >>> class Mod:  # what torch and OneFlow modules keep
        ...     def __init__(self, params=(), **children):
        ...         self._parameters, self._modules = dict(params), children
        >>> fc = Mod([("b", "B")])
        >>> [(name, path, p) for name, path, _, p in walk_params(Mod([("w", "W")], fc=fc, head=fc))]
        [('w', '', 'W'), ('fc.b', 'fc', 'B'), ('head.b', 'head', 'B')]
    """
    for pname, p in module._parameters.items():
        if p is not None:
            yield (f"{prefix}.{pname}" if prefix else pname), prefix, module, p
    for cname, child in module._modules.items():
        if child is not None:
            yield from walk_params(child, f"{prefix}.{cname}" if prefix else cname)


_CLASS_NAMES: dict[type, tuple[str, ...]] = {}


def class_names(cls: type, base: type) -> tuple[str, ...]:
    """``cls`` and its bases up to (not including) ``base``, most derived first; cached.

    Example:
        >>> class A: pass
        >>> class B(A): pass
        >>> class C(B): pass
        >>> class_names(C, A)
        ('C', 'B')
    """
    names = _CLASS_NAMES.get(cls)
    if names is None:
        names = _CLASS_NAMES[cls] = tuple(c.__name__ for c in cls.__mro__ if c not in (base, object))
    return names


def known_class_names(cls: type) -> tuple[str, ...] | None:
    """What :func:`class_names` keeps for ``cls``, or ``None`` when no walk has met it yet.

    A backend that fixes up a rare module class after :func:`collect_params` asks this
    first: a class no walk has met owns no tensor of this one, so a model without it
    pays nothing. The tuple is the very object the walk put in its ``module_types``.

    Example:
        >>> class Rare: pass
        >>> known_class_names(Rare) is None, class_names(Rare, object) is known_class_names(Rare)
        (True, True)
    """
    return _CLASS_NAMES.get(cls)
