"""Why a selector matched nothing: the hint a "matches no parameter" error ends with.

A rule that selects nothing is an error (a typo there would silently leave a layer at
the wrong rate). The error is only useful when it says what to write instead, so the
usual slips get their own hint: a wrapper's name prefix, a pattern given as a prefix,
a glob that does not cover the whole name, a dotted class name, a class name with the
wrong case.
"""

from __future__ import annotations

from collections.abc import Sequence

from multilr._check import did_you_mean
from multilr._params import ParamTable
from multilr._select import Glob, ModuleType, Prefix, Selector, is_literal, matching

__all__ = ["no_match_hint"]

_COMPILED = "_orig_mod."
_WRAPPER_PREFIXES = ("module.", _COMPILED)


def no_match_hint(selector: Selector, table: ParamTable) -> str:
    """``"; ..."``: what the user probably meant by a selector that selected nothing, or ``""``.

    Example:
        >>> from multilr._params import ParamInfo
        >>> table = ParamTable.from_infos([ParamInfo("layer1.w", (2,), "f", "layer1", ("Linear",), True, 0)])
        >>> no_match_hint(Prefix("layer*"), table)
        "; a prefix is a module path, not a pattern: use glob 'layer*' to select by pattern"
        >>> no_match_hint(ModuleType("nn.Linear"), table)
        "; module_type takes class names as the model's modules have them: 'Linear', not 'nn.Linear'"
    """
    names = table.names
    wrapper = _wrapper_hint(selector.describe(), names)
    if wrapper:
        return wrapper
    if type(selector) is Prefix and not is_literal(selector.path):
        path = selector.path
        glob = path if path.endswith("*") else path + ".*"
        return f"; a prefix is a module path, not a pattern: use glob {glob!r} to select by pattern"
    if type(selector) is Glob:
        return _glob_hint(selector.pattern, table)
    if type(selector) is ModuleType:
        return _module_type_hint(selector.names, table.module_types)
    return ""


def _wrapper_hint(described: str, names: Sequence[str]) -> str:
    """A selector written for a wrapper's names (DDP's ``module.head``, ``body._orig_mod.0``).

    Backends read the model inside its wrapper (torch: DDP, ``DataParallel``,
    ``torch.compile``), so the wrapper's prefix is in no name; torch also reads a
    compiled submodule's names without its ``_orig_mod.``.
    """
    pattern = described.partition(":")[2].lstrip("^").replace("\\.", ".")  # a regex escapes its dots
    if pattern.startswith(_WRAPPER_PREFIXES) and not any(n.startswith(_WRAPPER_PREFIXES) for n in names):
        return (
            "; names are the model's own: the model inside DDP, DataParallel or torch.compile is read, "
            "without their 'module.' or '_orig_mod.' prefix"
        )
    if f".{_COMPILED}" in pattern and not any(_COMPILED in n for n in names):
        return (
            "; names are the model's own: a submodule compiled with torch.compile is read without "
            "the '_orig_mod.' its names have in named_parameters()"
        )
    return ""


def _glob_hint(pattern: str, table: ParamTable) -> str:
    """A glob matches the whole dotted name: ``head`` (for ``head.*``) selects nothing.

    Nor does ``decoder.norm.*`` when the names start with ``model.``.
    """
    wider = pattern + ".*"
    if matching(Glob(wider), table):
        prefix = f" or prefix {pattern!r}" if is_literal(pattern) else ""
        return f"; a glob matches the whole dotted name: use glob {wider!r}{prefix}"
    if pattern.startswith("*"):
        return ""
    left = "*." + pattern
    hits = matching(Glob(left), table)
    if not hits:
        return ""
    return (
        f"; a glob matches the whole dotted name from its start ({table.names[hits[0]]!r}): "
        f"use glob {left!r}"
    )


def _module_type_hint(wanted: Sequence[str], module_types: Sequence[tuple[str, ...]]) -> str:
    """Class names as the model has them: ``Linear``, not ``nn.Linear``; ``LayerNorm``, not ``Layernorm``."""
    present = list(dict.fromkeys(cls for types in dict.fromkeys(module_types) for cls in types))
    for name in wanted:
        short = name.rpartition(".")[2]
        if short != name and short in present:
            return (
                f"; module_type takes class names as the model's modules have them: {short!r}, not {name!r}"
            )
    for name in wanted:
        close = [cls for cls in present if cls.lower() == name.lower()]
        if close:
            return f"; class names are case-sensitive: the model has {close[0]!r}"
        suggestion = did_you_mean(name, present)
        if suggestion:
            return f"; the model's module classes include one close to it{suggestion}"
    own = list(dict.fromkeys(types[0] for types in module_types if types))  # without the bases
    if not own:
        return ""
    shown = ", ".join(own[:8]) + (", ..." if len(own) > 8 else "")
    # only the classes of modules that hold tensors themselves are known (and tested): a block
    # class such as BertLayer holds none, its Linear and LayerNorm children do
    return (
        f"; module_type matches the class of the module holding a tensor itself (or a base of it), "
        f"here {shown}, or the families 'norm', 'embedding'; for a block class (one holding only "
        "submodules, such as a transformer layer) select its tensors by prefix or glob"
    )
