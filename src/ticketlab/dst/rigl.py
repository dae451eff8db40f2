"""``rigl`` (Evci et al. 2020): drop the smallest-magnitude weights, grow where the dense gradient is largest.

The dense gradient is only read on update steps (every ``delta_t``), from the optimizer pre-step hook,
before the gradient is masked; its cost (a dense weight-gradient pass) is counted on those steps only.
Defaults are the paper's: drop fraction 0.3 with cosine decay, delta_t 100, no updates after 75% of
training, new connections at zero with reset optimizer state. As in the reference code (and its tests), a
mask-update iteration applies no optimizer step - the drop-and-grow replaces it: the step's parameters and
optimizer state (momentum, Adam moments and step count, every parameter's, biases included) are restored
before the update. ``step_on_update=True`` (``--step-on-update apply``) applies the step as well, which is
what ticketlab's RigL did before and what SET and CTRE do (their reference codes prune and regrow after the
epoch's training steps). The FLOPs are the same either way: the forward and backward passes ran.
"""

from __future__ import annotations

import torch

from .base import SparseTrainer
from .registry import SPARSE_TRAINERS


@SPARSE_TRAINERS.register("rigl")
class RigL(SparseTrainer):
    name = "rigl"
    updates = True
    step_on_update = False
    uses_dense_grad = True
    # rigl's default changed to the reference's skip: an older rigl folder is refused rather than silently reused
    records_step_on_update = True

    def grow_scores(self, t: int, g: torch.Generator) -> list[torch.Tensor]:
        return self._dense_grads
