"""Network slimming's sparsity penalty (Liu et al. 2017): L1 on BatchNorm scale factors during training.

``SlimmingPenalty(optimizer, model, strength)`` adds ``strength * sign(gamma)`` (the subgradient of
``strength * |gamma|``) to every BatchNorm scale's gradient just before each optimizer step, as the
paper's code does after ``backward()``. Masked scales (gamma = 0) get sign 0, so pruned channels stay
pruned. It plugs into ``ticketlab.train.train(..., sparse=lambda opt: SlimmingPenalty(opt, model, s))``
or into a user's loop unchanged (an optimizer hook). The paper's strength is 1e-4 (1e-5 for VGG on
CIFAR-100 / ImageNet).
"""

from __future__ import annotations

import json

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class SlimmingPenalty:
    method = "slimming"

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module, strength: float = 1e-4):
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        self.strength = float(strength)
        self.scales = [m.weight for m in model.modules() if isinstance(m, _NORMS) and m.affine]
        self._handle = optimizer.register_step_pre_hook(lambda *_: self.add_grad_())

    @torch.no_grad()
    def add_grad_(self) -> None:
        for w in self.scales:
            if w.grad is not None:
                w.grad.add_(torch.sign(w), alpha=self.strength)

    # the trainer-updater protocol of ticketlab.train.train: nothing to do per step or per evaluation
    def step(self) -> None:
        pass

    def observe(self, row: dict) -> None:
        pass

    def state_dict(self) -> tuple[dict, str]:
        return {}, json.dumps({"method": self.method})

    def load_state_dict(self, tensors: dict, meta: str) -> None:
        pass

    def detach(self) -> None:
        self._handle.remove()
