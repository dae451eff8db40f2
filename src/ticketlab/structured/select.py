"""Channel scores and channel selection: which channels of each group a structured method keeps.

Scores (registry ``CHANNEL_SCORES``; higher = more important, one tensor per group):
- ``bn-scale``: |gamma| of the group's BatchNorm scale factors (network slimming; mean over the norms of a
  residual group). Groups without a BatchNorm are not scored (network slimming leaves them alone).
- ``l1``: mean |w| of each channel's filter (Li et al.'s L1 norm divided by the filter's size counting only
  inputs still alive, so that filters of different layers, and layers whose inputs were pruned, compare
  in one global ranking; per layer it is Li et al.'s ranking). For a Linear layer the "filter" is a
  neuron's incoming weights: neuron pruning for MLPs.

Selection removes the lowest-scored channels: ``sparsity`` (fraction of channels removed) globally over
all scored groups or per group, or every channel scored below an explicit ``threshold``. Every group
keeps at least one channel, so no layer disappears.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..registry import Registry
from ..sparse.groups import ChannelGroup

CHANNEL_SCORES: Registry = Registry("channel score")


@CHANNEL_SCORES.register("bn-scale")
@torch.no_grad()
def bn_scale(model: nn.Module, group: ChannelGroup) -> torch.Tensor | None:
    if not group.norms:
        return None
    return torch.stack([model.get_submodule(n).weight.detach().abs().cpu() for n in group.norms]).mean(0)


@CHANNEL_SCORES.register("l1")
@torch.no_grad()
def l1(model: nn.Module, group: ChannelGroup) -> torch.Tensor | None:
    per_producer = []
    for name in group.producers:
        w = model.get_submodule(name).weight.detach().cpu().abs().flatten(1)
        alive = max(1, int(w.sum(0).ne(0).sum()))  # inputs (x kernel positions) not pruned away
        per_producer.append(w.sum(1) / alive)
    return torch.stack(per_producer).mean(0) if per_producer else None


def channel_scores(model: nn.Module, groups: list[ChannelGroup], score: str) -> dict[str, torch.Tensor]:
    """Scores of every group the score applies to (group name -> one value per channel)."""
    fn = CHANNEL_SCORES.get(score)
    out = {g.name: s for g in groups if (s := fn(model, g)) is not None}
    if not out:
        raise UserError(
            f"channel score {score!r} applies to no layer of this model "
            "(bn-scale needs BatchNorm layers: use a *bn model, vgg16 or resnet20)"
        )
    return out


def select_channels(
    scores: dict[str, torch.Tensor],
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    scope: str = "global",
    current: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Keep vectors (group -> bool per channel). Exactly one of ``sparsity`` (fraction of the channels still
    kept in ``current`` that are removed, rounded to a count) or ``threshold`` (remove scores below it).
    Channels already removed in ``current`` stay removed and are not counted. Ties break by position."""
    if (sparsity is None) == (threshold is None):
        raise ValueError("give exactly one of sparsity or threshold")
    if scope not in ("global", "layerwise"):
        raise UserError(f"--scope must be global or layerwise, got {scope!r}")
    alive = {
        n: (current[n].clone().bool() if current and n in current else torch.ones(len(s), dtype=torch.bool))
        for n, s in scores.items()
    }
    keep = {n: a.clone() for n, a in alive.items()}
    if threshold is not None:
        for n, s in scores.items():
            keep[n] &= s >= threshold
    elif scope == "layerwise":
        for n, s in scores.items():
            idx = alive[n].nonzero().flatten()
            k = int(round(sparsity * len(idx)))
            order = idx[torch.sort(s[idx], stable=True).indices]
            keep[n][order[:k]] = False
    else:
        names = list(scores)
        flat = torch.cat([scores[n][alive[n]] for n in names])
        owner = torch.cat([torch.full((int(alive[n].sum()),), i) for i, n in enumerate(names)])
        pos = torch.cat([alive[n].nonzero().flatten() for n in names])
        k = int(round(sparsity * len(flat)))
        for j in torch.sort(flat, stable=True).indices[:k].tolist():
            keep[names[owner[j]]][pos[j]] = False
    for n, s in scores.items():  # never remove a whole layer: its best channel stays
        if not keep[n].any():
            cand = alive[n].nonzero().flatten()
            keep[n][cand[torch.argmax(s[cand])]] = True
    return keep


__all__ = ["CHANNEL_SCORES", "channel_scores", "select_channels"]
