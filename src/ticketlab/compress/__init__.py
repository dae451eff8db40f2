"""Compressing trained networks: one-shot or gradual pruning during fine-tuning, with any pruner (GMP, GAP)."""

from .gradual import SCHEDULES, GradualPruner, step_densities, step_iterations
from .runner import CompressConfig, format_compress, run_compress

__all__ = [
    "SCHEDULES",
    "CompressConfig",
    "GradualPruner",
    "format_compress",
    "run_compress",
    "step_densities",
    "step_iterations",
]
