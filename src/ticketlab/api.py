"""The one-call API: ``ticketlab.prune`` and ``ticketlab.sparse_training``.

Each is a thin front over the pieces the commands use (``pruners.prune_at_init``, ``sparse.MaskEnforcer``,
``dst.make``), so a mask made here is the mask the CLI makes with the same settings and seed. Masks are
``{param name: bool tensor}`` (True = kept) everywhere; *density* is the fraction kept.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import UserError
from .sparse import Mask, MaskEnforcer, apply_mask_, prunable_names

DATA_FREE = ("magnitude", "random")  # the pruners that score without a batch


def prune(
    model: nn.Module,
    density: float,
    method: str = "magnitude",
    scope: str = "layerwise",
    *,
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    names: list[str] | None = None,
    distribution: str = "uniform",
    rounds: int | None = None,
    pattern: str | None = None,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
) -> Mask:
    """Prune ``model`` in place to ``density`` (the fraction of weights kept) and return its masks.

    ``method`` is any pruner of ``ticketlab list`` (``magnitude``, ``random``, ``snip``, ``grasp``,
    ``synflow``, ...); all but magnitude and random score with data, given as ``batch=(x, y)``.
    ``scope="layerwise"`` keeps ``density`` of every layer (``distribution`` ``er``/``erk`` share it out
    unevenly instead); ``scope="global"`` ranks all weights together. Either way exactly
    ``round(N * density)`` weights are kept. ``rounds`` re-scores iteratively (SynFlow's default: 100);
    ``pattern="2:4"`` keeps the best N of every M weights instead. ``names`` are the parameters to prune
    (default: the weights of Linear and Conv layers). With ``optimizer``, a ``MaskEnforcer`` is attached to
    it, so the pruned weights stay exactly zero however you then train. Ties break by ``seed``: the same
    seed gives the same masks.
    """
    from .pruners import PRUNERS, prune_at_init

    if not isinstance(density, (int, float)) or isinstance(density, bool) or not math.isfinite(density):
        raise UserError(f"density must be a number in (0, 1], got {density!r}")  # its range: prune_at_init's
    PRUNERS.get(method)  # an unknown name: one line listing the known ones
    if batch is None and method not in DATA_FREE:
        raise UserError(f"the {method} pruner scores with data: pass batch=(inputs, labels)")
    names = list(names) if names is not None else prunable_names(model)
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise UserError(f"the model has no parameters named {missing}; its parameters: {list(params)}")
    batches = [batch] if batch is not None else []
    mask = prune_at_init(
        model,
        names,
        method,
        float(density),
        batches,
        torch.Generator().manual_seed(seed),
        scope=scope,
        rounds=rounds,
        distribution=distribution,
        pattern=pattern,
    )
    apply_mask_(model, mask)
    if optimizer is not None:
        MaskEnforcer(model, mask, optimizer).attach()
    return mask


def sparse_training(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    method: str = "rigl",
    density: float = 0.1,
    *,
    total_steps: int,
    **options,
):
    """A sparse trainer for your own loop: call its ``step()`` after every ``optimizer.step()``.

    ``method`` is any of ``ticketlab list``'s sparse trainers (``static``, ``set``, ``rigl``, ``ctre``,
    ``acdc``, ``edst``, ``gmp``, ``snfs``, ``sparsevlr``); the model starts at ``density`` (the fraction of
    weights kept; GMP starts dense and ends there) with exact per-layer counts, and ``total_steps`` is how long
    you will train (the mask-update schedule ends before it). ``options`` are the method's own
    (``distribution="erk"``, ``delta_t=100``, ``drop_fraction=0.3``, ``seed=0``, ...). The trainer's ``masks``
    are ``{param name: bool tensor}``, its ``training_flops(batch_size)`` the FLOPs spent so far.
    """
    from .dst import make

    if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
        raise UserError(f"total_steps must be a positive integer, got {total_steps!r}")
    return make(method, model, optimizer, density=density, total_steps=total_steps, **options)
