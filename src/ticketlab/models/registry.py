"""The model registry: name -> builder(input_shape, num_classes) -> nn.Module."""

from ..registry import Registry

MODELS: Registry = Registry("model")
