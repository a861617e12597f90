"""The exceptions multilr raises.

Every error multilr raises on bad input is a :class:`MultiLRError`, which is a
``ValueError``, so callers that already guard config parsing with
``except ValueError`` keep working. The subclasses say which stage refused.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendNotFoundError",
    "CheckpointError",
    "ConflictError",
    "CoverageError",
    "MultiLRError",
    "PlanError",
    "SpecError",
    "UnsupportedFeatureError",
]


class MultiLRError(ValueError):
    """Root of every multilr error."""


class SpecError(MultiLRError):
    """A spec is malformed: unknown key, wrong type, or an out-of-range value."""


class PlanError(MultiLRError):
    """A valid spec cannot be resolved against a model's parameters."""


class CoverageError(PlanError):
    """Something is left uncovered.

    A rule matched nothing, a parameter matched nothing under
    ``unmatched="error"``, or the model has no parameters.
    """


class ConflictError(PlanError):
    """Two rules set the same setting of one parameter to different values."""


class BackendError(MultiLRError):
    """A backend failed to load or refused a plan."""


class BackendNotFoundError(BackendError):
    """The requested backend name is unknown or its package is not installed."""


class UnsupportedFeatureError(BackendError, NotImplementedError):
    """A backend cannot express a feature the spec or plan asks for."""


class CheckpointError(MultiLRError):
    """A checkpoint does not fit the optimizer (or Controller) it is loaded into."""
