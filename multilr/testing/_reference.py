"""Float64 NumPy reference optimizers, written from PyTorch's documented update rules.

Every optimizer here splits one step into a *direction* and a *rate*: the update is
exactly ``p_next = p - rate * direction(p, g)``, where the direction depends on the
parameter, its gradient and the optimizer state but never on the rate. That is true of
the PyTorch (and OneFlow) implementations as well: momentum buffers and Adam moments
hold gradients, and the rate multiplies them only at the end; AdamW's decoupled decay
``p * (1 - rate * wd)`` is ``p - rate * (wd * p)``. So the rate a backend really applied
can be read back from any update as ``-delta / direction``: that is how the conformance
suite tells "the rate was scaled" from "the gradient was scaled" (seed 003), which
under Adam are not the same thing.

The reference follows PyTorch 2.x's formulas (``torch.optim``, ``foreach=False``):

* ``sgd``: ``d = g + wd * p``; with momentum ``b = d`` on the first step, then
  ``b = mu * b + (1 - dampening) * d``; direction ``d + mu * b`` (nesterov) or ``b``.
* ``adam`` (L2 decay added to the gradient) and ``adamw`` (decoupled decay):
  ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, ``amsgrad`` keeps the running
  max of ``v``; direction ``(m / bc1) / (sqrt(v) / sqrt(bc2) + eps)`` (+ ``wd * p`` for adamw).
* ``rmsprop`` (no momentum, not centred): ``v = alpha v + (1 - alpha) g^2``,
  direction ``g / (sqrt(v) + eps)`` with eps *outside* the square root.
* ``adagrad``: ``s = s + g^2``, direction ``g / (sqrt(s) + eps) / (1 + (t - 1) lr_decay)``.
* ``adadelta``: ``s = rho s + (1 - rho) g^2``, direction ``d = sqrt(a + eps) / sqrt(s + eps) * g``,
  then ``a = rho a + (1 - rho) d^2`` (``a`` accumulates directions, not rate x direction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["OPTIMIZER_KINDS", "Reference", "reference_optimizer"]

Array = NDArray[np.float64]

#: Optimizer kinds the reference implements, with the hyperparameters each reads
#: (the per-group ``lr`` and ``weight_decay`` come from the plan).
OPTIMIZER_KINDS: Mapping[str, tuple[str, ...]] = {
    "sgd": ("momentum", "dampening", "nesterov"),
    "adam": ("betas", "eps", "amsgrad"),
    "adamw": ("betas", "eps", "amsgrad"),
    "rmsprop": ("alpha", "eps"),
    "adagrad": ("eps", "lr_decay"),
    "adadelta": ("rho", "eps"),
}


@dataclass
class Reference:
    """One optimizer's state over a set of named tensors, in float64.

    Args:
        kind: One of :data:`OPTIMIZER_KINDS`.
        hyper: The optimizer's hyperparameters (``momentum``, ``betas``, ...).

    Example:
        >>> import numpy as np
        >>> ref = Reference("sgd", {"momentum": 0.9, "dampening": 0.0, "nesterov": False})
        >>> p, g = np.array([1.0]), np.array([0.5])
        >>> ref.direction("w", p, g, weight_decay=0.0)  # first step: the buffer is g
        array([0.5])
        >>> ref.direction("w", p, g, weight_decay=0.0)  # 0.9 * 0.5 + 0.5
        array([0.95])
    """

    kind: str
    hyper: Mapping[str, Any]
    _state: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZER_KINDS:
            raise ValueError(f"reference optimizer {self.kind!r} unknown; known: {sorted(OPTIMIZER_KINDS)}")

    def direction(self, name: str, p: Array, g: Array, *, weight_decay: float) -> Array:
        """Advance ``name``'s state by one step and return its update per unit rate.

        Args:
            name: The tensor's name (its state is kept under it).
            p: The parameter before the step.
            g: Its gradient for this step.
            weight_decay: The group's weight decay.

        Returns:
            ``direction`` such that the optimizer's step is ``p - rate * direction``.
        """
        state = self._state.setdefault(name, {"step": 0})
        state["step"] += 1
        return _STEPS[self.kind](
            self.hyper, state, np.asarray(p, np.float64), np.asarray(g, np.float64), weight_decay
        )


def _sgd(h: Mapping[str, Any], s: dict[str, Any], p: Array, g: Array, wd: float) -> Array:
    d = g + wd * p
    mu = float(h.get("momentum", 0.0))
    if mu == 0.0:
        return d
    if "buf" not in s:
        s["buf"] = d.copy()  # PyTorch starts the buffer at the first gradient, undampened
    else:
        s["buf"] = mu * s["buf"] + (1.0 - float(h.get("dampening", 0.0))) * d
    buf: Array = s["buf"]
    return d + mu * buf if h.get("nesterov", False) else buf


def _adam(h: Mapping[str, Any], s: dict[str, Any], p: Array, g: Array, wd: float, decoupled: bool) -> Array:
    b1, b2 = (float(b) for b in h.get("betas", (0.9, 0.999)))
    eps = float(h.get("eps", 1e-8))
    if not decoupled:
        g = g + wd * p
    t = s["step"]
    s["m"] = b1 * s.get("m", 0.0) + (1.0 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1.0 - b2) * g * g
    v = s["v"]
    if h.get("amsgrad", False):
        s["vmax"] = v = np.maximum(s.get("vmax", 0.0), v)
    direction: Array = (s["m"] / (1.0 - b1**t)) / (np.sqrt(v) / np.sqrt(1.0 - b2**t) + eps)
    return direction + wd * p if decoupled else direction


def _rmsprop(h: Mapping[str, Any], s: dict[str, Any], p: Array, g: Array, wd: float) -> Array:
    g = g + wd * p
    alpha, eps = float(h.get("alpha", 0.99)), float(h.get("eps", 1e-8))
    s["v"] = alpha * s.get("v", 0.0) + (1.0 - alpha) * g * g
    out: Array = g / (np.sqrt(s["v"]) + eps)
    return out


def _adagrad(h: Mapping[str, Any], s: dict[str, Any], p: Array, g: Array, wd: float) -> Array:
    g = g + wd * p
    eps, lr_decay = float(h.get("eps", 1e-10)), float(h.get("lr_decay", 0.0))
    s["sum"] = s.get("sum", 0.0) + g * g
    out: Array = g / (np.sqrt(s["sum"]) + eps) / (1.0 + (s["step"] - 1) * lr_decay)
    return out


def _adadelta(h: Mapping[str, Any], s: dict[str, Any], p: Array, g: Array, wd: float) -> Array:
    g = g + wd * p
    rho, eps = float(h.get("rho", 0.9)), float(h.get("eps", 1e-6))
    s["sq"] = rho * s.get("sq", 0.0) + (1.0 - rho) * g * g
    out: Array = np.sqrt(s.get("acc", 0.0) + eps) / np.sqrt(s["sq"] + eps) * g
    s["acc"] = rho * s.get("acc", 0.0) + (1.0 - rho) * out * out
    return out


_Step = Callable[[Mapping[str, Any], dict[str, Any], Array, Array, float], Array]

_STEPS: Mapping[str, _Step] = {
    "sgd": _sgd,
    "adam": lambda h, s, p, g, wd: _adam(h, s, p, g, wd, decoupled=False),
    "adamw": lambda h, s, p, g, wd: _adam(h, s, p, g, wd, decoupled=True),
    "rmsprop": _rmsprop,
    "adagrad": _adagrad,
    "adadelta": _adadelta,
}


def reference_optimizer(kind: str, hyper: Mapping[str, Any]) -> Reference:
    """A fresh :class:`Reference` optimizer.

    Example:
        >>> reference_optimizer("adamw", {"betas": (0.9, 0.999), "eps": 1e-8}).kind
        'adamw'
    """
    return Reference(kind, hyper)
