"""Pruning at initialization: score, then keep the top weights, once or over an exponential schedule.

``scope="global"`` ranks all prunable weights together; ``scope="layerwise"`` keeps each layer's share
given by a sparsity distribution (uniform, ER, ERK). Iterative pruning reaches density d in ``rounds``
steps of d^(k/rounds), re-scoring the masked model each time (SynFlow's default: 100 rounds).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..sparse import Mask, apply_mask_, global_prune, layerwise_prune, nm_prune, ones_mask, parse_pattern
from ..sparse.distributions import layer_densities
from .registry import PRUNERS

DEFAULT_ROUNDS = {"synflow": 100}
SCOPES = ("global", "layerwise")


def score(
    scorer, model: nn.Module, names: list[str], batches: list, generator: torch.Generator, context: dict | None = None
) -> dict[str, torch.Tensor]:
    """``scorer``'s scores of the model as it is (masked weights at zero), with ``context`` if it takes one."""
    extra = (context or {}) if getattr(scorer, "takes_context", False) else {}
    return scorer(model, names, batches, generator, **extra)


def prune_at_init(
    model: nn.Module,
    names: list[str],
    method: str,
    density: float,
    batches: list,
    generator: torch.Generator,
    scope: str = "global",
    rounds: int | None = None,
    distribution: str = "uniform",
    overrides: dict[str, float] | None = None,
    context: dict | None = None,
    pattern: str | None = None,
) -> Mask:
    """Mask keeping ``density`` of the ``names`` weights by ``method``; the model's weights are left intact.

    ``pattern`` "N:M" keeps the N best-scored of every M consecutive weights along the input dimension
    instead (density N / M; one round). ``overrides`` (layerwise scope) fix some layers' final densities; on
    an iterative schedule they are reached along the same exponential path, d_l^(k/rounds). ``context``
    (e.g. ``{"data": dataset}``) is passed to scorers that take it (``gap``).
    """
    scorer = PRUNERS.get(method)
    if scope not in SCOPES:
        raise UserError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    if not 0 < density <= 1:
        raise UserError(f"density must be in (0, 1], got {density}")
    if overrides and scope != "layerwise":
        raise UserError("per-layer density overrides need --scope layerwise")
    if pattern is not None:
        n, m = parse_pattern(pattern, density)
        original = {k: v.detach().clone() for k, v in model.state_dict().items()}
        try:
            return nm_prune(
                score(scorer, model, names, batches, generator, context), ones_mask(model, names), n, m, generator
            )
        finally:
            model.load_state_dict(original)
    rounds = rounds or DEFAULT_ROUNDS.get(method, 1)
    if rounds < 1:
        raise UserError(f"rounds must be >= 1, got {rounds}")
    params = dict(model.named_parameters())
    shapes = {n: tuple(params[n].shape) for n in names}
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mask = ones_mask(model, names)
    try:
        for k in range(1, rounds + 1):
            d = density ** (k / rounds)
            apply_mask_(model, mask)
            scores = score(scorer, model, names, batches, generator, context)
            if scope == "global":
                mask = global_prune(scores, mask, d, generator)
            else:
                fixed = {n: v ** (k / rounds) for n, v in (overrides or {}).items()}
                mask = layerwise_prune(scores, mask, layer_densities(shapes, d, distribution, fixed), generator)
            model.load_state_dict(original)
    finally:
        model.load_state_dict(original)
    return mask
