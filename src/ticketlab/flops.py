"""FLOPs accounting: forward multiply-accumulates of Linear and Conv layers, dense and masked.

Counts are exact per layer: a Linear weight entry is used once per example, a Conv weight entry once per
output position (per example), so a layer's masked cost is (kept entries) x (uses per entry). FLOPs are
reported as 2 x MACs (a multiply and an add). Training costs per example follow the usual accounting:
the backward pass costs twice the forward one (gradients of inputs and of weights), so a sparse step is
3x its sparse forward; a step that needs the dense weight gradient (RigL's updates) costs 2x sparse
(forward, input gradients) + 1x dense (weight gradients).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .sparse import Mask

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_uses(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """For each Linear/Conv weight: how many times each entry is used in one example's forward pass."""
    uses: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, _LAYERS):
            key = f"{name}.weight" if name else "weight"

            def hook(mod, inp, out, key=key):
                # Linear: once per position of any leading dims; Conv (grouped too): once per output position.
                uses[key] = math.prod(out.shape[1:-1]) if isinstance(mod, nn.Linear) else math.prod(out.shape[2:])

            hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return uses


def forward_flops(model: nn.Module, input_shape: tuple[int, ...], mask: Mask | None = None) -> dict[str, int]:
    """Forward FLOPs (2 x MACs) per example of each Linear/Conv weight, counting only kept entries."""
    uses = weight_uses(model, input_shape)
    params = dict(model.named_parameters())
    out = {}
    for n, u in uses.items():
        kept = int(mask[n].sum()) if mask is not None and n in mask else params[n].numel()
        out[n] = 2 * kept * u
    return out


def training_flops(
    model: nn.Module,
    input_shape: tuple[int, ...],
    iterations: int,
    batch_size: int,
    mask: Mask | None = None,
    passes: int = 3,
) -> int:
    """Total training FLOPs: ``passes`` x forward per example per step (3: forward + backward; adversarial
    training adds its attack's passes, ``TrainConfig.passes_per_example``), sparse where masked."""
    return passes * sum(forward_flops(model, input_shape, mask).values()) * batch_size * iterations
