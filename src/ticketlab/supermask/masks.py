"""Learned masks over frozen weights, as ``torch.nn.utils.parametrize`` parametrizations.

- ``BernoulliMask`` (Zhou et al. 2019): mask ~ Bernoulli(sigmoid(s)) sampled every forward pass in
  training, with a straight-through gradient to s. Evaluation uses the expected mask sigmoid(s),
  a sample, or the rounded mask (sigmoid(s) > 0.5).
- ``TopKMask`` (edge-popup, Ramanujan et al. 2020): keep the top ``density`` fraction of |s| per layer,
  straight-through gradient to s.

The sampling generator is re-seeded from (seed, step) on each draw, with ``step`` a buffer saved in
the state dict, so a resumed run draws the same masks as an uninterrupted one.
"""
from __future__ import annotations

import torch
from torch import nn

from ..seeding import derive_seed


class _TopK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int) -> torch.Tensor:
        out = torch.zeros_like(scores)
        flat = out.view(-1)
        flat[torch.topk(scores.reshape(-1), k, sorted=False).indices] = 1.0
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None  # straight-through


class BernoulliMask(nn.Module):
    def __init__(self, shape: torch.Size, init_logit: float = 0.0, seed: int = 0, tag: str = ""):
        super().__init__()
        self.scores = nn.Parameter(torch.full(shape, float(init_logit)))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.seed, self.tag = seed, tag
        self.eval_mode = "expected"  # or "sample" or "round"

    def probabilities(self) -> torch.Tensor:
        return torch.sigmoid(self.scores)

    def sample(self) -> torch.Tensor:
        g = torch.Generator(device=self.scores.device)
        g.manual_seed(derive_seed(self.seed, "bernoulli", self.tag, int(self.step)))
        self.step += 1
        p = self.probabilities()
        return torch.bernoulli(p.detach(), generator=g) + p - p.detach()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training or self.eval_mode == "sample":
            return w * self.sample()
        p = self.probabilities()
        return w * (p if self.eval_mode == "expected" else (p > 0.5).to(w.dtype))

    def hard_mask(self) -> torch.Tensor:
        return self.probabilities().detach() > 0.5


class TopKMask(nn.Module):
    def __init__(self, scores: torch.Tensor, density: float):
        super().__init__()
        self.scores = nn.Parameter(scores.detach().clone().float())
        self.k = max(1, int(round(scores.numel() * density)))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * _TopK.apply(self.scores.abs(), self.k)

    def hard_mask(self) -> torch.Tensor:
        return _TopK.apply(self.scores.detach().abs(), self.k) > 0
