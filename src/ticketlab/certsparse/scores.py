"""Neuron scores for the verified-sparse methods: which ReLU neurons to prune or graft first (lowest first).

- ``stability`` (Li et al. 2022, "Can pruning improve certified robustness?", VITA-Group/CertifiedPruning):
  the ReLU-stability term tanh(1 + l u) of each neuron's pre-activation bounds [l, u] over the eps-ball of
  each scoring sample, averaged over the samples (the reference's NRS; it divides l u by the BatchNorm scale
  squared before a BN-ReLU, which ``gamma`` supplies). It is near -1 for a neuron whose interval straddles 0
  widely (unstable) and near tanh(1) or above for a stable one, so the most unstable neurons go first, as in
  the reference. One deviation: a neuron stably inactive for every scoring sample (u <= 0, it outputs 0 on
  the whole ball) scores -inf and goes before all others - removing it changes neither the outputs on those
  balls nor any bound, where the reference ranks it by l u like any stable neuron and keeps it.
- ``magnitude`` (Chen et al. 2022, linearity grafting, "magnitude" mode on pre-activations): the mean
  |pre-activation| over clean samples; neurons that hover around 0 are the insignificant ones.
- ``random``: uniform scores (a control).

Scores are per neuron (every element of a convolution's output, as grafting wants) for each ReLU layer in
order; ``per_channel`` averages them over a convolution's positions (structured pruning of channels).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..attacks import to_pixels
from ..errors import UserError
from ..models.graft import GraftedReLU
from ..verify import ReLU, input_box, pre_bounds, to_ops

SCORES = ("stability", "magnitude", "random")


def nrs(lo: torch.Tensor, hi: torch.Tensor, gamma: torch.Tensor | None = None) -> torch.Tensor:
    """The stability term per sample and neuron: tanh(1 + l u / gamma^2) (gamma 1 without a BatchNorm)."""
    prod = lo * hi if gamma is None else lo * hi / (gamma**2 + 1e-20)
    return torch.tanh(1 + prod)


def stability_scores(lo: torch.Tensor, hi: torch.Tensor, gamma: torch.Tensor | None = None) -> torch.Tensor:
    """(B, *shape) pre-activation bounds -> (*shape) scores: mean NRS over the batch, -inf where the neuron
    is stably inactive (u <= 0) on every sample."""
    s = nrs(lo, hi, gamma).mean(0)
    return torch.where((hi <= 0).all(0), torch.full_like(s, -math.inf), s)


def relu_inputs(model: nn.Module, data, x: torch.Tensor, eps: float, bound: str = "ibp"):
    """Pre-activation bounds of every ReLU over the eps-balls (pixel units) around standardised ``x``:
    [(l, u)] in ReLU order. ``bound``: ibp (the reference's pruning scores) or crown (tighter)."""

    ops = to_ops(model, data.input_shape, data.mean, data.std)
    lo, hi = input_box(to_pixels(x, data), eps, data.pixel_range)
    was = model.training
    model.eval()
    with torch.no_grad():
        pre, _ = pre_bounds(ops, lo, hi, "crown" if bound == "crown" else "ibp")
    model.train(was)
    return [pre[i] for i, op in enumerate(ops) if isinstance(op, ReLU)]


def pre_activations(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every ReLU (grafted or not) on ``x``, in order."""

    found: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, inp, _o: found.append(inp[0].detach()))
        for m in model.modules()
        if isinstance(m, (nn.ReLU, GraftedReLU))
    ]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return found


def neuron_scores(
    score: str,
    model: nn.Module,
    data,
    x: torch.Tensor,
    *,
    eps: float,
    bound: str = "ibp",
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Scores (lowest go first) of every ReLU layer's neurons on the scoring inputs ``x`` (standardised)."""
    if score == "stability":
        if eps <= 0:
            raise UserError(f"--score stability needs --score-eps > 0 (pixel units), got {eps}")
        return [stability_scores(lo, hi) for lo, hi in relu_inputs(model, data, x, eps, bound)]
    if score == "magnitude":
        return [z.abs().mean(0) for z in pre_activations(model, x)]
    if score == "random":
        return [torch.rand(z.shape[1:], generator=generator).to(z.device) for z in pre_activations(model, x[:1])]
    raise UserError(f"unknown --score {score!r}; choose one of: {', '.join(SCORES)}")


def per_channel(s: torch.Tensor) -> torch.Tensor:
    """A layer's neuron scores (C, *positions) as one score per channel: the mean over positions, -inf only
    where every position is -inf (a channel dead everywhere)."""
    if s.dim() == 1:
        return s
    flat = s.reshape(s.shape[0], -1)
    dead = torch.isinf(flat) & (flat < 0)
    mean = torch.where(dead, torch.zeros_like(flat), flat).sum(1) / (~dead).sum(1).clamp_min(1)
    return torch.where(dead.all(1), torch.full_like(mean, -math.inf), mean)


def lowest(scores: list[torch.Tensor], fraction: float, scope: str, generator: torch.Generator) -> list[torch.Tensor]:
    """Bool masks, True on the ``fraction`` of entries with the lowest scores: per layer (``layerwise``,
    round(fraction x size) each) or across all layers (``global``). Ties are broken by ``generator``."""
    if not 0 <= fraction < 1:
        raise UserError(f"--fraction must be in [0, 1), got {fraction}")
    if scope == "layerwise":
        out = []
        for s in scores:
            k = int(round(fraction * s.numel()))
            out.append(_bottom(s.reshape(-1), k, generator).view(s.shape))
        return out
    if scope != "global":
        raise UserError(f"unknown --scope {scope!r}; choose one of: layerwise, global")
    flat = torch.cat([s.reshape(-1) for s in scores])
    chosen = _bottom(flat, int(round(fraction * flat.numel())), generator)
    return [c.view(s.shape) for c, s in zip(chosen.split([s.numel() for s in scores]), scores)]


def _bottom(s: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    out = torch.zeros(s.numel(), dtype=torch.bool, device=s.device)
    if k <= 0:
        return out
    tie = torch.rand(s.numel(), generator=generator).to(s.device)
    out[_lexsort(s, tie)[:k]] = True
    return out


def _lexsort(s: torch.Tensor, tie: torch.Tensor) -> torch.Tensor:
    """Indices ordering by score, then by the random tie-breaker."""
    first = torch.argsort(tie, stable=True)
    return first[torch.argsort(s[first].double(), stable=True)]
