"""Mask criteria of Zhou et al. (2019), "Deconstructing Lottery Tickets": scores M(w_i, w_f).

Each criterion scores every weight from its initial value ``w_i`` and trained value ``w_f``; the
layerwise top-k of the score (ties broken at random) is kept. ``kept`` is the current mask: entries
already pruned never come back (``layerwise_prune`` puts them at -inf), and criteria defined through
ranks rank among kept entries only.
"""
from __future__ import annotations

import torch

from .registry import CRITERIA


@CRITERIA.register("large_final")
def large_final(wi, wf, kept, g):
    """|w_f|: magnitude pruning, the LTH criterion."""
    return wf.abs()


@CRITERIA.register("small_final")
def small_final(wi, wf, kept, g):
    return -wf.abs()


@CRITERIA.register("large_init")
def large_init(wi, wf, kept, g):
    return wi.abs()


@CRITERIA.register("small_init")
def small_init(wi, wf, kept, g):
    return -wi.abs()


@CRITERIA.register("magnitude_increase")
def magnitude_increase(wi, wf, kept, g):
    """|w_f| - |w_i|."""
    return wf.abs() - wi.abs()


@CRITERIA.register("movement")
def movement(wi, wf, kept, g):
    """|w_f - w_i|."""
    return (wf - wi).abs()


@CRITERIA.register("random")
def random(wi, wf, kept, g):
    return torch.rand(wf.shape, generator=g).to(wf.device)


@CRITERIA.register("large_final_same_sign")
def large_final_same_sign(wi, wf, kept, g):
    """|w_f| where sign(w_i) = sign(w_f), else 0 (the paper's max(0, w_i w_f / |w_i|))."""
    return torch.where(torch.sign(wi) == torch.sign(wf), wf.abs(), torch.zeros_like(wf))


@CRITERIA.register("large_final_diff_sign")
def large_final_diff_sign(wi, wf, kept, g):
    """|w_f| where sign(w_i) != sign(w_f), else 0."""
    return torch.where(torch.sign(wi) != torch.sign(wf), wf.abs(), torch.zeros_like(wf))


def rank_among_kept(values: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Rank (0 = smallest) of each kept entry among the kept entries; pruned entries get -1."""
    flat, k = values.flatten(), kept.flatten()
    idx = torch.nonzero(k).squeeze(1)
    ranks = torch.full_like(flat, -1.0)
    order = torch.argsort(flat[idx], stable=True)
    r = torch.empty_like(order)
    r[order] = torch.arange(len(order), device=order.device)
    ranks[idx] = r.to(ranks.dtype)
    return ranks.view(values.shape)


@CRITERIA.register("large_init_large_final")
def large_init_large_final(wi, wf, kept, g):
    """Kept iff both |w_i| and |w_f| are past one shared percentile: the min of the two ranks."""
    return torch.minimum(rank_among_kept(wi.abs(), kept), rank_among_kept(wf.abs(), kept))


@CRITERIA.register("small_init_small_final")
def small_init_small_final(wi, wf, kept, g):
    return torch.minimum(rank_among_kept(-wi.abs(), kept), rank_among_kept(-wf.abs(), kept))
