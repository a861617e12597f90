"""Checking one backend on one case: effective rates per step and whole trajectories.

For every step and every tensor the effective rate is read from the observed update:
the reference optimizer, fed the *observed* parameter and the case's gradient, gives
the update per unit rate ``u`` (see :mod:`multilr.testing._reference`), and the rate is
the least-squares ``r = -<delta, u> / <u, u>``. Three things must hold:

1. ``r`` equals the plan's rate times the schedule's factor, and the update is that rate
   times ``u`` element by element (the same relative tolerance, plus the rounding of the
   stored parameter): a gradient scaled instead of the rate fails here under Adam (the
   factor cancels) and under SGD with weight decay (the decay term is not scaled);
2. frozen tensors do not move at all (bit for bit);
3. the whole trajectory matches a float64 reference run from the same start
   (tolerances per optimizer kind and dtype: :data:`TOLERANCES`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from multilr._build import plan as make_plan
from multilr._plantypes import Plan
from multilr.errors import UnsupportedFeatureError
from multilr.testing._cases import Case
from multilr.testing._reference import Reference
from multilr.testing._runtime import controlled_rates

__all__ = [
    "TOLERANCES",
    "CellResult",
    "Harness",
    "Observation",
    "Unsupported",
    "check_cell",
    "planned",
    "tolerance",
]

Array = NDArray[np.float64]
Status = Literal["passed", "failed", "unsupported", "xfail", "xpass"]

#: ``(rate, trajectory)`` relative tolerances by (optimizer kind, dtype), set at about
#: ten times the largest error measured on PyTorch 2.13, OneFlow 0.9 eager and nn.Graph
#: (CPU, 2026-11-21). *rate*: each step's effective rate against plan x schedule. In
#: float32 it is read from an update rounded to ~6e-8 of the parameter (measured: 8e-6
#: SGD, 1.2e-4 Adam, whose updates are the smallest). *trajectory*: every parameter after
#: every step against the float64 reference, relative to the tensor's largest magnitude
#: (measured float32: 2e-7, but 2e-6 for Adam on OneFlow, which runs the moment updates
#: with float32 betas). The float64 rows are loose because OneFlow eager casts the
#: hyperparameters to float32 even for float64 tensors (measured: rates 1e-7 off for SGD,
#: 7e-6 for Adam); PyTorch's float64 errors are ~1e-14. Wrong scales are off by 10% or more.
TOLERANCES: Mapping[tuple[str, str], tuple[float, float]] = {
    ("sgd", "float32"): (1e-4, 2e-6),
    ("adam", "float32"): (1e-3, 2e-5),
    ("adamw", "float32"): (1e-3, 2e-5),
    ("rmsprop", "float32"): (5e-4, 2e-6),
    ("adagrad", "float32"): (5e-4, 2e-6),
    ("adadelta", "float32"): (5e-4, 2e-6),
    ("sgd", "float64"): (1e-6, 3e-7),
    ("adam", "float64"): (1e-4, 1e-5),
    ("adamw", "float64"): (1e-4, 1e-5),
    ("rmsprop", "float64"): (1e-6, 3e-7),
    ("adagrad", "float64"): (1e-6, 3e-7),
    ("adadelta", "float64"): (1e-6, 3e-7),
}

#: Machine epsilon per dtype: the rounding of a stored parameter, allowed on top of the
#: relative tolerance when an update is compared element by element.
EPS: Mapping[str, float] = {"float32": 2.0**-23, "float64": 2.0**-52}


def tolerance(case: Case) -> tuple[float, float]:
    """``(rate, trajectory)`` relative tolerance of ``case`` (see :data:`TOLERANCES`).

    Example:
        >>> from multilr.testing import case_by_id
        >>> tolerance(case_by_id("sgd-step-frozen")), tolerance(case_by_id("adamw-step-mixed"))
        ((0.0001, 2e-06), (0.001, 2e-05))
    """
    return TOLERANCES[(case.setup.kind, case.dtype)]


class Unsupported(Exception):
    """Raised by a harness for a case its backend cannot run; the message is the reason."""


@dataclass(frozen=True)
class Observation:
    """What a harness reports for one case.

    Attributes:
        params: ``steps + 1`` snapshots (before the first step, then after each step) of
            every parameter by name, as float64 arrays.
        planned: Per parameter name: ``(rate, weight_decay, frozen)`` from the plan the
            backend built (see :func:`planned`).
        requires_grad: Per parameter name: its framework flag right after ``build``, or
            ``None`` where the framework has none. A tensor the plan freezes must be off
            (frozen means no gradient, so no optimizer state and no share of a gradient
            norm): a backend that leaves it on moves nothing at rate 0, and only this shows it.
    """

    params: Sequence[Mapping[str, Array]]
    planned: Mapping[str, tuple[float, float, bool]]
    requires_grad: Mapping[str, bool] | None = None


class Harness(Protocol):
    """Runs conformance cases on one backend (see :class:`~multilr.testing.TorchLikeHarness`).

    Attributes:
        backend: The backend's name (test ids and traces use it).
    """

    backend: str

    def run(self, case: Case) -> Observation:
        """Build the case's model, ``multilr.build`` it, train ``case.steps`` steps, report.

        Raises:
            Unsupported: The backend cannot run this case (the message says why).
        """
        ...


def planned(plan: Plan) -> dict[str, tuple[float, float, bool]]:
    """``(rate, weight_decay, frozen)`` per parameter, for :class:`Observation`.

    Example:
        >>> from multilr import plan
        >>> from multilr.testing import case_by_id
        >>> case = case_by_id("sgd-step-frozen")
        >>> rows = planned(plan(case.infos(), case.spec))
        >>> rows["embed.weight"], rows["head.weight"]
        ((0.0, 0.0, True), (0.5, 0.0, False))
    """
    return {n: (plan.lr_of(g), g.weight_decay, g.frozen) for g in plan.groups for n in g.params}


@dataclass
class CellResult:
    """The outcome of one backend on one case.

    Attributes:
        backend: Backend name.
        case: Case id.
        status: ``passed``; ``failed``; ``unsupported`` (the harness said it cannot run
            it); ``xfail`` (failed or unsupported, and listed as an expected failure);
            ``xpass`` (listed as an expected failure but passed: itself a failure).
        messages: What went wrong, most important first.
        reason: The expected-failure reason, when listed.
        rates: Effective rate per tensor per step, read from the updates.
        final: Final parameters, flattened.
    """

    backend: str
    case: str
    status: Status = "passed"
    messages: list[str] = field(default_factory=list)
    reason: str = ""
    rates: dict[str, list[float]] = field(default_factory=dict)
    final: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Passed, or failed as expected."""
        return self.status in ("passed", "xfail")

    @property
    def cell_id(self) -> str:
        """``backend-optimizer-schedule-feature``."""
        return f"{self.backend}-{self.case}"

    def describe(self, limit: int = 8) -> str:
        """A readable account: status, reason, the first ``limit`` messages."""
        lines = [f"{self.cell_id}: {self.status}" + (f" (expected: {self.reason})" if self.reason else "")]
        lines += [f"  {m}" for m in self.messages[:limit]]
        if len(self.messages) > limit:
            lines.append(f"  ... and {len(self.messages) - limit} more")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The trace record of this cell (see :mod:`multilr.testing._trace`)."""
        return {
            "backend": self.backend,
            "case": self.case,
            "status": self.status,
            "reason": self.reason,
            "messages": self.messages,
            "rates": self.rates,
            "final": self.final,
        }


#: ``(name, rate, gradient) -> (rate, gradient)``: what a (deliberately wrong) backend
#: trains a tensor with instead of its rate and gradient.
Adjust = Callable[[str, float, Array], tuple[float, Array]]


def reference_run(
    case: Case, plan: Plan, adjust: Adjust | None = None
) -> tuple[list[dict[str, Array]], list[dict[str, float]]]:
    """The float64 reference trajectory and the expected rate per tensor per step.

    Args:
        case: The case.
        plan: Its plan.
        adjust: Changes each trainable tensor's rate and gradient before its step (the
            :class:`~multilr.testing.ReferenceHarness` mistakes); the expected rates stay.

    Example:
        >>> from multilr import plan
        >>> from multilr.testing import case_by_id
        >>> case = case_by_id("sgd-step-frozen")
        >>> traj, rates = reference_run(case, plan(case.infos(), case.spec))
        >>> len(traj), rates[0]["head.weight"], rates[0]["embed.weight"]  # the start + 6 steps
        (7, 0.5, 0.0)
        >>> bool((traj[-1]["embed.weight"] == traj[0]["embed.weight"]).all())  # frozen: never moves
        True
    """
    rates, frozen = _expected(case, plan)
    wd = _weight_decays(plan)
    ref = Reference(case.setup.kind, case.setup.hyper)
    p = dict(case.initial())
    out = [dict(p)]
    for t in range(case.steps):
        grads = case.gradient(t)
        nxt = {}
        for name, value in p.items():
            if name in frozen[t]:
                nxt[name] = value  # frozen: no gradient, so no update and no state change
                continue
            rate, grad = rates[t][name], grads[name]
            if adjust is not None:
                rate, grad = adjust(name, rate, grad)
            nxt[name] = value - rate * ref.direction(name, value, grad, weight_decay=wd[name])
        p = nxt
        out.append(dict(p))
    return out, rates


def _weight_decays(plan: Plan) -> dict[str, float]:
    return {n: g.weight_decay for g in plan.groups for n in g.params}


def expected_rates(case: Case, plan: Plan) -> list[dict[str, float]]:
    """Plan rate x schedule factor, per step and tensor (0 for frozen tensors).

    For a controlled case (:attr:`Case.controlled`), the rates the Controller gives: plan
    rate x multiplier x schedule factor, 0 while frozen, with the case's events applied
    (see :func:`~multilr.testing.controlled_rates`).

    Example:
        >>> from multilr import plan
        >>> from multilr.testing import case_by_id
        >>> case = case_by_id("sgd-step-frozen")  # step schedule: x0.7 per step
        >>> rates = expected_rates(case, plan(case.infos(), case.spec))
        >>> len(rates), [round(r["head.weight"], 4) for r in rates[:3]], rates[-1]["embed.weight"]
        (6, [0.5, 0.35, 0.245], 0.0)
    """
    return _expected(case, plan)[0]


def _expected(case: Case, plan: Plan) -> tuple[list[dict[str, float]], list[set[str]]]:
    """Expected rate per step and tensor, and the tensors frozen at each step.

    A tensor the model itself has off (:meth:`Case.model_frozen`) is frozen throughout:
    it gets no gradient, whatever its group's rate.
    """
    off = case.model_frozen()
    if case.controlled:
        tl = controlled_rates(plan, case.sched.shape(), case.events, case.steps)
        members = [g.params for g in plan.groups]
        rates = [{n: r for r, ns in zip(row, members, strict=True) for n in ns} for row in tl.rates]
        frozen = [{n for f, ns in zip(row, members, strict=True) if f for n in ns} | off for row in tl.frozen]
        return rates, frozen
    factors = case.sched.factors(plan, case.steps)
    rates = [
        {n: plan.lr_of(g) * float(factors[t, i]) for i, g in enumerate(plan.groups) for n in g.params}
        for t in range(case.steps)
    ]
    planned_frozen = {n for g in plan.groups if g.frozen for n in g.params} | off
    return rates, [planned_frozen] * case.steps


def check_cell(harness: Harness, case: Case, *, expected_failure: str = "") -> CellResult:
    """Run ``case`` on ``harness``'s backend and check it against the reference.

    Args:
        harness: The backend's harness.
        case: A shared case (see :func:`~multilr.testing.all_cases`).
        expected_failure: The reason this cell is listed as an expected failure, or ``""``.

    Returns:
        The result; its ``status`` already accounts for ``expected_failure``.

    Example:
        >>> from multilr.testing import ReferenceHarness, case_by_id
        >>> check_cell(ReferenceHarness(), case_by_id("adam-step-layer_decay")).status
        'passed'
    """
    result = CellResult(harness.backend, case.id, reason=expected_failure)
    try:
        obs = harness.run(case)
    except (Unsupported, UnsupportedFeatureError) as exc:
        result.status = "unsupported"
        result.messages.append(f"unsupported: {exc}")
    except Exception as exc:  # any crash of the backend is this cell's failure, reported with its trace
        result.status = "failed"
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        result.messages.append(f"raised {type(exc).__name__}: {exc}\n{''.join(tb[-6:])}")
    else:
        result.messages += _compare(case, obs, result)
        result.status = "failed" if result.messages else "passed"
    if expected_failure:
        result.status = "xpass" if result.status == "passed" else "xfail"
        if result.status == "xpass":
            result.messages.insert(0, f"listed as an expected failure ({expected_failure}) but passed")
    return result


def _compare(case: Case, obs: Observation, result: CellResult) -> list[str]:
    plan = make_plan(case.infos(), case.spec)
    msgs = _compare_plans(planned(plan), obs.planned)
    if obs.requires_grad is not None:
        left_on = [n for n, (_, _, frozen) in planned(plan).items() if frozen and obs.requires_grad.get(n)]
        if left_on:
            msgs.append(
                f"frozen tensors left with requires_grad on after build: {left_on}; a backend's emit sets "
                "its framework's flag off for every tensor the plan freezes (else they get gradients, "
                "optimizer state and a share of a clipped gradient norm)"
            )
        switched_on = sorted(n for n in case.model_frozen() if obs.requires_grad.get(n))
        if switched_on:
            msgs.append(
                f"tensors the model had frozen (requires_grad off, no spec rule) switched on by build: "
                f"{switched_on}; a backend never changes a flag the plan does not freeze"
            )
    if len(obs.params) != case.steps + 1:
        return [
            *msgs,
            f"got {len(obs.params)} snapshots, should be {case.steps + 1} (before + after each step)",
        ]
    missing = set(case.names()) - set(obs.params[0])
    if missing:
        return [*msgs, f"parameters missing from the snapshots: {sorted(missing)}"]
    ref_traj, rates = reference_run(case, plan)
    frozen = _expected(case, plan)[1]
    wd = _weight_decays(plan)
    shadow = Reference(case.setup.kind, case.setup.hyper)
    rtol, tol = tolerance(case)
    eps = EPS[case.dtype]
    seen: list[Mapping[str, Any]] = []  # each step's gradients so far, to replay a tensor's steps
    replay = _Replay(case, obs, rates, frozen, seen, (rtol, eps))
    for name in case.names():
        result.rates[name] = []
    for t in range(case.steps):
        grads = case.gradient(t)
        seen.append(grads)
        for name in case.names():
            before, after = obs.params[t][name], obs.params[t + 1][name]
            delta = after - before
            want = rates[t][name]
            if name in frozen[t] or want == 0.0:
                result.rates[name].append(0.0)
                if np.any(delta != 0.0):
                    why = "is frozen" if name in frozen[t] else "has rate 0"
                    msgs.append(f"step {t}: {name} {why} but moved by up to {np.abs(delta).max():.3g}")
                if name not in frozen[t]:  # a rate of 0 still advances the optimizer state
                    shadow.direction(name, before, grads[name], weight_decay=wd[name])
                continue
            u = shadow.direction(name, before, grads[name], weight_decay=wd[name])
            got = float(-(delta * u).sum() / (u * u).sum())
            result.rates[name].append(got)
            if not abs(got - want) <= rtol * abs(want):  # written so that a NaN rate fails here too
                msgs.append(
                    f"step {t}: {name} trained at rate {got:.6g}, plan x schedule says {want:.6g} "
                    f"(ratio {got / want:.4g})"
                    + replay.weight_decay_hint(name, wd)
                )
                continue
            if not _fits(delta, want, u, before, rtol, eps):
                misfit = float(np.abs(delta + want * u).max())
                hint = replay.weight_decay_hint(name, wd)
                msgs.append(
                    f"step {t}: {name}'s update is not rate x direction: off by "
                    f"{misfit / float(np.abs(want * u).max()):.3g} of its size"
                    + (hint or " (was the gradient scaled instead of the rate?)")
                )
    for t in range(1, case.steps + 1):
        for name in case.names():
            ref, got_p = ref_traj[t][name], obs.params[t][name]
            err = float(np.abs(got_p - ref).max() / max(1.0, float(np.abs(ref).max())))
            if not err <= tol:  # a NaN parameter fails (NaN > tol is false)
                msgs.append(f"after step {t}: {name} is {err:.3g} from the reference (tolerance {tol:g})")
    final = obs.params[-1]
    result.final = {n: [float(x) for x in np.ravel(final[n])] for n in case.names()}
    return msgs


def _fits(delta: Any, want: float, u: Any, before: Any, rtol: float, eps: float) -> bool:
    """Whether the update ``delta`` is ``-want x u`` element-wise, within the tolerance."""
    misfit = float(np.abs(delta + want * u).max())
    return misfit <= rtol * float(np.abs(want * u).max()) + 4 * eps * float(np.abs(before).max())


@dataclass(frozen=True)
class _Replay:
    """One tensor's observed steps so far, trained again under other weight decays."""

    case: Case
    obs: Observation
    rates: Sequence[Mapping[str, float]]
    frozen: Sequence[Any]
    grads: Sequence[Mapping[str, Any]]
    tols: tuple[float, float]

    def weight_decay_hint(self, name: str, wd: Mapping[str, float]) -> str:
        """``"; ..."`` when every step of ``name`` so far fits its planned rate under another weight decay.

        A wrong ``weight_decay`` in a group reads as a wrong rate (the update's direction
        changes), which would send a backend's author after the scales. Each other weight
        decay the plan uses, and 0, is tried from step 0 on the observed parameters, so
        the optimizer state is the one the backend had under that decay.
        """
        for other in sorted({0.0, *wd.values()} - {wd[name]}):
            if self._fits_throughout(name, other):
                return (
                    f"; every step so far fits the planned rate with weight decay {other:g}, where the "
                    f"plan gives {name} {wd[name]:g}: the group's weight_decay is wrong, not its rate"
                )
        return ""

    def _fits_throughout(self, name: str, weight_decay: float) -> bool:
        rtol, eps = self.tols
        ref = Reference(self.case.setup.kind, self.case.setup.hyper)
        for t, grads in enumerate(self.grads):
            if name in self.frozen[t]:
                continue
            before = self.obs.params[t][name]
            delta = self.obs.params[t + 1][name] - before
            u = ref.direction(name, before, grads[name], weight_decay=weight_decay)
            want = self.rates[t][name]
            if want == 0.0:
                continue
            if (u * u).sum() == 0.0:
                return False
            got = float(-(delta * u).sum() / (u * u).sum())
            if abs(got - want) > rtol * abs(want) or not _fits(delta, want, u, before, rtol, eps):
                return False
        return True


def _compare_plans(
    want: Mapping[str, tuple[float, float, bool]], got: Mapping[str, tuple[float, float, bool]]
) -> list[str]:
    msgs = []
    for name, (lr, wd, frozen) in want.items():
        if name not in got:
            msgs.append(f"plan: {name} is in no group of the backend's plan")
            continue
        g_lr, g_wd, g_frozen = got[name]
        if (
            frozen != g_frozen
            or not np.isclose(lr, g_lr, rtol=1e-12, atol=0)
            or not np.isclose(wd, g_wd, rtol=1e-12)
        ):
            msgs.append(
                f"plan: {name} got (lr {g_lr:g}, weight_decay {g_wd:g}, frozen {g_frozen}), "
                f"the reference plan says (lr {lr:g}, weight_decay {wd:g}, frozen {frozen})"
            )
    return msgs
