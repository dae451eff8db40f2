"""VGG-16 with BatchNorm for CIFAR-size input (the CIFAR variant used in LTH follow-ups and open_lth)."""

from __future__ import annotations

from torch import nn

from .conv import need_image
from .registry import MODELS

CFG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


class VGG(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, cfg=CFG16):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@MODELS.register("vgg16")
def vgg16(input_shape, num_classes):
    c, _, _ = need_image("vgg16", input_shape, 16)
    return VGG(c, num_classes)
