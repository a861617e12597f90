"""OneFlow's harnesses for the conformance suite, and their expected failures.

* ``oneflow`` (eager): :class:`multilr.testing.TorchLikeHarness` with ``oneflow`` as
  the framework, in the test process.
* ``oneflow-graph``: :class:`GraphHarness` trains inside a compiled ``nn.Graph`` whose loss
  is ``sum_p <p, G_p>`` (so each gradient is exactly the case's), with the optimizer and
  scheduler attached by ``multilr_oneflow.add_optimizer``. Graph cases run in a separate
  process (OneFlow 0.9 can abort a process after a failed compile, and crashed at random
  in ~2% of long-lived graph runs): :class:`GraphServer` starts ``python _conformance.py
  serve``, sends it case ids and reads back one ``RESULT`` line per case; a process that
  dies is replaced and its case retried once; a fresh process every ``RESTART_EVERY`` cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from multilr import UnsupportedFeatureError
from multilr.testing import Case, Observation, TorchLikeHarness, Unsupported, case_by_id

_GLOBAL_STEP = (
    "OneFlow's Adam/AdamW take the bias-correction step count from the optimizer, not per tensor "
    "(PyTorch): a tensor frozen for k steps, or first unfrozen at step k, is corrected as if it had "
    "trained them, so it trains at ~0.64-0.8x the rate right after unfreezing"
)

#: Where OneFlow differs from PyTorch's formulas (the reference), measured in
#: shared/notes/oneflow-semantics.md (the Adam step count: found by the ``ctl_*`` cases,
#: ``oneflow/nn/optimizer/adam.py`` keeps one ``self._state["step"]``) and reproduced by these cells.
EAGER_EXPECTED = {
    "dampening-*": "OneFlow starts the momentum buffer at (1 - dampening) * g, PyTorch at g: "
    "the first step trains at (1 - dampening) x the rate",
    "rmsprop-*": "OneFlow's RMSprop puts eps inside the square root (g / sqrt(v + eps)), PyTorch outside",
    "adam*-*-ctl_freeze*": _GLOBAL_STEP,
    "adam*-*-ctl_thaw": _GLOBAL_STEP,
    "adam*-*-ctl_stages": _GLOBAL_STEP,
    "adam*-*-ctl_train_bn": _GLOBAL_STEP,
}

#: Optimizers whose every cell is an expected failure on eager OneFlow.
EAGER_EXPECTED_OPTIMIZERS = ("dampening", "rmsprop")

#: The refusals first: a cell takes the reason of the first pattern it matches.
GRAPH_EXPECTED = {
    "*-float64": "nn.Graph cannot compile float64 parameters: multilr refuses the build",
    "*-inverse-*": "seed 001's lr / (i + 1) needs LambdaLR, which nn.Graph cannot run: add_optimizer refuses it",
    "*-group_decay-*": "per-group decay factors need LambdaLR (or editing lr), which nn.Graph cannot run: "
    "add_optimizer refuses it",
    "*-ctl_*": "nn.Graph compiles rates and requires_grad at its first call; runtime control refused "
    "(multilr.Controller raises UnsupportedFeatureError on lr_scale groups; build refuses spec stages "
    "and rule schedules)",
    **EAGER_EXPECTED,
}

RESTART_EVERY = 25
CASE_TIMEOUT_S = 120


def _flow() -> Any:
    import multilr_oneflow

    return multilr_oneflow.import_oneflow()


class GraphHarness(TorchLikeHarness):
    """Runs a case inside a compiled ``nn.Graph`` (in this process: see :class:`GraphServer`)."""

    def __init__(self) -> None:
        super().__init__(_flow(), "oneflow-graph")

    def make_scheduler(self, case: Case, opt: Any, factors: list[float]) -> Any:
        if case.sched.kind == "multilr":  # nn.Graph cannot run LambdaLR: compile the schedule
            import multilr_oneflow

            return multilr_oneflow.graph_scheduler(opt, case.sched.params["schedule"], total_steps=case.steps)
        return super().make_scheduler(case, opt, factors)

    def train(self, case: Case, model: Any, groups: Any) -> list[dict[str, Any]]:
        import multilr_oneflow

        flow = self.fw
        opt = self.make_optimizer(case, groups)
        if case.controlled:  # as a user would: multilr.Controller refuses lr_scale groups (-> unsupported)
            self.make_controller(case, opt, groups)
        sched = self.make_scheduler(case, opt, case.sched.group_factors(groups.plan))
        trained = [n for n, p in model.named_parameters() if p.requires_grad]

        class Train(flow.nn.Graph):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.model = model
                multilr_oneflow.add_optimizer(self, opt, lr_sch=sched)

            def build(self, *grads: Any) -> Any:
                # attribute access, not named_parameters(): inside build() only the former
                # gives the graph's own variables (the latter's tensors are never updated)
                loss = sum((_attr(self.model, n) * g).sum() for n, g in zip(trained, grads, strict=True))
                loss.backward()
                return loss

        graph = Train()
        snaps = [self.snapshot(model)]
        for t in range(case.steps):
            grads = case.gradient(t)
            graph(*[flow.tensor(grads[n], dtype=flow.float32) for n in trained])
            snaps.append(self.snapshot(model))
        return snaps


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _encode(obs: Observation) -> dict[str, Any]:
    return {
        "params": [{n: v.tolist() for n, v in snap.items()} for snap in obs.params],
        "planned": {n: list(v) for n, v in obs.planned.items()},
    }


def _decode(data: dict[str, Any]) -> Observation:
    params = [{n: np.asarray(v, dtype=np.float64) for n, v in snap.items()} for snap in data["params"]]
    planned = {n: (float(v[0]), float(v[1]), bool(v[2])) for n, v in data["planned"].items()}
    return Observation(params, planned)


#: Case ids the server also takes, to prove the isolation (``test_graph_isolation.py``).
PROBES = ("probe:failed-compile", "probe:abort")


def _probe(case_id: str) -> None:
    """A real nn.Graph whose compile fails; with ``probe:abort`` the process then dies.

    OneFlow 0.9 sometimes aborts the whole process after a failed compile (and crashed at
    random in long-lived graph runs); ``os.abort`` is that death on demand, so the test
    can show the next case still runs.
    """
    flow = _flow()

    class Broken(flow.nn.Graph):  # type: ignore[misc, name-defined]
        def build(self, x: Any) -> Any:
            raise RuntimeError(f"{case_id}: this graph cannot compile")

    try:
        Broken()(flow.ones(2))
    finally:
        if case_id == "probe:abort":
            os.abort()


def serve() -> None:
    """Read case ids from stdin, run each in a graph, write ``RESULT {json}`` per case."""
    harness = GraphHarness()
    for line in sys.stdin:
        case_id = line.strip()
        if not case_id:
            continue
        try:
            if case_id in PROBES:
                _probe(case_id)
            out: dict[str, Any] = {"observation": _encode(harness.run(case_by_id(case_id)))}
        except (Unsupported, UnsupportedFeatureError) as exc:
            out = {"unsupported": str(exc)}
        except Exception as exc:  # reported to the parent, which decides
            out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        print("RESULT " + json.dumps(out), flush=True)


class GraphServer:
    """The ``oneflow-graph`` harness as seen from the test process (see the module docstring)."""

    backend = "oneflow-graph"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._served = 0

    def _start(self) -> subprocess.Popen[str]:
        self.close()
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # OneFlow's CUDA and glog warnings
            text=True,
            cwd=Path(__file__).parent,
        )
        self._served = 0
        return self._proc

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None

    def _ask(self, case_id: str) -> dict[str, Any] | None:
        proc = self._proc if self._proc is not None and self._served < RESTART_EVERY else self._start()
        assert proc.stdin is not None and proc.stdout is not None
        self._served += 1
        watchdog = threading.Timer(CASE_TIMEOUT_S, proc.kill)  # a hung graph reads as a dead process
        watchdog.start()
        try:
            proc.stdin.write(case_id + "\n")
            proc.stdin.flush()
            while True:
                line = proc.stdout.readline()
                if not line:  # the process died
                    self._proc = None
                    return None
                if line.startswith("RESULT "):
                    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
                    return result
        except BrokenPipeError:
            self._proc = None
            return None
        finally:
            watchdog.cancel()

    def run(self, case: Case) -> Observation:
        result = self._ask(case.id)
        if result is None:
            warnings.warn(f"graph process died on {case.id}; rerunning it in a fresh process", stacklevel=2)
            result = self._ask(case.id)
        if result is None:
            raise RuntimeError(f"the graph process died twice on {case.id}")
        if "unsupported" in result:
            raise Unsupported(result["unsupported"])
        if "error" in result:
            raise RuntimeError(f"{result['error']}\n{result['traceback']}")
        return _decode(result["observation"])


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve()
