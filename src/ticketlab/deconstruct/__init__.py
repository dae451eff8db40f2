"""Deconstructing lottery tickets (Zhou et al. 2019): criteria x kept values x signs, trained and untrained."""

from .runner import DeconstructConfig, run_deconstruct

__all__ = ["DeconstructConfig", "run_deconstruct"]
