"""COLT: cyclic overlapping lottery tickets (Hossain et al. 2022)."""

from .runner import COLTConfig, format_colt, run_colt, split_segments

__all__ = ["COLTConfig", "format_colt", "run_colt", "split_segments"]
