"""``multilr._freezing`` without a framework: what each ``freeze_by`` mode needs of the optimizer.

The torch optimizers always have ``register_step_pre_hook``, so the torch tests never meet an
optimizer without one; OneFlow 0.9's have none, and the default mode must work there.
"""

from types import SimpleNamespace

import pytest

from multilr import SpecError, UnsupportedFeatureError
from multilr._freezing import step_pre_hook


def test_the_default_mode_needs_no_step_hook():
    assert step_pre_hook(SimpleNamespace(param_groups=[]), "requires_grad") is None


def test_grad_mode_needs_a_step_hook():
    with pytest.raises(UnsupportedFeatureError, match="no register_step_pre_hook"):
        step_pre_hook(SimpleNamespace(param_groups=[]), "grad")
    hooked = SimpleNamespace(param_groups=[], register_step_pre_hook=lambda hook: None)
    assert step_pre_hook(hooked, "grad") is hooked.register_step_pre_hook


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(SpecError, match=r"must be one of \['requires_grad', 'grad'\], got 'frozen'"):
        step_pre_hook(SimpleNamespace(param_groups=[]), "frozen")
