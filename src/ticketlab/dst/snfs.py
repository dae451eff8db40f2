"""``snfs`` (Dettmers & Zettlemoyer 2019, sparse momentum): grow by momentum, redistribute by momentum.

Every step the dense gradient (before the mask is applied) feeds a momentum of every weight, pruned or not,
m <- mu m + g (SGD's buffer, mu = 0.9 as the paper's SGD). At every update (every ``delta_t`` steps, until
``end_fraction`` of training):

1. each layer's share of the regrowth is its mean momentum magnitude over its active weights, divided by
   the sum over layers (momentum-based redistribution);
2. each layer drops ``fraction x active`` of its smallest-magnitude active weights (prune rate 0.5 with
   cosine decay, the paper's defaults);
3. the K weights dropped in total are regrown across layers in proportion to the shares (capped at each
   layer's capacity, the rest passed on, so the total is exact), each layer at the inactive positions of
   largest momentum magnitude.

The total count is exact; per-layer densities move with the redistribution. The dense gradient is read
every step, so every step costs 2 sparse passes and a dense one in the FLOPs (the paper notes this).
"""

from __future__ import annotations

import torch

from ..seeding import generator
from ..sparse import select_topk_mask
from .base import SparseTrainer
from .registry import SPARSE_TRAINERS


def allocate(shares: list[float], total: int, capacity: list[int]) -> list[int]:
    """``total`` items split in proportion to ``shares`` without passing ``capacity``: floors first, then one
    each to the largest remainders among layers with room, repeated until all are placed (or none has room)."""
    out = [0] * len(shares)
    left = total
    room = list(capacity)
    while left > 0:
        open_ = [i for i in range(len(shares)) if room[i] > 0]
        if not open_:
            break
        s = sum(shares[i] for i in open_)
        weights = {i: (shares[i] / s if s > 0 else 1 / len(open_)) for i in open_}
        want = {i: weights[i] * left for i in open_}
        give = {i: min(int(want[i]), room[i]) for i in open_}
        if sum(give.values()) == 0:  # fewer than one each: the largest remainders get one
            for i in sorted(open_, key=lambda i: (-(want[i] - int(want[i])), i))[:left]:
                give[i] = 1
        for i, k in give.items():
            out[i] += k
            room[i] -= k
            left -= k
    return out


@SPARSE_TRAINERS.register("snfs")
class SNFS(SparseTrainer):
    name = "snfs"
    updates = True
    uses_dense_grad = True
    defaults = {"drop_fraction": 0.5, "decay": "cosine"}

    def __init__(
        self,
        model,
        optimizer,
        density: float = 0.1,
        distribution: str | None = None,
        *,
        momentum: float = 0.9,
        **kwargs,
    ):
        self.mu = float(momentum)
        super().__init__(model, optimizer, density, distribution, **kwargs)
        self._mom = [torch.zeros_like(p) for p in self.params]

    def wants_dense_grad(self, t: int) -> bool:
        return True  # the momentum of every weight needs the dense gradient at every step

    def _pre_step(self, optimizer, args, kwargs) -> None:
        with torch.no_grad():
            for m, p in zip(self._mom, self.params):
                if p.grad is not None:
                    m.mul_(self.mu).add_(p.grad)
        super()._pre_step(optimizer, args, kwargs)

    def update(self, t: int, fraction: float) -> None:
        with torch.no_grad():
            g = generator(self.seed, "snfs", t)
            active = [int(m.sum()) for m in self.mask_list]
            mean_mom = [float(mo.abs()[m].mean()) if a else 0.0 for mo, m, a in zip(self._mom, self.mask_list, active)]
            kill = [int(fraction * a) for a in active]
            keep = [
                select_topk_mask(torch.where(m, p.detach().abs(), torch.full_like(p, -1.0)), a - k, g)
                for p, m, a, k in zip(self.params, self.mask_list, active, kill)
            ]
            regrow = allocate(mean_mom, sum(kill), [m.numel() - int(k.sum()) for m, k in zip(self.mask_list, keep)])
            new = [
                kp | select_topk_mask(torch.where(kp, torch.full_like(mo, -1.0), mo.abs()), r, g)
                for kp, mo, r in zip(keep, self._mom, regrow)
            ]
            self.set_masks(new)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], str]:
        tensors, meta = super().state_dict()
        return tensors | {f"momentum.{n}": m.contiguous() for n, m in zip(self.names, self._mom)}, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: str) -> None:
        super().load_state_dict(tensors, meta)
        for n, m in zip(self.names, self._mom):
            m.copy_(tensors[f"momentum.{n}"].to(m.device))
