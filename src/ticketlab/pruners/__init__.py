"""Pruning at initialization (a registry: ``PRUNERS``): random, magnitude, SNIP, GraSP, SynFlow."""
from . import scores  # noqa: F401  (registrations)
from .prune import SCOPES, prune_at_init
from .registry import PRUNERS

__all__ = ["PRUNERS", "SCOPES", "prune_at_init"]
