"""Adversarial training losses for the training loop: PGD (Madry et al. 2018), TRADES (Zhang et al. 2019)
and FGSM with a random start (Wong et al. 2020), in pixel units of the data.

Adversarial examples are made with the model in eval mode (as TRADES' reference code does; BatchNorm
statistics are not updated by attack passes), the training loss is computed in train mode. The attack
only takes input gradients, so the step's parameter gradients - and with them the masks - are exactly
those of the loss below. Random starts are drawn from a generator seeded by (seed, iteration): a resumed
run draws the same ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import AttackConfig, PixelSpace, _clip, _project, fgsm_rs, from_pixels, pgd, to_pixels
from ..seeding import generator
from ..train.losses import LossTerm, register_loss


def trades_examples(
    net: nn.Module, x: torch.Tensor, eps: float, steps: int, alpha: float, pixel_range, g: torch.Generator
) -> torch.Tensor:
    """TRADES' inner maximisation: maximise KL(f(x) || f(x')) from x + 0.001 N(0, 1), L-inf steps."""
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            p_nat = F.softmax(net(x), dim=1)
        adv = _clip(x + 0.001 * torch.randn(x.shape, generator=g).to(x.device, x.dtype), pixel_range)
        for _ in range(steps):
            adv = adv.detach().requires_grad_(True)
            loss = F.kl_div(F.log_softmax(net(adv), dim=1), p_nat, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = _clip(x + _project(adv + alpha * grad.sign() - x, eps, "linf"), pixel_range)
    finally:
        net.train(was)
    return adv.detach()


class AdversarialLoss:
    """``loss(model, x, y, it)`` for standardised batches (x, y) at iteration ``it``, as ``cfg.adv`` says."""

    def __init__(self, cfg, data, seed: int):
        self.method, self.beta, self.seed, self.data = cfg.adv, cfg.trades_beta, seed, data
        self.range = data.pixel_range
        fgsm_rs_ = cfg.adv == "fgsm-rs"
        step = cfg.adv_step_size if cfg.adv_step_size is not None else 1.25 * cfg.adv_eps if fgsm_rs_ else None
        # step None: AttackConfig's default, 2.5 eps / steps
        self.attack = AttackConfig(
            eps=cfg.adv_eps, norm=cfg.adv_norm, steps=1 if fgsm_rs_ else cfg.adv_steps, step_size=step
        )

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, it: int) -> torch.Tensor:
        g = generator(self.seed, "adversarial-training", it)
        net = PixelSpace(model, self.data.mean, self.data.std)
        xp = to_pixels(x, self.data)
        a = self.attack
        if self.method == "trades":
            adv = trades_examples(net, xp, a.eps, a.steps, a.alpha, self.range, g)
            logits = model(x)
            kl = F.kl_div(
                F.log_softmax(model(from_pixels(adv, self.data)), dim=1),
                F.softmax(logits, dim=1),
                reduction="batchmean",
            )
            return F.cross_entropy(logits, y) + self.beta * kl
        if self.method == "fgsm-rs":
            adv = fgsm_rs(net, xp, y, a.eps, alpha=a.alpha, norm=a.norm, pixel_range=self.range, generator=g)
        else:
            adv = pgd(net, xp, y, a, pixel_range=self.range, generator=g)
        return F.cross_entropy(model(from_pixels(adv, self.data)), y)


ADVERSARIAL = register_loss(
    LossTerm(
        "adversarial",
        "objective",
        lambda cfg: cfg.adv != "none",
        lambda cfg, data, seed, total: AdversarialLoss(cfg, data, seed),
    )
)
