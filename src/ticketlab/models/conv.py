"""Convolutional models: the LTH paper's Conv-2/4/6 (VGG-like, FC 256-256-10), and a 1D CNN for MNIST-1D."""

from __future__ import annotations

from torch import nn

from ..errors import UserError
from .mlp import mlp
from .registry import MODELS


def need_image(name: str, input_shape: tuple[int, ...], min_side: int) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise UserError(
            f"model {name} needs image input (C, H, W) but the dataset gives shape "
            f"{tuple(input_shape)}; pick a model for this dataset (e.g. mlp1d/cnn1d for 1-D data)"
        )
    c, h, w = input_shape
    if h < min_side or w < min_side:
        raise UserError(
            f"model {name} needs images of at least {min_side}x{min_side}, the dataset gives "
            f"{h}x{w}; pick a smaller model (e.g. lenet300 or conv2)"
        )
    return c, h, w


def conv_net(
    name: str, input_shape: tuple[int, ...], num_classes: int, blocks: list[int], batch_norm: bool = False
) -> nn.Module:
    """``blocks`` channels per stage; each stage is two 3x3 convs (same padding) + ReLU, then 2x2 max-pool.
    With ``batch_norm`` each conv is followed by BatchNorm (and has no bias): the variant network
    slimming needs."""
    c, h, w = need_image(name, input_shape, 2 ** len(blocks))
    layers: list[nn.Module] = []

    def unit(c_in: int, c_out: int) -> list[nn.Module]:
        if batch_norm:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]

    for ch in blocks:
        layers += unit(c, ch) + unit(ch, ch) + [nn.MaxPool2d(2)]
        c, h, w = ch, h // 2, w // 2
    return nn.Sequential(*layers, mlp(c * h * w, [256, 256], num_classes))


@MODELS.register("conv2")
def conv2(input_shape, num_classes):
    return conv_net("conv2", input_shape, num_classes, [64])


@MODELS.register("conv4")
def conv4(input_shape, num_classes):
    return conv_net("conv4", input_shape, num_classes, [64, 128])


@MODELS.register("conv6")
def conv6(input_shape, num_classes):
    return conv_net("conv6", input_shape, num_classes, [64, 128, 256])


@MODELS.register("conv2bn")
def conv2bn(input_shape, num_classes):
    return conv_net("conv2bn", input_shape, num_classes, [64], batch_norm=True)


@MODELS.register("conv4bn")
def conv4bn(input_shape, num_classes):
    return conv_net("conv4bn", input_shape, num_classes, [64, 128], batch_norm=True)


@MODELS.register("conv6bn")
def conv6bn(input_shape, num_classes):
    return conv_net("conv6bn", input_shape, num_classes, [64, 128, 256], batch_norm=True)


@MODELS.register("cnn1d")
def cnn1d(input_shape, num_classes):
    """Three stride-2 Conv1d layers (32 channels, kernel 5) + ReLU, then a linear classifier."""
    if len(input_shape) != 2:
        raise UserError(
            f"model cnn1d needs 1-D input (C, L) but the dataset gives shape {tuple(input_shape)}; "
            "pick an image model (lenet300, conv2, ...)"
        )
    c, length = input_shape
    if length < 8:
        raise UserError(f"model cnn1d needs sequences of length >= 8, the dataset gives {length}")
    layers: list[nn.Module] = []
    for _ in range(3):
        layers += [nn.Conv1d(c, 32, 5, stride=2, padding=2), nn.ReLU()]
        c, length = 32, (length + 1) // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * length, num_classes))


@MODELS.register("cnn-small")
def cnn_small(input_shape, num_classes):
    """The small CNN of the certified-robustness literature (Wong & Kolter 2018; Zhang et al. 2020): two 4x4
    stride-2 convs (16, 32 channels) + ReLU, a 100-unit ReLU layer, the classifier. Small enough for CROWN
    and complete verification, unlike Conv-2 (64 channels at full resolution)."""
    c, h, w = need_image("cnn-small", input_shape, 4)
    return nn.Sequential(
        nn.Conv2d(c, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        mlp(32 * (h // 4) * (w // 4), [100], num_classes),
    )
