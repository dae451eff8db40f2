"""Fully connected models: LeNet-300-100 (LTH paper), a small MLP for MNIST-1D, and ``mlp-H1-H2-...`` of any
hidden sizes (``mlp-4096-4096``: 784-4096-4096-10 on MNIST, the wide net of the sparse-kernel benchmarks)."""

from __future__ import annotations

import math

from torch import nn

from ..errors import UserError
from .registry import MODELS


def mlp(in_features: int, hidden: list[int], num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(in_features, h), nn.ReLU()]
        in_features = h
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


@MODELS.register("lenet300")
def lenet300(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-300-100: flattened input -> 300 -> 100 -> classes (784-300-100-10 on MNIST)."""
    return mlp(math.prod(input_shape), [300, 100], num_classes)


@MODELS.register("mlp1d")
def mlp1d(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The MNIST-1D paper's MLP: flattened input -> 100 -> 100 -> classes."""
    return mlp(math.prod(input_shape), [100, 100], num_classes)


@MODELS.register_family("mlp-", "mlp-H1-H2-...")
def mlp_family(rest: str):
    """``mlp-4096-4096``: flattened input -> 4096 -> 4096 -> classes, ReLU between (hidden sizes dash-separated)."""
    parts = rest.split("-")
    if not all(p.isdigit() and 1 <= int(p) <= 1_000_000 for p in parts):
        raise UserError(
            f"model 'mlp-{rest}': give the hidden sizes as whole numbers from 1 to 1000000 after mlp-, dash-separated "
            "(mlp-4096-4096)"
        )
    hidden = [int(p) for p in parts]

    def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return mlp(math.prod(input_shape), hidden, num_classes)

    build.__doc__ = f"MLP: flattened input -> {' -> '.join(parts)} -> classes."
    return build
