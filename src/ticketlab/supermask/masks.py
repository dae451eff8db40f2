"""Learned masks over frozen weights, as ``torch.nn.utils.parametrize`` parametrizations.

- ``BernoulliMask`` (Zhou et al. 2019): mask ~ Bernoulli(sigmoid(s)) sampled every forward pass in
  training, with a straight-through gradient to s. Evaluation uses the expected mask sigmoid(s),
  a sample, or the rounded mask (sigmoid(s) > 0.5).
- ``TopKMask`` (edge-popup, Ramanujan et al. 2020): keep the top ``density`` fraction of |s| per layer,
  straight-through gradient to s.
- ``HardConcreteMask`` (Louizos et al. 2018; the robust tickets of Zheng et al. 2022): gates z drawn from
  the hard concrete distribution with location log_alpha (temperature 2/3, stretched to (-0.1, 1.1) and
  clamped to [0, 1]), differentiable by reparametrisation; evaluation uses the deterministic gate
  clamp(sigmoid(log_alpha) * 1.2 - 0.1, 0, 1), and the final binary mask keeps the ``density`` fraction
  with the largest log_alpha (``L0Penalty`` is the smoothed L0 term that drives the gates closed).

The sampling generator is re-seeded from (seed, step) on each draw, with ``step`` a buffer saved in
the state dict, so a resumed run draws the same masks as an uninterrupted one.
"""

from __future__ import annotations

import json
import math

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


BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1  # Louizos et al.'s temperature and stretch interval


class HardConcreteMask(nn.Module):
    def __init__(self, shape: torch.Size, density: float, init_logit: float = 3.0, seed: int = 0, tag: str = ""):
        super().__init__()
        g = torch.Generator().manual_seed(derive_seed(seed, "hard-concrete-init", tag))
        # Louizos et al. start log_alpha at one value plus N(0, 0.01^2) noise
        self.scores = nn.Parameter(init_logit + 0.01 * torch.randn(shape, generator=g))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.k = max(1, int(round(self.scores.numel() * density)))
        self.seed, self.tag = seed, tag
        self.eval_mode = "gate"  # or "binary": the top-k mask
        self.hard = False  # the final phase: the binary top-k mask in every forward, straight-through to log_alpha

    def open_probability(self) -> torch.Tensor:
        """P(z > 0) per gate: the smoothed L0 norm's terms."""
        return torch.sigmoid(self.scores - BETA * math.log(-GAMMA / ZETA))

    def sample(self) -> torch.Tensor:
        g = torch.Generator(device=self.scores.device)
        g.manual_seed(derive_seed(self.seed, "hard-concrete", self.tag, int(self.step)))
        self.step += 1
        u = torch.rand(self.scores.shape, generator=g, device=self.scores.device).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.scores) / BETA)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0, 1)

    def gate(self) -> torch.Tensor:
        return (torch.sigmoid(self.scores) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.hard:
            return w * _TopK.apply(self.scores, self.k)
        if self.training:
            return w * self.sample()
        if self.eval_mode == "binary":
            return w * self.hard_mask().to(w.dtype)
        return w * self.gate()

    def hard_mask(self) -> torch.Tensor:
        return _TopK.apply(self.scores.detach(), self.k) > 0


class L0Penalty:
    """The smoothed L0 penalty ``strength * (expected density - target)`` while the expected density (the
    mean of P(z > 0) over all gates) is above ``target``, and 0 below it: its gradient is added to the gates'
    log_alpha before each optimizer step (an optimizer hook, like slimming's penalty). Normalising by the
    number of gates makes ``strength`` independent of the model's size. From optimizer step ``hard_from`` on
    (optional) the gates become the binary top-k mask in every forward pass, straight-through to log_alpha, so
    the mask finishes learning as the ticket it will be; the penalty is off then."""

    method = "l0"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        masks: list[HardConcreteMask],
        strength: float,
        target: float,
        hard_from: int | None = None,
    ):
        self.masks, self.strength, self.target = masks, float(strength), float(target)
        self.n = sum(m.scores.numel() for m in masks)
        self.hard_from, self.steps = hard_from, 0
        self._handle = optimizer.register_step_pre_hook(lambda *_: self.add_grad_())

    def _set_hard(self) -> None:
        hard = self.hard_from is not None and self.steps >= self.hard_from
        for m in self.masks:
            m.hard = hard

    def expected_density(self) -> float:
        return float(sum(m.open_probability().detach().sum() for m in self.masks)) / self.n

    @torch.no_grad()
    def add_grad_(self) -> None:
        if self.masks[0].hard or self.expected_density() <= self.target:
            return
        for m in self.masks:
            p = m.open_probability()
            grad = p * (1 - p) * (self.strength / self.n)
            if m.scores.grad is None:
                m.scores.grad = grad
            else:
                m.scores.grad.add_(grad)

    def step(self) -> None:
        self.steps += 1
        self._set_hard()

    def observe(self, row: dict) -> None:
        row["expected_density"] = self.expected_density()

    def state_dict(self) -> tuple[dict, str]:
        return {}, json.dumps({"method": self.method, "steps": self.steps})

    def load_state_dict(self, tensors: dict, meta: str) -> None:
        self.steps = int(json.loads(meta).get("steps", 0))
        self._set_hard()

    def detach(self) -> None:
        self._handle.remove()
