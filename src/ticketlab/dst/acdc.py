"""``acdc`` (Peste et al. 2021): alternate dense and sparse ("decompressed" / "compressed") phases.

Training starts with a dense warm-up (``warmup_fraction`` of the steps), then alternates sparse and dense
phases of ``phase_fraction`` each, and ends with a sparse phase of at least ``final_fraction`` (the
paper's ImageNet schedule: 10 epochs warm-up, 5-epoch phases, the last 10 epochs sparse, of 100). At the
start of every sparse phase the mask is recomputed from the current weights by magnitude (globally by
default, or per layer at a distribution's densities), pruned weights are zeroed with their optimizer
state, and the mask is held for the phase; in dense phases every weight trains, pruned ones restarting
from zero. The run yields a sparse model (the end of training) and a dense one: the weights at the end of
the last dense phase, which ``phases.dense_snapshot_step`` names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..seeding import generator
from ..sparse import global_prune, select_topk_mask
from ..sparse.distributions import DISTRIBUTIONS
from .base import SparseTrainer
from .registry import SPARSE_TRAINERS


class ACDCPhases:
    """Which steps are sparse: dense warm-up, alternating sparse/dense phases, a final sparse phase."""

    def __init__(self, total: int, warmup_fraction: float, phase_fraction: float, final_fraction: float):
        for flag, v in (
            ("--acdc-warmup", warmup_fraction),
            ("--acdc-phase", phase_fraction),
            ("--acdc-final", final_fraction),
        ):
            if not 0 <= v <= 1:
                raise UserError(f"{flag} must be a fraction of training in [0, 1], got {v}")
        if phase_fraction <= 0:
            raise UserError("--acdc-phase must be > 0")
        self.warmup = int(round(total * warmup_fraction))
        self.phase = max(1, int(round(total * phase_fraction)))
        self.final_start = total - int(round(total * final_fraction))
        if self.final_start <= self.warmup:
            raise UserError(
                "AC/DC's warm-up and final sparse phase leave no alternating phases; "
                "lower --acdc-warmup or --acdc-final"
            )

    def sparse_at(self, c: int) -> bool:
        """Whether the step after ``c`` completed steps is in a sparse phase."""
        if c >= self.final_start:
            return True
        if c < self.warmup:
            return False
        return (c - self.warmup) // self.phase % 2 == 0

    @property
    def dense_snapshot_step(self) -> int | None:
        """The step count at the end of the last dense phase (None if training has no dense phase)."""
        for c in range(self.final_start, 0, -1):
            if not self.sparse_at(c - 1) and self.sparse_at(c):
                return c
        return None


@dataclass
class ACDCOptions:
    acdc_warmup: float = field(default=0.1, metadata={"help": "dense warm-up share of training", "group": "acdc"})
    acdc_phase: float = field(default=0.05, metadata={"help": "length of each sparse/dense phase", "group": "acdc"})
    acdc_final: float = field(default=0.1, metadata={"help": "final sparse phase share", "group": "acdc"})


@SPARSE_TRAINERS.register("acdc")
class ACDC(SparseTrainer):
    name = "acdc"
    distributions = ("global",) + DISTRIBUTIONS
    default_distribution = "global"
    options = ACDCOptions
    sparse_kernels = False  # dense phases train every weight: the dense kernels throughout

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(warmup_fraction=cfg.acdc_warmup, phase_fraction=cfg.acdc_phase, final_fraction=cfg.acdc_final)

    @classmethod
    def snapshots(cls, cfg, total: int) -> dict[int, str]:
        """The dense model at the end of the last dense phase (its accuracy beside the sparse one's)."""
        t = ACDCPhases(total, cfg.acdc_warmup, cfg.acdc_phase, cfg.acdc_final).dense_snapshot_step
        return {} if t is None else {t: "dense"}

    def __init__(
        self,
        model,
        optimizer,
        density: float = 0.1,
        distribution: str | None = None,
        *,
        warmup_fraction: float = 0.1,
        phase_fraction: float = 0.05,
        final_fraction: float = 0.1,
        **kwargs,
    ):
        self.phases = ACDCPhases(int(kwargs["total_steps"]), warmup_fraction, phase_fraction, final_fraction)
        super().__init__(model, optimizer, density, distribution, **kwargs)

    def _count_kind(self) -> str:
        return "uniform" if self.distribution == "global" else self.distribution

    def sparse_at(self, c: int) -> bool:
        return self.phases.sparse_at(c)

    def sparse_phase(self) -> bool:
        return self.sparse_at(self.step_count)

    def initial_masks(self) -> list[torch.Tensor]:
        if not self.sparse_at(0):
            return [torch.ones_like(p, dtype=torch.bool) for p in self.params]
        return self.magnitude_masks(0)

    @torch.no_grad()
    def magnitude_masks(self, t: int) -> list[torch.Tensor]:
        g = generator(self.seed, "acdc", t)
        scores = {n: p.detach().abs() for n, p in zip(self.names, self.params)}
        if self.distribution == "global":
            full = {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
            kept = global_prune(scores, full, self.density, g)
            return [kept[n] for n in self.names]
        return [select_topk_mask(scores[n], self.counts[n], g) for n in self.names]

    def end_step(self, t: int) -> None:
        before, now = self.sparse_at(t - 1), self.sparse_at(t)
        if now and not before:  # compress: prune by magnitude, hold the mask for the phase
            self.set_masks(self.magnitude_masks(t))
        elif before and not now:  # decompress: every weight trains again, pruned ones from zero
            self.mask_list = [torch.ones_like(p, dtype=torch.bool) for p in self.params]
            self._refresh()
