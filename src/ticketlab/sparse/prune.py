"""Scores -> masks: magnitude pruning (layerwise or global), random masks, exact keep counts.

Counts are always computed against a layer's full size (``round(numel * density)``), so densities are
exact and do not drift across rounds. Ties in the score are broken at random by a seeded generator.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .mask import Mask


def keep_count(numel: int, density: float) -> int:
    """Weights kept out of ``numel`` at ``density``: round(numel x density), halves to even (Python's round),
    the exact count every mask of ticketlab keeps."""
    return int(round(numel * density))


def topk_mask(scores: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask (shape of ``scores``) of the ``k`` largest scores; ties broken at random."""
    flat = scores.detach().flatten().float().cpu()
    n = flat.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    if k > 0:
        perm = torch.randperm(n, generator=generator)
        order = torch.sort(flat[perm], descending=True, stable=True).indices[:k]
        keep[perm[order]] = True
    return keep.view(scores.shape).to(scores.device)


def select_topk_mask(scores: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``topk_mask``'s contract (exactly ``k`` kept, ties broken through a seeded random permutation) with
    an O(n) selection instead of a full stable sort: ~6x faster on a 300x784 layer. For code that selects
    often (dynamic sparse training updates); which of several tied entries wins can differ from
    ``topk_mask``, so the one-shot pruners keep that function and their masks stay as they were."""
    flat = scores.detach().flatten().float().cpu()
    n = flat.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    if k > 0:
        perm = torch.randperm(n, generator=generator)
        keep[perm[torch.topk(flat[perm], k, sorted=False).indices]] = True
    return keep.view(scores.shape).to(scores.device)


def masked_scores(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores with already-pruned entries at -inf, so they are never chosen over kept ones."""
    return torch.where(mask, scores.float(), torch.full_like(scores, -math.inf, dtype=torch.float32))


def layerwise_prune(
    scores: dict[str, torch.Tensor], mask: Mask, densities: dict[str, float], generator: torch.Generator
) -> Mask:
    """Per layer, keep the top ``round(numel * density)`` scores among currently kept entries."""
    out: Mask = {}
    for n, m in mask.items():
        k = min(keep_count(m.numel(), densities[n]), int(m.sum()))
        out[n] = topk_mask(masked_scores(scores[n], m), k, generator)
    return out


def global_prune(scores: dict[str, torch.Tensor], mask: Mask, density: float, generator: torch.Generator) -> Mask:
    """Keep the top ``round(N * density)`` scores over all layers jointly (N = total masked weights)."""
    names = list(mask)
    flat = torch.cat([masked_scores(scores[n], mask[n]).flatten().cpu() for n in names])
    k = min(keep_count(flat.numel(), density), int(sum(int(mask[n].sum()) for n in names)))
    keep = topk_mask(flat, k, generator)
    out, i = {}, 0
    for n in names:
        size = mask[n].numel()
        out[n] = keep[i : i + size].view(mask[n].shape).to(mask[n].device)
        i += size
    return out


def magnitude_scores(weights: dict[str, torch.Tensor], names) -> dict[str, torch.Tensor]:
    """|w| per prunable tensor: the score magnitude pruning keeps the largest of. ``names`` lists the tensors to
    score (any iterable of names; a mask ``{name: bool tensor}`` iterates over its names)."""
    return {n: weights[n].detach().abs() for n in names}


def random_mask_like(mask: Mask, generator: torch.Generator) -> Mask:
    """A uniformly random mask with exactly the same number kept in each layer as ``mask``."""
    out = {}
    for n, m in mask.items():
        out[n] = topk_mask(torch.rand(m.shape, generator=generator), int(m.sum()), generator).to(m.device)
    return out


def parse_pattern(pattern: str, density: float | None = None) -> tuple[int, int]:
    """ "N:M" -> (N, M) with 0 < N < M; anything else is a UserError, and so is a ``density`` other than N/M."""
    try:
        n, m = (int(v) for v in pattern.split(":"))
    except ValueError:
        raise UserError(f"--pattern must be N:M (e.g. 2:4), got {pattern!r}") from None
    if not 0 < n < m:
        raise UserError(f"--pattern N:M needs 0 < N < M, got {pattern!r}")
    if density is not None and abs(density - n / m) > 1e-9:
        raise UserError(f"--pattern {pattern} keeps {n / m:g} of the weights; set --density {n / m:g}")
    return n, m


def nm_prune(scores: dict[str, torch.Tensor], mask: Mask, n: int, m: int, generator: torch.Generator) -> Mask:
    """N:M semi-structured masks: in every group of ``m`` consecutive weights along the input dimension (a
    Linear weight's columns; a conv weight's input channels, at each output channel and kernel position, as
    NVIDIA's sparse tensor cores group them) keep the ``n`` highest scores. Already-pruned weights score
    lowest; ties are broken at random through ``generator``. The density is exactly n / m."""
    out = {}
    for name in mask:
        s, old = scores[name].detach().float().cpu(), mask[name].cpu()
        if s.dim() < 2:
            raise UserError(f"--pattern needs weight matrices; {name} has shape {tuple(s.shape)}")
        c_in = s.shape[1]
        if c_in % m:
            raise UserError(
                f"--pattern {n}:{m}: {name}'s input dimension {c_in} is not a multiple of {m}; "
                "exclude the layer or pick another M"
            )
        moved = s.movedim(1, -1)  # (out, *kernel, in)
        shape = moved.shape
        key = torch.where(old.movedim(1, -1), moved, torch.full_like(moved, -torch.inf)).reshape(-1, m)
        tie = torch.rand(key.shape, generator=generator)
        order = torch.argsort(tie, dim=1)  # a random order first, then a stable sort
        ranked = torch.argsort(torch.gather(key, 1, order), dim=1, descending=True, stable=True)
        keep = torch.zeros_like(key, dtype=torch.bool)
        keep.scatter_(1, torch.gather(order, 1, ranked[:, :n]), True)
        out[name] = keep.reshape(shape).movedim(-1, 1).contiguous().to(mask[name].device)
    return out
