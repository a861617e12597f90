"""Naming Python objects on the command line: ``MODULE_OR_FILE:NAME``.

``MODULE`` is a dotted module path importable from the current folder (as with
``python -m``); a ``.py`` file is loaded with its own folder on ``sys.path``, so it can
import its neighbours. ``NAME`` may be dotted (``Class.factory``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from multilr.cli._common import UsageError

__all__ = ["load_model", "load_target", "resolve"]


def resolve(text: str, where: str = "target") -> Any:
    """The object named by ``MODULE_OR_FILE:NAME``, whatever it is.

    Raises:
        UsageError: No colon, a module or file that cannot be imported, a missing attribute.
    """
    source, sep, attr = text.rpartition(":")
    if not sep or not source or not attr:
        raise UsageError(f"{where} {text!r}: expected MODULE_OR_FILE:NAME, e.g. examples/models.py:mlp")
    if source.endswith(".py") or "/" in source or "\\" in source:
        module = _load_file(Path(source), where)
    else:
        # the console script's sys.path[0] is its bin folder, not the folder it was run from
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(source)
        except ImportError as exc:
            raise UsageError(f"{where}: cannot import {source!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            own = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
            known = sorted(n for n in own if getattr(vars(module)[n], "__module__", None) == module.__name__)
            names = ", ".join(known) or "none"
            raise UsageError(f"{where}: {source!r} has no {attr!r}; its callables: {names}")
        obj = getattr(obj, part)
    return obj


def load_target(text: str, where: str = "target") -> Any:
    """The callable named by ``MODULE_OR_FILE:CALLABLE`` (not called).

    Raises:
        SpecError: No colon, a module or file that cannot be imported, or a missing or
            non-callable attribute (a :class:`UsageError`, exit status 2).

    Example:
        >>> load_target("multilr.schedules:Cosine")(10).factor(10)
        0.0
    """
    obj = resolve(text, where)
    if not callable(obj):
        raise UsageError(f"{where}: {text!r} is a {type(obj).__name__}, not a callable")
    return obj


def load_model(text: str, where: str = "MODEL") -> Any:
    """The model named by ``MODULE_OR_FILE:NAME``: a factory's result, or the object itself.

    A class or a function is called without arguments (it must not need any); an
    object with ``named_parameters`` (a model instance, callable or not) is used as it is.

    Raises:
        UsageError: The name cannot be resolved, or the factory needs arguments.

    Example:
        >>> load_model("collections:OrderedDict")
        OrderedDict()
    """
    obj = resolve(text, where)
    if not isinstance(obj, type) and hasattr(obj, "named_parameters"):
        return obj  # a model instance: torch modules are callable, but calling one runs forward()
    if not callable(obj):
        raise UsageError(f"{where}: {text!r} is a {type(obj).__name__}, neither a model nor a factory")
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise UsageError(
            f"{where}: {text!r} needs arguments {inspect.signature(obj)}; name a factory that takes none "
            "(a small function in a file: def model(): return MyNet(10))"
        ) from None
    except ValueError:
        pass  # no signature to read (a builtin): just call it
    return obj()


def _load_file(path: Path, where: str) -> Any:
    if not path.is_file():
        raise UsageError(f"{where}: no such file {str(path)!r}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the file's own imports of its neighbours (as `python file.py` does)
    name = f"_multilr_target_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{where}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise UsageError(f"{where}: {str(path)!r} failed to import: {exc}") from None
    return module
