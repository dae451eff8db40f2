"""Lottery tickets: iterative magnitude pruning with rewinding, and its controls."""
from .config import CONTROLS, PRESETS, IMPConfig
from .imp_runner import IMPRun, imp, run_table
from .plan import Plan, make_plan

__all__ = ["CONTROLS", "PRESETS", "IMPConfig", "IMPRun", "Plan", "imp", "make_plan", "run_table"]
