"""Modules torch makes inside a model that hide whose tensor a parameter is.

Three forms keep a module's tensors but change how a walk of ``_parameters`` and
``_modules`` sees them; read as they are, rules and weight-decay classes silently
decide on the wrong module:

* **Parametrizations** (``torch.nn.utils.parametrize``: ``weight_norm``,
  ``spectral_norm``, ``orthogonal``, LoRA written as a parametrization) move
  ``ln.weight`` to ``ln.parametrizations.weight.original``, held by a
  ``ParametrizationList``. A LayerNorm's parametrized weight was in no ``norm`` class
  and a parametrized bias in no ``bias`` class, so both got weight decay, and
  ``module_type: LayerNorm`` matched nothing. Such a tensor is reported as owned by
  the parametrized module, as its attribute ``weight``; its name stays torch's.
  A parametrization's own tensors (``lin.parametrizations.weight.0.lora_A``) keep
  their own module.
* **TorchScript** modules (``torch.jit.script``, ``torch.jit.trace``) are all of
  class ``RecursiveScriptModule`` or ``TracedModule``; the class they were made from
  is their ``original_name``, reported first, so a scripted LayerNorm is a ``norm``.
* **A compiled submodule** (``model.body = torch.compile(model.body)``) puts
  ``_orig_mod.`` inside every name under it. As for a compiled model
  (:mod:`multilr_torch._wrappers`), the names are read as the model's own, so one
  spec matches whether or not a part is compiled.

Each check costs nothing on a model without these forms: the first two only look
once a walk has met the class (:func:`multilr.backend.known_class_names`), the last
only once ``torch.compile`` has been imported.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import torch
from torch.jit._script import RecursiveScriptModule
from torch.jit._trace import TopLevelTracedModule, TracedModule
from torch.nn.utils.parametrize import ParametrizationList, is_parametrized

from multilr.backend import ModuleWalk, class_names, collect_params, known_class_names

__all__ = ["read_model", "without_compiled"]

#: The names ``parametrize`` gives the tensor it moved: ``original``, or
#: ``original0``, ``original1``... when the parametrization splits it (weight norm).
_ORIGINAL = re.compile(r"original\d*")
_SCRIPTED = (RecursiveScriptModule, TracedModule, TopLevelTracedModule)
_DYNAMO = "torch._dynamo.eval_frame"
_COMPILED = "_orig_mod"


def read_model(root: torch.nn.Module) -> tuple[ModuleWalk, list[str] | None]:
    """Every parameter of ``root`` as columns, each under the module it belongs to.

    Returns:
        The walk (:func:`multilr.backend.collect_params`) with the three forms above
        read through, and each tensor's attribute name on its module when some
        parametrized tensor has one its name does not end with (``None`` otherwise).

    Example:
        >>> from torch.nn.utils.parametrizations import weight_norm
        >>> walk, attributes = read_model(torch.nn.Sequential(weight_norm(torch.nn.Linear(2, 2))))
        >>> walk.names
        ['0.bias', '0.parametrizations.weight.original0', '0.parametrizations.weight.original1']
        >>> walk.modules, walk.module_types[1], attributes
        (['0', '0', '0'], ('ParametrizedLinear', 'Linear'), ['', 'weight', 'weight'])
    """
    walk = collect_params(root, torch.nn.Module)
    attributes = None
    held = known_class_names(ParametrizationList)
    if held is not None and held in walk.module_types:
        attributes = _parametrized(root, walk, held)
    for cls in _SCRIPTED:
        scripted = known_class_names(cls)
        if scripted is not None and scripted in walk.module_types:
            _scripted(root, walk, scripted)
    dynamo = sys.modules.get(_DYNAMO)
    if dynamo is not None and f".{_COMPILED}" in "\n".join(walk.modules):
        walk = _compiled(root, walk, dynamo.OptimizedModule)
    return walk, attributes


def _module_at(root: torch.nn.Module, path: str) -> Any:
    """The module at ``path`` (``get_submodule`` refuses ScriptModules)."""
    module: Any = root
    for part in path.split(".") if path else ():
        module = module._modules[part]
    return module


def _parametrized(root: torch.nn.Module, walk: ModuleWalk, held: tuple[str, ...]) -> list[str] | None:
    """Report each moved tensor as its module's attribute; the attribute column, or ``None``."""
    names, modules, types, _ = walk
    attributes = [""] * len(names)
    owners: dict[str, tuple[str, ...] | None] = {}
    for i, classes in enumerate(types):
        if classes is not held or not _ORIGINAL.fullmatch(names[i].rpartition(".")[2]):
            continue
        # the ParametrizationList sits at "<owner>.parametrizations.<attribute>"
        head, _, attribute = modules[i].rpartition(".")
        owner, _, container = head.rpartition(".")
        if owner not in owners:
            module = _module_at(root, owner) if container == "parametrizations" else None
            parametrized = module is not None and is_parametrized(module, attribute)
            owners[owner] = class_names(type(module), torch.nn.Module) if parametrized else None
        owner_types = owners[owner]
        if owner_types is None:  # a ParametrizationList put there by hand: left as it is
            continue
        modules[i], types[i], attributes[i] = owner, owner_types, attribute
    return attributes if any(attributes) else None


def _scripted(root: torch.nn.Module, walk: ModuleWalk, scripted: tuple[str, ...]) -> None:
    """Put each TorchScript module's ``original_name`` before its script class names."""
    modules, types = walk.modules, walk.module_types
    found: dict[str, tuple[str, ...]] = {}
    for i, classes in enumerate(types):
        if classes is not scripted:
            continue
        path = modules[i]
        if path not in found:
            original = getattr(_module_at(root, path), "original_name", "")
            found[path] = (original, *scripted) if original and original not in scripted else scripted
        types[i] = found[path]


def without_compiled(root: torch.nn.Module, path: str) -> str:
    """The module path ``path`` as a build names it: each compiled submodule's ``_orig_mod`` out.

    Example:
        >>> without_compiled(torch.nn.Sequential(torch.nn.Linear(2, 2)), "0")
        '0'
    """
    dynamo = sys.modules.get(_DYNAMO)
    if dynamo is None or _COMPILED not in path:
        return path
    return _strip(root, path, dynamo.OptimizedModule)


def _strip(root: torch.nn.Module, path: str, compiled: type) -> str:
    """``path`` without the ``_orig_mod`` parts that sit on a ``compiled`` module."""
    parts: list[str] = []
    module: Any = root
    for part in path.split("."):
        if not (part == _COMPILED and isinstance(module, compiled)):
            parts.append(part)
        module = module._modules[part]
    return ".".join(parts)


def _compiled(root: torch.nn.Module, walk: ModuleWalk, compiled: type) -> ModuleWalk:
    """The walk with every compiled submodule's ``_orig_mod.`` taken out of the names."""
    names, modules, types, tensors = walk
    stripped: dict[str, str] = {}

    new_names: list[str] = []
    new_modules: list[str] = []
    for name, path in zip(names, modules, strict=True):
        if _COMPILED in path:
            if path not in stripped:
                stripped[path] = _strip(root, path, compiled)
            # the module path starts the name: swap it, keep the rest
            name, path = stripped[path] + name[len(path) :], stripped[path]
        new_names.append(name)
        new_modules.append(path)
    if len(set(new_names)) != len(new_names):  # a wrapper holding tensors of its own: keep torch's names
        return walk
    return ModuleWalk(new_names, new_modules, types, tensors)
