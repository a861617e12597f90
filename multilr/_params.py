"""What the planner knows about the parameters: plain data a backend extracts."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

__all__ = ["ParamInfo", "ParamTable"]


@dataclass(frozen=True, slots=True)
class ParamInfo:
    """Framework-free description of one named parameter.

    A backend's ``extract`` yields one ``ParamInfo`` per *name*; tied or shared
    parameters appear once per name with the same ``key``, and the planner keeps
    the first name and reports the others as aliases.

    Attributes:
        name: Full dotted name, as ``named_parameters()`` gives it.
        shape: Tensor shape.
        dtype: Framework dtype spelled as a string (``"float32"``).
        module: Dotted path of the module that owns the parameter (``""`` for the root).
        module_types: Class names of the owning module, most derived first, then its
            bases (so ``"_BatchNorm"`` matches every batch-norm variant).
        requires_grad: The model's own flag when extracted. Never used for depth.
        key: Identity of the underlying tensor; equal keys mean tied parameters.
        attribute: The tensor's attribute name on ``module`` when it is not the last part
            of ``name`` (torch's ``ln.parametrizations.weight.original`` is ``ln``'s
            ``weight``); ``""``: the last part of ``name``.

    Example:
        >>> ParamInfo("fc.bias", (10,), "float32", "fc", ("Linear",), True, 1).ndim
        1
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    module: str
    module_types: tuple[str, ...]
    requires_grad: bool
    key: Hashable
    attribute: str = ""

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def leaf(self) -> str:
        """The attribute name on the owning module (``"weight"``, ``"bias"``)."""
        return self.attribute or self.name.rpartition(".")[2]


class ParamTable:
    """What a backend extracts, as columns: entry ``i`` of each list is one named parameter.

    The planner reads these columns directly, so a build never creates a
    :class:`ParamInfo` object per tensor (about 1.5-3 us each, and each one more object
    for Python's garbage collector): 2,000 tensors cost a few list appends instead.
    Selectors that need whole records (a :class:`~multilr.Predicate`, a third-party
    selector) get them from :meth:`infos`, made once on first use.

    Args:
        names, shapes, modules, module_types, requires_grad, keys: One list per
            :class:`ParamInfo` field, in model order, tied names included. A shape may
            be any tuple subclass (``torch.Size``: no copy while planning); records made
            from the table get plain tuples.
        dtypes: The dtype column, or a function that makes it when first read (the
            planner never reads it; only :meth:`infos` does).
        tensors: The framework's tensors, aligned with ``names``, when a backend read
            them (so ``emit`` need not walk the model again); ``None`` otherwise.
        attributes: Each tensor's attribute name on its module (:attr:`ParamInfo.attribute`,
            ``""`` for the last part of its name), or ``None`` when every one is that.

    Example:
        >>> t = ParamTable.from_infos([ParamInfo("fc.bias", (10,), "float32", "fc", ("Linear",), True, 1)])
        >>> len(t), t.names, t.dtypes, t.infos()[0].leaf
        (1, ['fc.bias'], ['float32'], 'bias')
    """

    __slots__ = (
        "_dtypes",
        "_infos",
        "attributes",
        "keys",
        "module_types",
        "modules",
        "names",
        "requires_grad",
        "shapes",
        "tensors",
    )

    def __init__(
        self,
        names: list[str],
        shapes: list[tuple[int, ...]],
        dtypes: list[str] | Callable[[], list[str]],
        modules: list[str],
        module_types: list[tuple[str, ...]],
        requires_grad: list[bool],
        keys: list[Hashable],
        tensors: list[Any] | None = None,
        attributes: list[str] | None = None,
    ) -> None:
        self.names = names
        self.shapes = shapes
        self._dtypes = dtypes
        self.modules = modules
        self.module_types = module_types
        self.requires_grad = requires_grad
        self.keys = keys
        self.tensors = tensors
        self.attributes = attributes
        self._infos: list[ParamInfo] | None = None

    @classmethod
    def from_infos(cls, infos: Sequence[ParamInfo]) -> ParamTable:
        """The columns of a list of :class:`ParamInfo`; :meth:`infos` gives back the same objects."""
        columns: list[list[Any]] = [[] for _ in range(7)]
        if infos:
            columns = list(map(list, zip(*map(_FIELDS, infos), strict=True)))
        names, shapes, dtypes, modules, module_types, requires_grad, keys = columns
        attributes = [info.attribute for info in infos]
        moved = attributes if any(attributes) else None  # no column when every name ends in its attribute
        table = cls(names, shapes, dtypes, modules, module_types, requires_grad, keys, None, moved)
        table._infos = list(infos)
        return table

    def __len__(self) -> int:
        return len(self.names)

    def leaves(self) -> list[str]:
        """Each tensor's attribute name on its module (:attr:`ParamInfo.leaf`).

        Example:
            >>> ParamTable(["fc.bias", "ln.parametrizations.weight.original"], [(), ()], [], [], [], [], [],
            ...            attributes=["", "weight"]).leaves()
            ['bias', 'weight']
        """
        leaves = [name.rpartition(".")[2] for name in self.names]
        if self.attributes is not None:
            leaves = [attr or leaf for attr, leaf in zip(self.attributes, leaves, strict=True)]
        return leaves

    @property
    def dtypes(self) -> list[str]:
        """The dtype column."""
        if callable(self._dtypes):
            self._dtypes = self._dtypes()
        return self._dtypes

    def infos(self) -> list[ParamInfo]:
        """One :class:`ParamInfo` per entry, made on first call and kept."""
        if self._infos is None:
            self._infos = list(
                map(
                    ParamInfo,
                    self.names,
                    map(tuple, self.shapes),
                    self.dtypes,
                    self.modules,
                    self.module_types,
                    self.requires_grad,
                    self.keys,
                    *([self.attributes] if self.attributes is not None else []),
                )
            )
        return self._infos


_FIELDS = attrgetter("name", "shape", "dtype", "module", "module_types", "requires_grad", "key")
