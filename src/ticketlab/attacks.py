"""White-box attacks in pixel units: FGSM, FGSM with random start (Wong et al. 2020) and PGD (Madry et al.
2018; L-inf and L2, random start, restarts, untargeted or targeted).

ticketlab's datasets hold standardised inputs; an attack works on pixels instead (``PixelSpace``: pixels ->
the data's standardisation -> model), so ``eps`` is in pixel units ([0, 1] images) and every iterate is
clamped to the valid pixel range there. Gradients are taken with respect to the input only
(``torch.autograd.grad``): an attack never touches the model's parameter gradients, so it can run inside a
training step without disturbing the optimizer or the masks. The model is attacked in eval mode (BatchNorm
uses its running statistics, no statistic is updated); its mode is restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError

NORMS = ("linf", "l2")


class PixelSpace(nn.Module):
    """``model`` seen from pixel space: standardises its input with the dataset's statistics first."""

    def __init__(self, model: nn.Module, mean: torch.Tensor | None, std: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x if self.mean is None else (x - self.mean) / self.std)


def to_pixels(x: torch.Tensor, data) -> torch.Tensor:
    """Standardised inputs of ``data`` back in pixel units."""
    return x if data.mean is None else x * data.std + data.mean


def from_pixels(x: torch.Tensor, data) -> torch.Tensor:
    """Pixel-unit inputs standardised as ``data``'s model inputs are (the inverse of ``to_pixels``)."""
    return x if data.mean is None else (x - data.mean) / data.std


@dataclass(frozen=True)
class AttackConfig:
    """An attack's budget. ``steps`` 1 with ``step_size`` eps and no random start is FGSM."""

    eps: float
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None  # default 2.5 * eps / steps (Madry et al.'s choice)
    random_start: bool = True
    restarts: int = 1
    targeted: bool = False  # then ``pgd``'s target labels are minimised toward, not y away from

    def validate(self) -> None:
        if not self.eps >= 0:
            raise UserError(f"--eps must be >= 0, got {self.eps}")
        if self.norm not in NORMS:
            raise UserError(f"unknown norm {self.norm!r}; choose one of: {', '.join(NORMS)}")
        if self.steps < 1 or self.restarts < 1:
            raise UserError("attack steps and restarts must be >= 1")
        if self.step_size is not None and not self.step_size > 0:
            raise UserError(f"--adv-step-size must be > 0, got {self.step_size}")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _flat_norm(delta)).clamp(max=1.0)


def _clip(x: torch.Tensor, lo_hi) -> torch.Tensor:
    return x if lo_hi is None else x.clamp(*lo_hi)


def _random_delta(x: torch.Tensor, eps: float, norm: str, g: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(x.shape, generator=g, device="cpu").to(x.device, x.dtype)
    if norm == "linf":
        return (2 * u - 1) * eps
    d = torch.randn(x.shape, generator=g, device="cpu").to(x.device, x.dtype)  # uniform in the L2 ball
    r = u.flatten(1)[:, :1] ** (1.0 / x[0].numel())
    return d / _flat_norm(d) * r.view(-1, *([1] * (x.dim() - 1))) * eps


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: AttackConfig,
    *,
    pixel_range=None,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial pixels for (x, y): PGD with ``cfg``'s budget on ``model`` (taking pixels; see PixelSpace).

    Untargeted: maximise the cross-entropy of y. Targeted (``cfg.targeted`` and ``target`` labels): minimise the
    cross-entropy of ``target``. With restarts, each example keeps its first restart that succeeds (else the
    last restart's result). Every iterate stays in the eps-ball around x and in ``pixel_range``.
    """
    if cfg.targeted and target is None:
        raise ValueError("a targeted attack needs target labels")
    was = model.training
    model.eval()
    x = x.detach()
    best = x.clone()
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    try:
        for _ in range(cfg.restarts):
            delta = _random_delta(x, cfg.eps, cfg.norm, generator) if cfg.random_start else torch.zeros_like(x)
            adv = _clip(x + delta, pixel_range)
            for _ in range(cfg.steps):
                adv = adv.detach().requires_grad_(True)
                out = model(adv)
                loss = -F.cross_entropy(out, target) if cfg.targeted else F.cross_entropy(out, y)
                (grad,) = torch.autograd.grad(loss, adv)
                with torch.no_grad():
                    step = grad.sign() if cfg.norm == "linf" else grad / _flat_norm(grad)
                    adv = _clip(x + _project(adv + cfg.alpha * step - x, cfg.eps, cfg.norm), pixel_range)
            if cfg.restarts == 1:  # nothing to choose between: skip the success check's forward pass
                return adv.detach()
            with torch.no_grad():
                pred = model(adv).argmax(1)
                ok = (pred == target) if cfg.targeted else (pred != y)
                take = ~done
                best[take] = adv[take].detach()
                done |= ok
    finally:
        model.train(was)
    return best


def fgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf", pixel_range=None
) -> torch.Tensor:
    """One gradient step of size eps (Goodfellow et al. 2015): the gradient's sign under L-inf, the gradient
    scaled to L2 norm eps under L2 (the fast gradient method)."""
    cfg = AttackConfig(eps=eps, norm=norm, steps=1, step_size=eps, random_start=False)
    return pgd(model, x, y, cfg, pixel_range=pixel_range)


def fgsm_rs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    norm: str = "linf",
    pixel_range=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """FGSM from a uniform random start in the ``norm`` ball, step 1.25 eps, projected back (Wong et al. 2020)."""
    return pgd(
        model,
        x,
        y,
        AttackConfig(eps=eps, norm=norm, steps=1, step_size=alpha or 1.25 * eps, random_start=True),
        pixel_range=pixel_range,
        generator=generator,
    )


def robust_accuracy(
    model: nn.Module,
    data,
    cfg: AttackConfig,
    *,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    batch: int = 500,
    seed: int = 0,
) -> tuple[float, float]:
    """(clean accuracy, robust accuracy) of ``model`` (taking standardised inputs) on ``data``'s test set (or
    x, y), attacked in pixel units in batches; seeded, so the same call gives the same number."""
    x = data.x_test if x is None else x
    y = data.y_test if y is None else y
    net = PixelSpace(model, data.mean, data.std)
    g = torch.Generator().manual_seed(int(seed))
    clean = robust = 0
    was = model.training
    model.eval()
    try:
        for i in range(0, len(y), batch):
            xp, yb = to_pixels(x[i : i + batch], data), y[i : i + batch]
            adv = pgd(net, xp, yb, cfg, pixel_range=data.pixel_range, generator=g)
            with torch.no_grad():
                clean += int((net(xp).argmax(1) == yb).sum())
                robust += int((net(adv).argmax(1) == yb).sum())
    finally:
        model.train(was)
    return clean / len(y), robust / len(y)
