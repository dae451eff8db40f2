"""Sparse double descent sweeps (He et al., ICML 2022)."""
from .runner import SweepConfig, format_sweep, run_sweep

__all__ = ["SweepConfig", "format_sweep", "run_sweep"]
