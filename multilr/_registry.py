"""Backend discovery: known names plus the ``multilr.backends`` entry points.

Entry points are loaded only when a backend is asked for, so ``import multilr``
loads no framework.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

from multilr._check import did_you_mean
from multilr.backend import Backend
from multilr.errors import BackendError, BackendNotFoundError

__all__ = ["get_backend", "infer_backend", "list_backends", "register_backend"]

GROUP = "multilr.backends"

#: Backends multilr knows by name, and the distribution that provides each.
KNOWN_BACKENDS: dict[str, str] = {
    "torch": "multilr-torch",
    "oneflow": "multilr-oneflow",
    "oneflow-graph": "multilr-oneflow",
}

_registered: dict[str, Callable[[], Any]] = {}
_instances: dict[str, Backend] = {}


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def _entry_point(name: str) -> importlib.metadata.EntryPoint | None:
    """The one entry point registering ``name``, or None.

    Raises:
        BackendError: Two installed entry points register ``name`` with different targets:
            which one loads would depend on ``sys.path`` order, silently.
    """
    found = {ep.value: ep for ep in importlib.metadata.entry_points(group=GROUP) if ep.name == name}
    if len(found) > 1:
        owners = ", ".join(f"{_dist_name(ep)} ({value})" for value, ep in found.items())
        raise BackendError(
            f"backend {name!r} is registered by more than one installed package: {owners}; "
            "uninstall all but one (which one would load depends on sys.path order)"
        )
    return next(iter(found.values()), None)


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else "an unknown distribution"


def register_backend(name: str, factory: Callable[[], Any]) -> None:
    """Register a backend in this process, without packaging (tests, notebooks).

    Example:
        >>> class Null:
        ...     name, convention = "null", "lr"
        ...     def extract(self, model): return []
        ...     def emit(self, model, plan): return []
        >>> register_backend("null", Null)
        >>> "null" in list_backends()
        True

    Raises:
        BackendError: ``name`` is not a non-empty string, or ``factory`` is not callable
            (an instance given for its class: pass the class, or ``lambda: instance``).
    """
    if not isinstance(name, str) or not name:
        raise BackendError(f"register_backend: the name must be a non-empty string, got {name!r}")
    if not callable(factory):
        # checked now: called only at the first get_backend, it would fail far from here
        raise BackendError(
            f"register_backend({name!r}, ...): the factory must be callable (the backend class, or a "
            f"function returning an instance), got a {type(factory).__name__}; pass its class, or "
            "lambda: instance"
        )
    _registered[name] = factory
    _instances.pop(name, None)


def list_backends() -> list[str]:
    """Names of the installed (and registered) backends, sorted.

    Example:
        >>> names = list_backends()  # e.g. ['torch'], or ['oneflow', 'oneflow-graph']
        >>> isinstance(names, list), names == sorted(set(names))
        (True, True)
    """
    return sorted(set(_entry_points()) | set(_registered))


def _not_found(name: str) -> BackendNotFoundError:
    installed = list_backends()
    have = ", ".join(installed) if installed else "none"
    if name in KNOWN_BACKENDS:
        dist = KNOWN_BACKENDS[name]
        return BackendNotFoundError(
            f"backend {name!r} is not installed; install the package {dist!r} "
            f"(from this repository: pip install -e backends/{dist.removeprefix('multilr-')}); "
            f"installed backends: {have}"
        )
    return BackendNotFoundError(
        f"unknown backend {name!r}{did_you_mean(name, [*KNOWN_BACKENDS, *installed])}; "
        f"installed backends: {have}; known: {', '.join(KNOWN_BACKENDS)}"
    )


def infer_backend(model: Any) -> str:
    """The backend name for a model's framework, from its class's modules (no import).

    ``torch`` for a ``torch.nn.Module``, ``oneflow`` (eager) for a ``oneflow.nn.Module``.

    Raises:
        BackendNotFoundError: The framework is not one multilr knows; pass ``backend=``.

    Example:
        >>> infer_backend([1.0])
        Traceback (most recent call last):
        ...
        multilr.errors.BackendNotFoundError: cannot tell which backend reads a list; pass backend=...
    """
    for cls in type(model).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in ("torch", "oneflow"):
            return root
    have = ", ".join(list_backends()) or "none"
    raise BackendNotFoundError(
        f"cannot tell which backend reads a {type(model).__name__}; pass backend=...\ninstalled: {have}"
    )


def get_backend(backend: str | Backend) -> Backend:
    """The backend instance for a name (or the backend itself, passed through).

    Raises:
        BackendNotFoundError: Unknown name, or its package is not installed; the
            message lists the installed backends and the package to install.
        BackendError: The plugin failed to load or does not implement the contract.

    Example:
        >>> get_backend("tourch")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multilr.errors.BackendNotFoundError: unknown backend 'tourch' (did you mean 'torch'?); ...
    """
    if not isinstance(backend, str):
        _check_contract(backend, repr(backend))
        return backend
    cached = _instances.get(backend)
    if cached is not None:
        return cached
    factory = _registered.get(backend)
    if factory is None:
        ep = _entry_point(backend)
        if ep is None:
            raise _not_found(backend)
        try:
            factory = ep.load()
        except Exception as exc:
            raise BackendError(f"backend {backend!r} failed to load from {ep.value!r}: {exc}") from exc
    try:
        instance = factory()
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"backend {backend!r} failed to start: {exc}") from exc
    _check_contract(instance, backend)
    _instances[backend] = instance
    return instance  # type: ignore[no-any-return]


def _check_contract(obj: Any, label: str) -> None:
    missing = [a for a in ("name", "convention", "extract", "emit") if not hasattr(obj, a)]
    if missing:
        raise BackendError(
            f"backend {label} does not implement {', '.join(missing)} of multilr.backend.Backend"
        )
    if obj.convention not in ("lr", "lr_scale"):
        raise BackendError(f"backend {label}: convention must be 'lr' or 'lr_scale', got {obj.convention!r}")
