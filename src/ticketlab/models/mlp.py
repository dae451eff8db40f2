"""Fully connected models: LeNet-300-100 (LTH paper) and a small MLP for MNIST-1D."""

from __future__ import annotations

import math

from torch import nn

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
