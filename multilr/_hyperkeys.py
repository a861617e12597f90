"""Misspelt optimizer hyperparameters in a spec's ``hyper``.

torch and OneFlow keep any key of a parameter group and read only the ones the
optimizer knows: ``hyper: {momentun: 0.9}`` gives SGD no momentum and no error. multilr
cannot know which optimizer the groups will go to, and optimizers of other libraries
take keys of their own, so an unknown key is accepted; only a key that is one slip away
from a known hyperparameter, and is not one itself, is refused.
"""

from __future__ import annotations

import difflib

from multilr.errors import SpecError

__all__ = ["KNOWN_HYPER", "check_hyper_key"]

#: Hyperparameter names of the optimizers of torch 2.13 and OneFlow 0.9 (constructor
#: arguments and group keys), and of common third-party optimizers (timm, transformers'
#: Adafactor, bitsandbytes, Prodigy, schedule-free). A key in this set is never refused.
KNOWN_HYPER = frozenset(
    {
        # torch.optim (2.13)
        "adjust_lr_fn", "alpha", "amsgrad", "beta2_decay", "betas", "capturable", "centered", "d",
        "dampening", "decoupled_weight_decay", "differentiable", "eps", "etas", "foreach", "fused",
        "history_size", "initial_accumulator_value", "lambd", "line_search_fn", "lr_decay",
        "max_eval", "max_iter", "maximize", "momentum", "momentum_decay", "nesterov",
        "ns_coefficients", "ns_steps", "rho", "step_sizes", "t0", "tolerance_change",
        "tolerance_grad", "initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum",
        # OneFlow (0.9)
        "adam_w_mode", "do_bias_correction", "clip_grad_max_norm", "clip_grad_norm_type",
        "contiguous_params",
        # third-party optimizers
        "bias_correction", "grad_averaging", "max_grad_norm", "trust_clip", "trust_coeff",
        "always_adapt", "caution", "corrected_weight_decay", "no_prox", "rectify",
        "degenerated_to_sgd", "scale_parameter", "relative_step", "warmup_init", "beta1",
        "beta2", "beta3", "decay_rate", "clip_threshold", "eps_scale", "delta", "wd_ratio",
        "optim_bits", "min_8bit_size", "percentile_clipping", "block_wise", "is_paged",
        "d0", "d_coef", "growth_rate", "use_bias_correction", "safeguard_warmup",
        "fsdp_in_use", "slice_p", "warmup_steps", "r", "weight_lr_power", "train_mode",
        "decouple", "use_lookahead", "k", "nesterov_momentum", "set_grad_none",
    }
)  # fmt: skip


def check_hyper_key(key: str) -> None:
    """Refuse ``key`` when it is a near miss of a known hyperparameter name.

    Raises:
        SpecError: ``key`` is not in :data:`KNOWN_HYPER` and differs from one of its
            names by about one character (``momentun``, ``nesterove``, ``beta``).

    Example:
        >>> check_hyper_key("momentum"), check_hyper_key("trust_coefficient")
        (None, None)
        >>> check_hyper_key("momentun")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multilr.errors.SpecError: hyper.momentun: ... (did you mean 'momentum'?); ...
    """
    if key in KNOWN_HYPER:
        return
    close = difflib.get_close_matches(key, KNOWN_HYPER, n=1, cutoff=0.85)
    if close:
        raise SpecError(
            f"hyper.{key}: no optimizer multilr knows takes {key!r} (did you mean {close[0]!r}?); "
            "torch and OneFlow keep an unknown group key and ignore it, so a misspelt one would "
            "change nothing, silently"
        )
