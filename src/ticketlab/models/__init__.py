"""Models (a registry: ``MODELS``); each builder adapts to the dataset's input shape and class count."""

from __future__ import annotations

from torch import nn

from . import conv, mlp, resnet, vgg, vit  # noqa: F401  (registrations)
from .init import glorot_normal_init
from .registry import MODELS


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int = 0) -> nn.Module:
    """Build a registered model and give it the Gaussian Glorot init drawn from ``seed``."""
    model = MODELS.get(name)(tuple(input_shape), num_classes)
    # what rebuilds it elsewhere (the other ranks of a data-parallel run)
    model.ticketlab_spec = {"name": name, "input_shape": list(input_shape), "num_classes": int(num_classes)}
    return glorot_normal_init(model, seed)


__all__ = ["MODELS", "build_model", "glorot_normal_init"]
