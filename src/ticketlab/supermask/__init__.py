"""Supermasks: masks that make untrained (or pretrained, frozen) weights accurate."""

from .learn import METHODS, WEIGHTS, attach, expected_density, hard_masks, set_eval_mode, signed_constant_
from .masks import BernoulliMask, HardConcreteMask, L0Penalty, TopKMask
from .runner import PRESETS, SupermaskConfig, format_summary, run_supermask

__all__ = [
    "METHODS",
    "WEIGHTS",
    "BernoulliMask",
    "HardConcreteMask",
    "L0Penalty",
    "TopKMask",
    "attach",
    "expected_density",
    "hard_masks",
    "set_eval_mode",
    "signed_constant_",
    "PRESETS",
    "SupermaskConfig",
    "format_summary",
    "run_supermask",
]
