"""Training-time augmentations on batches of pixels: Gaussian noise and AugMix (Hendrycks et al. 2020), the
augmentations CARD-Deck's members are trained with (Diffenderfer et al. 2021).

``augment(name, x, data, g)`` takes a standardised batch of ``data``, augments it in pixel space (clamped
to the pixel range) and returns it standardised again. Everything is drawn from the generator ``g``
(ticketlab's trainer seeds it by (seed, iteration), so a resumed run augments identically).

- ``gaussian``: x + N(0, sigma^2) per pixel, sigma 0.1 by default (pixel units).
- ``crop-flip``: the standard CIFAR augmentation of the lottery-ticket and DST papers (ResNet-20, VGG-16):
  zero-pad 4 pixels on every side (pixel value 0, black, as torchvision's RandomCrop), crop back to the
  original size at a uniformly random offset, and flip horizontally with probability 1/2; per image, batched
  on the batch's device.
- ``augmix``: ``width`` (3) chains of 1 to ``depth`` (3) operations each, mixed with Dirichlet(1) weights,
  then mixed with the clean image by a Beta(1, 1) weight, per image. The operations are AugMix's set that
  avoids the test corruptions (no contrast, colour, brightness, sharpness or noise): autocontrast,
  posterize, solarize, rotate, shear x/y, translate x/y, at AugMix's default severity 3. Equalize is left
  out (a per-image histogram equalisation with no batched torch form here). The Jensen-Shannon consistency
  loss of the AugMix paper is not used: CARD-Deck trains its members with the plain augmented loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UserError

AUGMENTATIONS = ("none", "gaussian", "augmix", "crop-flip")
CROP_PAD = 4  # the CIFAR papers' random crop: 4 pixels of zero padding, then a crop of the original size
SEVERITY = 3  # AugMix's default: operation strengths at 3/10 of their maxima


def _level(g: torch.Generator, n: int, top: float) -> torch.Tensor:
    """Per-image strengths uniform in [0.1, severity / 10] x ``top``, with a random sign."""
    mag = 0.1 + torch.rand(n, generator=g) * (SEVERITY / 10 - 0.1)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return mag * top * sign


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _op(k: int, x: torch.Tensor, g: torch.Generator, lo: float, hi: float) -> torch.Tensor:
    n = len(x)
    span = hi - lo
    if k == 0:  # autocontrast: stretch each image's channels to the full range
        mn = x.amin(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.where(mx > mn, lo + (x - mn) / (mx - mn).clamp_min(1e-8) * span, x)
    if k == 1:  # posterize to 4..(8 - severity-scaled) bits
        bits = (4 - (torch.rand(n, generator=g) * SEVERITY / 10 * 4).floor()).view(-1, 1, 1, 1).to(x)
        levels = 2**bits
        return lo + torch.floor((x - lo) / span * levels) / levels * span
    if k == 2:  # solarize above a threshold
        thr = (1 - torch.rand(n, generator=g) * SEVERITY / 10).view(-1, 1, 1, 1).to(x)
        u = (x - lo) / span
        return lo + torch.where(u < thr, u, 1 - u) * span
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if k == 3:  # rotate up to 30 degrees (at severity 10)
        a = _level(g, n, math.radians(30))
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
    elif k in (4, 5):  # shear x / y up to 0.3
        theta[:, 0 if k == 4 else 1, 1 if k == 4 else 0] = _level(g, n, 0.3)
    else:  # translate x / y up to a third of the image (normalised coordinates span 2)
        theta[:, 0 if k == 6 else 1, 2] = _level(g, n, 2 / 3)
    # zero-padded outside: pad with the range's low end
    return _affine(x - lo, theta.to(x.device)) + lo


N_OPS = 8


def augmix(x: torch.Tensor, g: torch.Generator, lo: float, hi: float, width: int = 3, depth: int = 3) -> torch.Tensor:
    n = len(x)
    ws = _dirichlet(g, n, width)
    m = _beta(g, n)
    mix = torch.zeros_like(x)
    for c in range(width):
        chain = x
        d = torch.randint(1, depth + 1, (n,), generator=g)
        for level in range(depth):
            ops = torch.randint(0, N_OPS, (n,), generator=g)
            out = chain.clone()
            for k in range(N_OPS):
                sel = ((ops == k) & (d > level)).nonzero().flatten()
                if len(sel):
                    out[sel.to(x.device)] = _op(k, chain[sel.to(x.device)], g, lo, hi)
            chain = out
        mix = mix + ws[:, c].view(-1, 1, 1, 1).to(x) * chain
    m = m.view(-1, 1, 1, 1).to(x)
    return ((1 - m) * x + m * mix).clamp(lo, hi)


def _gamma(g: torch.Generator, shape) -> torch.Tensor:
    """Gamma(1, 1) samples from ``g`` (exponential: -log U), enough for Dirichlet(1) and Beta(1, 1)."""
    return -torch.log(torch.rand(shape, generator=g).clamp_min(1e-12))


def _dirichlet(g: torch.Generator, n: int, k: int) -> torch.Tensor:
    e = _gamma(g, (n, k))
    return e / e.sum(1, keepdim=True)


def _beta(g: torch.Generator, n: int) -> torch.Tensor:
    a, b = _gamma(g, n), _gamma(g, n)
    return a / (a + b)


def crop_flip(x: torch.Tensor, g: torch.Generator, fill: float = 0.0, pad: int = CROP_PAD) -> torch.Tensor:
    """Random crop with ``pad`` pixels of padding (value ``fill``) and a random horizontal flip, per image of
    a batch (B, C, H, W)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(x.device)
    flip = (torch.rand(b, generator=g) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def augment_pixels(
    name: str, xp: torch.Tensor, g: torch.Generator, pixel_range=(0.0, 1.0), sigma: float = 0.1
) -> torch.Tensor:
    """``name``'s augmentation of a batch of pixels (B, C, H, W)."""
    lo, hi = pixel_range
    if name == "none":
        return xp
    if name == "gaussian":
        return (xp + sigma * torch.randn(xp.shape, generator=g).to(xp)).clamp(lo, hi)
    if name == "crop-flip":
        if xp.dim() != 4:
            raise UserError(f"crop-flip takes images (C, H, W); the data has shape {tuple(xp.shape[1:])}")
        return crop_flip(xp, g, fill=0.0 if lo <= 0 <= hi else lo)
    if name == "augmix":
        if xp.dim() != 4:
            raise UserError(f"augmix takes images (C, H, W); the data has shape {tuple(xp.shape[1:])}")
        return augmix(xp, g, lo, hi)
    raise UserError(f"unknown --augment {name!r}; choose one of: {', '.join(AUGMENTATIONS)}")


def augment(name: str, x: torch.Tensor, data, g: torch.Generator, sigma: float = 0.1) -> torch.Tensor:
    """A standardised batch of ``data`` augmented in pixel space, standardised again."""
    if name == "none":
        return x
    if data.pixel_range is None:
        raise UserError(f"--augment needs image data with a pixel range; {data.name} has none")
    xp = x if data.mean is None else x * data.std + data.mean
    out = augment_pixels(name, xp, g, data.pixel_range, sigma)
    return out if data.mean is None else (out - data.mean) / data.std
