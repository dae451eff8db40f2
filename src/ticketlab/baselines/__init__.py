"""Baselines any mask is judged against: scratch training (Liu et al. 2019), fine-tuning, and the sanity
checks of Frankle et al. (2021)."""

from .runner import BASELINES, format_baselines, run_baselines

__all__ = ["BASELINES", "format_baselines", "run_baselines"]
