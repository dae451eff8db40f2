"""Mask criteria (a registry: ``CRITERIA``) and the layerwise masks they give."""

from __future__ import annotations

import torch

from ..sparse import Mask, layerwise_prune
from . import scores  # noqa: F401  (registrations)
from .registry import CRITERIA


def criterion_scores(
    name: str, init: dict[str, torch.Tensor], final: dict[str, torch.Tensor], mask: Mask, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    fn = CRITERIA.get(name)
    return {n: fn(init[n].float(), final[n].float(), mask[n], generator) for n in mask}


def criterion_mask(
    name: str,
    init: dict[str, torch.Tensor],
    final: dict[str, torch.Tensor],
    mask: Mask,
    densities: dict[str, float],
    generator: torch.Generator,
) -> Mask:
    """Layerwise top-k of criterion ``name`` among the entries ``mask`` keeps, to ``densities``."""
    return layerwise_prune(criterion_scores(name, init, final, mask, generator), mask, densities, generator)


__all__ = ["CRITERIA", "criterion_mask", "criterion_scores"]
