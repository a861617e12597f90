"""The digits demo's data, model and training loop, for the examples and tests.

They live in the ``multilr-torch`` package (``multilr_torch._demo_*``) so that the
installed ``multilr demo`` command can run them; this module gives the examples one
short import for them.
"""

from multilr_torch._demo_data import Split, Tasks, load_tasks
from multilr_torch._demo_model import Block, DigitsCNN, with_new_head
from multilr_torch._demo_train import evaluate, fit, train_epoch

__all__ = [
    "Block",
    "DigitsCNN",
    "Split",
    "Tasks",
    "evaluate",
    "fit",
    "load_tasks",
    "train_epoch",
    "with_new_head",
]
