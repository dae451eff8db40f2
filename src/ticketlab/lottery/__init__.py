"""Lottery tickets: iterative magnitude pruning with rewinding, and its controls."""

from .config import CONTROLS, PRESETS, IMPConfig
from .imp_runner import IMPRun, dense_parent, imp, imp_parent, normalize_config, round_weights, run_table
from .plan import Plan, layer_rates, make_plan

__all__ = [
    "CONTROLS",
    "PRESETS",
    "IMPConfig",
    "IMPRun",
    "Plan",
    "dense_parent",
    "imp",
    "imp_parent",
    "round_weights",
    "layer_rates",
    "make_plan",
    "normalize_config",
    "run_table",
]
