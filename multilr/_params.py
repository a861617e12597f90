"""What the planner knows about one parameter: plain data a backend extracts."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["ParamInfo"]


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
        return self.name.rpartition(".")[2]
