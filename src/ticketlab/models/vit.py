"""A small vision transformer (Dosovitskiy et al. 2021) for 28x28 and 32x32 images: the transformer encoder
ticketlab pretrains itself, standing in for the pretrained language models of robust-ticket papers (none can
be downloaded here).

Patches (7x7 on 28x28, 4x4 on 32x32) are flattened and embedded by a Linear layer, a learned class token
and position embeddings are added, then pre-norm encoder blocks (multi-head self-attention with Linear
q/k/v and output projections, a GELU MLP) and a LayerNorm + Linear head on the class token. Every weight
matrix is an ``nn.Linear``, so masks, pruners, FLOPs and exports see all of them; the class token and
position embeddings are drawn from the model's seed (std 0.02) by ``glorot_normal_init``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .registry import MODELS


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        patch: int,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        hidden: int = 128,
    ):
        super().__init__()
        c, h, w = input_shape
        self.patch = patch
        n = (h // patch) * (w // patch)
        self.embed = nn.Linear(c * patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    @torch.no_grad()
    def init_extra_(self, g: torch.Generator) -> None:
        """Class token and position embeddings ~ N(0, 0.02^2), from the init's seeded generator."""
        for p in (self.cls, self.pos):
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        patches = F.unfold(x, p, stride=p).transpose(1, 2)  # (B, patches, C * p * p)
        t = self.embed(patches)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])


@MODELS.register("vit")
def vit(input_shape, num_classes):
    if len(input_shape) != 3 or input_shape[1:] not in ((28, 28), (32, 32)):
        raise UserError(
            f"model vit takes 28x28 or 32x32 images, the dataset gives shape {tuple(input_shape)}; "
            "pick a dataset of those (mnist, fashion-mnist, cifar10) or another model"
        )
    return ViT(tuple(input_shape), num_classes, patch=7 if input_shape[1] == 28 else 4)
