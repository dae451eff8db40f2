"""Mask criteria of Zhou et al. (2019), "Deconstructing Lottery Tickets": scores M(w_i, w_f).

Each criterion scores every weight from its initial value ``w_i`` and trained value ``w_f``; the
layerwise top-k of the score (ties broken at random) is kept. ``kept`` is the current mask: entries
already pruned never come back (``layerwise_prune`` puts them at -inf), and criteria defined through
ranks rank among kept entries only.

Registrations are calls at the bottom rather than decorators, so the mutation tests (mutmut, which skips
decorated functions) reach every criterion.
"""

from __future__ import annotations

import torch

from .registry import CRITERIA


def large_final(wi, wf, kept, g):
    """|w_f|: magnitude pruning, the LTH criterion."""
    return wf.abs()


def small_final(wi, wf, kept, g):
    return -wf.abs()


def large_init(wi, wf, kept, g):
    return wi.abs()


def small_init(wi, wf, kept, g):
    return -wi.abs()


def magnitude_increase(wi, wf, kept, g):
    """|w_f| - |w_i|."""
    return wf.abs() - wi.abs()


def movement(wi, wf, kept, g):
    """|w_f - w_i|."""
    return (wf - wi).abs()


def random(wi, wf, kept, g):
    return torch.rand(wf.shape, generator=g).to(wf.device)


def large_final_same_sign(wi, wf, kept, g):
    """|w_f| where sign(w_i) = sign(w_f), else 0 (the paper's max(0, w_i w_f / |w_i|))."""
    return torch.where(torch.sign(wi) == torch.sign(wf), wf.abs(), torch.zeros_like(wf))


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


def large_init_large_final(wi, wf, kept, g):
    """Kept iff both |w_i| and |w_f| are past one shared percentile: the min of the two ranks."""
    return torch.minimum(rank_among_kept(wi.abs(), kept), rank_among_kept(wf.abs(), kept))


def small_init_small_final(wi, wf, kept, g):
    return torch.minimum(rank_among_kept(-wi.abs(), kept), rank_among_kept(-wf.abs(), kept))


CRITERIA.register("large_final")(large_final)
CRITERIA.register("small_final")(small_final)
CRITERIA.register("large_init")(large_init)
CRITERIA.register("small_init")(small_init)
CRITERIA.register("magnitude_increase")(magnitude_increase)
CRITERIA.register("movement")(movement)
CRITERIA.register("random")(random)
CRITERIA.register("large_final_same_sign")(large_final_same_sign)
CRITERIA.register("large_final_diff_sign")(large_final_diff_sign)
CRITERIA.register("large_init_large_final")(large_init_large_final)
CRITERIA.register("small_init_small_final")(small_init_small_final)
