"""The contract a backend plugin implements.

A backend knows one framework and nothing about rates: ``extract`` lists a model's
named parameters as :class:`~multilr.ParamInfo`, ``emit`` turns a :class:`~multilr.Plan`
into that framework's optimizer groups. The rate arithmetic lives in the core
(:func:`group_options`), so every backend writes the same numbers.

A plugin registers a factory (a class or function taking no arguments) in the
``multilr.backends`` entry-point group::

    [project.entry-points."multilr.backends"]
    mybackend = "my_package:MyBackend"
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from multilr._params import ParamInfo
from multilr._plantypes import Plan
from multilr.errors import BackendError

__all__ = ["Backend", "Convention", "attach_params", "class_names", "group_options", "walk_params"]

#: How a target applies a group's scale. ``"lr"``: the scale is multiplied into each
#: group's ``lr`` (torch, OneFlow eager, and every scheduler that scales from
#: ``initial_lr``). ``"lr_scale"``: one base ``lr`` everywhere and the scale in
#: ``lr_scale`` (OneFlow ``nn.Graph``). Never both: that applies the scale twice.
Convention = Literal["lr", "lr_scale"]


@runtime_checkable
class Backend(Protocol):
    """What a backend provides.

    Attributes:
        name: The name users pass as ``backend=``.
        convention: How this target applies scales (see :data:`Convention`).
    """

    name: str
    convention: Convention

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
    if convention not in ("lr", "lr_scale"):
        raise ValueError(f"convention must be 'lr' or 'lr_scale', got {convention!r}")
    hyper = dict(plan.spec.hyper)
    out = []
    for g in plan.groups:
        opts: dict[str, Any] = {"name": g.name}
        if convention == "lr":
            opts["lr"] = plan.lr_of(g)
        else:
            opts["lr"] = plan.base_lr
            opts["lr_scale"] = g.effective_scale
        opts["weight_decay"] = g.weight_decay
        opts.update(hyper)
        out.append(opts)
    return out


def attach_params(plan: Plan, convention: Convention, tensors: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Complete optimizer groups: :func:`group_options` plus each group's tensors.

    A backend calls this from ``emit`` with its model's tensors by name, then, once it
    returns, sets its framework's frozen flag on ``plan``'s frozen groups: every check
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
    groups = []
    for group, opts in zip(plan.groups, group_options(plan, convention), strict=True):
        missing = [n for n in group.params if n not in tensors]
        if missing:
            raise BackendError(
                f"the model has no parameter {missing[0]!r} that the plan puts in group "
                f"{group.name!r}; was the model changed after planning?"
            )
        groups.append({"params": [tensors[n] for n in group.params], **opts})
    return groups


def walk_params(module: Any, prefix: str = "") -> Iterator[tuple[str, str, Any, Any]]:
    """(full name, module path, owning module, parameter) for every parameter, ties included.

    Pre-order over each module's own ``_parameters`` and ``_modules`` tables, a layout
    torch and OneFlow share: the order of torch's ``named_parameters(remove_duplicate=False)``,
    about three times faster than the public generators, and it keeps tied names, which
    OneFlow 0.9's ``named_parameters`` drops with no switch to keep them.
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
