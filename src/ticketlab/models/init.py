"""Weight initialisation: Gaussian Glorot for Linear and Conv weights, as in the LTH paper."""

from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


@torch.no_grad()
def glorot_normal_init(model: nn.Module, seed: int) -> nn.Module:
    """Weights ~ N(0, 2 / (fan_in + fan_out)), biases 0, norm layers (1, 0); deterministic in ``seed``.
    A module with other parameters draws them in its ``init_extra_(generator)`` (the ViT's embeddings)."""
    g = torch.Generator().manual_seed(int(seed))
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            # Draw on CPU with the seeded generator so the result does not depend on the device.
            w = torch.empty(m.weight.shape)
            nn.init.xavier_normal_(w, generator=g)
            m.weight.copy_(w)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, _NORMS) and getattr(m, "weight", None) is not None:
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif hasattr(m, "init_extra_"):
            m.init_extra_(g)
    return model
