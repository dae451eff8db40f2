"""Pruning at initialization (a registry: ``PRUNERS``): random, magnitude, SNIP, GraSP, SynFlow, GAP."""

from . import scores  # noqa: F401  (registrations)
from .prune import SCOPES, prune_at_init, score
from .registry import PRUNERS
from .runner import PruneInitConfig, format_prune_init, run_prune_init

__all__ = ["PRUNERS", "SCOPES", "PruneInitConfig", "format_prune_init", "prune_at_init", "run_prune_init", "score"]
