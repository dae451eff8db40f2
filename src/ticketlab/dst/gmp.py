"""``gmp`` (Zhu & Gupta 2017): gradual magnitude pruning, dense to sparse within one training.

The net starts dense. From step ``start`` to step ``end`` (fractions ``start_fraction`` and
``end_fraction`` of training), every ``delta_t`` steps, the smallest-magnitude active weights are removed
so that the density follows Zhu & Gupta's cubic schedule

    d(t) = d_f + (1 - d_f) (1 - (t - start) / (end - start))^3,

reaching the final density ``d_f`` at ``end`` and holding it after; pruned weights stay exactly zero with
their optimizer state cleared, like every sparse trainer's. Per layer (``--distribution uniform``, the
paper's: every layer at d(t); ``er``/``erk`` scale the layers' shares as for the sparse trainers) or
``global`` (one magnitude ranking over all layers). It is the "Pruning" baseline of the RigL paper and the
"gradual pruning" of CARDs; ``ticketlab compress --schedule cubic`` does the same from a trained net.
Defaults: start at 10% of training, end at 75% (the sparse trainers' end), prune every 100 steps.
FLOPs follow the density as it falls (dense at first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..seeding import generator
from ..sparse import global_prune, select_topk_mask
from ..sparse.distributions import DISTRIBUTIONS, layer_counts
from .base import SparseTrainer
from .registry import SPARSE_TRAINERS


def cubic_density(t: int, start: int, end: int, final: float) -> float:
    """Zhu & Gupta's density at step ``t``: 1 before ``start``, ``final`` from ``end`` on."""
    if t < start:
        return 1.0
    if t >= end or end <= start:
        return final
    return final + (1 - final) * (1 - (t - start) / (end - start)) ** 3


@dataclass
class GMPOptions:
    gmp_start: float = field(
        default=0.1,
        metadata={
            "help": "fraction of training before the first pruning step (it ends at --end-fraction, default 0.75)",
            "group": "gmp",
        },
    )


@SPARSE_TRAINERS.register("gmp")
class GMP(SparseTrainer):
    name = "gmp"
    distributions = ("global",) + DISTRIBUTIONS
    default_distribution = "uniform"
    updates = True
    defaults = {"end_fraction": 0.75}
    options = GMPOptions
    omit_unless_chosen = ("gmp_start",)  # configs stored before gmp existed keep their hash

    @classmethod
    def check_config(cls, cfg) -> None:
        if not 0 <= cfg.gmp_start < (cfg.end_fraction or 0.75) <= 1:
            raise UserError(
                f"gmp prunes from --gmp-start to --end-fraction: need 0 <= {cfg.gmp_start} < "
                f"{cfg.end_fraction or 0.75} <= 1"
            )

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(start_fraction=cfg.gmp_start)

    def __init__(
        self,
        model,
        optimizer,
        density: float = 0.1,
        distribution: str | None = None,
        *,
        start_fraction: float = 0.1,
        **kwargs,
    ):
        total = int(kwargs["total_steps"])
        self.start_fraction = float(start_fraction)
        super().__init__(model, optimizer, density, distribution, **kwargs)
        self.start = int(round(self.start_fraction * total))
        self.end = int(round(self.schedule.end_fraction * total))
        self.shapes = {n: tuple(p.shape) for n, p in zip(self.names, self.params)}

    def _count_kind(self) -> str:
        return "uniform" if self.distribution == "global" else self.distribution

    def initial_masks(self) -> list[torch.Tensor]:
        return [torch.ones_like(p, dtype=torch.bool) for p in self.params]

    def is_update(self, t: int) -> bool:
        """Every ``delta_t`` steps from ``start``, and at ``end`` (where the final density is reached)."""
        return self.start <= t <= self.end and ((t - self.start) % self.schedule.delta_t == 0 or t == self.end)

    def density_at(self, t: int) -> float:
        return cubic_density(t, self.start, self.end, self.density)

    def update(self, t: int, fraction: float) -> None:
        """Prune the active weights by magnitude to the schedule's density at ``t`` (never regrowing)."""
        d = self.density_at(t)
        g = generator(self.seed, "gmp", t)
        with torch.no_grad():
            scores = {
                n: torch.where(m, p.detach().abs(), torch.full_like(p, -1.0))
                for n, p, m in zip(self.names, self.params, self.mask_list)
            }
            if self.distribution == "global":
                kept = global_prune({n: p.detach().abs() for n, p in zip(self.names, self.params)}, self.mask, d, g)
                new = [kept[n].to(m.device) for n, m in zip(self.names, self.mask_list)]
            else:
                counts = (
                    layer_counts(self.shapes, d, self.distribution)
                    if d < 1
                    else {n: m.numel() for n, m in zip(self.names, self.mask_list)}
                )
                new = [
                    select_topk_mask(scores[n], min(counts[n], int(m.sum())), g) & m
                    for n, m in zip(self.names, self.mask_list)
                ]
            self.set_masks(new)
