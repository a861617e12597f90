"""The conformance suite: every backend applies the plan's effective rates, step by step.

Framework-free (NumPy only) and importable without pytest. A backend runs the shared
cases through a harness (build the case's model, ``multilr.build`` it, train a few
steps with fixed gradients, read the parameters back) and is checked against a float64
NumPy reference: the effective rate of every tensor at every step, read from its
update, must equal the plan's rate times the schedule, and the whole trajectory must
match. See the README's "Conformance" section for running it on a new backend::

    import torch
    from multilr.testing import TorchLikeHarness, check_backend

    report = check_backend(TorchLikeHarness(torch, "my-backend"),
                           expected_failures={"rmsprop-*": "eps sits inside the sqrt"})
    print(report.summary())
"""

from multilr.testing._cases import (
    FEATURES,
    LAYOUT,
    OPTIMIZERS,
    RUNTIME_FEATURES,
    Case,
    Module,
    OptimizerSetup,
    RuntimeFeature,
    all_cases,
    case_by_id,
)
from multilr.testing._check import (
    TOLERANCES,
    CellResult,
    Harness,
    Observation,
    Unsupported,
    check_cell,
    expected_rates,
    planned,
    reference_run,
    tolerance,
)
from multilr.testing._figures import FIGURES_ENV, read_figures, state_figure
from multilr.testing._harness import MISTAKES, ReferenceHarness, TorchLikeHarness
from multilr.testing._reference import OPTIMIZER_KINDS, Reference
from multilr.testing._runtime import ACTIONS, Event, Timeline, controlled_rates
from multilr.testing._same import assert_bit_identical
from multilr.testing._schedules import SCHEDULES, Schedule
from multilr.testing._suite import (
    Cell,
    Report,
    assert_conformance,
    check_backend,
    conformance_cells,
    expected_reason,
)
from multilr.testing._trace import TRACE_ENV, Comparison, compare, load_traces, record

__all__ = [
    "assert_bit_identical",
    "FIGURES_ENV",
    "read_figures",
    "state_figure",
    "ACTIONS",
    "FEATURES",
    "LAYOUT",
    "MISTAKES",
    "OPTIMIZERS",
    "OPTIMIZER_KINDS",
    "RUNTIME_FEATURES",
    "SCHEDULES",
    "TRACE_ENV",
    "TOLERANCES",
    "Case",
    "Cell",
    "CellResult",
    "Comparison",
    "Event",
    "Harness",
    "Module",
    "Observation",
    "OptimizerSetup",
    "Reference",
    "ReferenceHarness",
    "Report",
    "RuntimeFeature",
    "Schedule",
    "Timeline",
    "TorchLikeHarness",
    "Unsupported",
    "all_cases",
    "assert_conformance",
    "case_by_id",
    "check_backend",
    "check_cell",
    "compare",
    "conformance_cells",
    "controlled_rates",
    "expected_rates",
    "expected_reason",
    "load_traces",
    "planned",
    "record",
    "reference_run",
    "tolerance",
]
