"""Linearity grafting (Chen et al., ICML 2022): a ReLU whose chosen neurons are replaced by linear functions.

``GraftedReLU`` computes ``a * x + b`` on the neurons where ``graft`` is True and ``relu(x)`` elsewhere, with a
learnable slope ``a`` and intercept ``b`` per neuron (per element of a convolution's output, as in the
reference code). A grafted neuron has no kink, so bound propagation and complete verification handle it
exactly (``ticketlab.verify``). Pruning a neuron is the special case ``a = b = 0``.

It lives with the models because every family that loads a grafted net (verification, robustness) must
rebuild it: ``graft_from_state`` swaps a model's ReLUs for grafted ones from the tensors in a weights file.
"""

from __future__ import annotations

import torch
from torch import nn


class GraftedReLU(nn.Module):
    """ReLU on most neurons, ``slope * x + intercept`` on those marked in the ``graft`` buffer."""

    def __init__(self, shape: tuple[int, ...], slope: float = 0.4, intercept: float = 0.0):
        super().__init__()
        shape = tuple(shape)
        self.register_buffer("graft", torch.zeros(shape, dtype=torch.bool))
        self.slope = nn.Parameter(torch.full(shape, float(slope)))
        self.intercept = nn.Parameter(torch.full(shape, float(intercept)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.graft, x * self.slope + self.intercept, x.clamp_min(0))

    def extra_repr(self) -> str:
        return f"grafted={int(self.graft.sum())}/{self.graft.numel()}"


def _relus(model: nn.Module, prefix: str = ""):
    """(parent, child name, full name) of every nn.ReLU in nested nn.Sequential containers."""
    for name, child in model.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.ReLU):
            yield model, name, full
        elif isinstance(child, nn.Sequential):
            yield from _relus(child, full)


def graft_relus(
    model: nn.Module, input_shape: tuple[int, ...], slope: float = 0.4, intercept: float = 0.0
) -> list[str]:
    """Replace every ReLU of ``model`` (in place) by a ``GraftedReLU`` with nothing grafted yet; returns
    their names in order. Shapes come from one forward pass of a zero input of ``input_shape``."""
    found = list(_relus(model))
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        getattr(parent, name).register_forward_hook(
            lambda _m, _i, out, full=full: shapes.__setitem__(full, tuple(out.shape[1:]))
        )
        for parent, name, full in found
    ]
    ref = next(model.parameters())
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape, dtype=ref.dtype, device=ref.device))
    model.train(was)
    for h in hooks:
        h.remove()
    for parent, name, full in found:
        setattr(parent, name, GraftedReLU(shapes[full], slope, intercept).to(ref.device, ref.dtype))
    return [full for _, _, full in found]


def graft_from_state(model: nn.Module, keys_shapes: dict[str, tuple[int, ...]]) -> bool:
    """Swap the ReLUs that ``keys_shapes`` (a weights file's tensor names and shapes) holds as grafted
    (``NAME.graft``) for ``GraftedReLU``s of those shapes. Returns True when any was swapped."""
    ref = next(model.parameters())
    swapped = False
    for parent, name, full in list(_relus(model)):
        shape = keys_shapes.get(f"{full}.graft")
        if shape is not None:
            setattr(parent, name, GraftedReLU(tuple(shape)).to(ref.device, ref.dtype))
            swapped = True
    return swapped


def grafted_modules(model: nn.Module) -> dict[str, GraftedReLU]:
    return {n: m for n, m in model.named_modules() if isinstance(m, GraftedReLU)}
