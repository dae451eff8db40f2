"""CIFAR-10-C's common corruptions (Hendrycks & Dietterich 2019) for 32x32 RGB images in [0, 1], at the
five severities of each, in numpy/scipy/Pillow.

Each corruption takes a batch (N, 32, 32, 3) of pixels, a severity 1-5 and a numpy Generator and returns
the corrupted batch, same shape, in [0, 1]. Parameters are those of the benchmark's CIFAR-10 script (its
per-severity tuples for 32x32 images). Written from its definitions rather than with its tools: the
reference uses OpenCV, ImageMagick (Wand) and scikit-image, none of which install here; their pieces
become scipy filters (OpenCV's reflect-101 border is scipy's ``mirror`` mode), a Gaussian-weighted line
blur for ImageMagick's motion blur (as in ``corruptions.py``), matplotlib's HSV conversion and Pillow's
box resize and JPEG codec. 18 of the 19: frost is left out (it overlays photographs of frost that ship
with the benchmark's code and cannot be downloaded here). Spatter's liquid branch is the reference's in
simplified form (blurred thresholded noise tinted blue-grey, without its Canny/distance-transform shaping);
its mud branch is the reference's. Seeded: the same seed gives the same corrupted set.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

from ..errors import UserError
from .corruptions import PerImage, line_blur, plasma_crops

SIZE = 32


def _clip(x):
    return np.clip(x, 0, 1)


def gaussian_noise(x, s, rng):
    c = [0.04, 0.06, 0.08, 0.09, 0.10][s - 1]
    return _clip(x + rng.normal(0, c, x.shape))


def shot_noise(x, s, rng):
    c = [500, 250, 100, 75, 50][s - 1]
    return _clip(rng.poisson(x * c) / c)


def impulse_noise(x, s, rng):
    c = [0.01, 0.02, 0.03, 0.05, 0.07][s - 1]
    out = x.copy()
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out[hit & salt], out[hit & ~salt] = 1.0, 0.0
    return out


def speckle_noise(x, s, rng):
    c = [0.06, 0.1, 0.12, 0.16, 0.2][s - 1]
    return _clip(x + x * rng.normal(0, c, x.shape))


def gaussian_blur(x, s, rng):
    c = [0.4, 0.6, 0.7, 0.8, 1.0][s - 1]
    return _clip(ndimage.gaussian_filter(x, sigma=(0, c, c, 0), mode="nearest"))


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's aliased disk kernel, smoothed by a 3x3 Gaussian (its ksize for radii up to 8)."""
    r = np.arange(-8, 9)
    xx, yy = np.meshgrid(r, r)
    k = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    k /= k.sum()
    return ndimage.gaussian_filter(k, alias_blur, mode="mirror", truncate=1.0 / alias_blur)  # radius 1: 3x3


def defocus_blur(x, s, rng):
    c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s - 1]
    k = _disk(*c)
    return _clip(np.stack([ndimage.convolve(x[..., ch], k[None], mode="mirror") for ch in range(3)], -1))


def glass_blur(x, s, rng):
    sigma, delta, passes = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][s - 1]
    blur = lambda a: ndimage.gaussian_filter(a, sigma=(0, sigma, sigma, 0), mode="nearest")  # noqa: E731
    out = np.floor(_clip(blur(x)) * 255) / 255  # the reference quantises to 8 bits here
    n = len(x)
    rows, span = np.arange(n), range(SIZE - delta, delta, -1)
    offsets = rng.integers(-delta, delta, size=(n, passes * len(span) ** 2, 2))  # every pixel swaps with a neighbour
    k = 0
    for _ in range(passes):
        for h in span:
            for w in span:
                h2, w2 = h + offsets[:, k, 1], w + offsets[:, k, 0]
                a, b = out[rows, h, w].copy(), out[rows, h2, w2].copy()
                out[rows, h, w], out[rows, h2, w2] = b, a
                k += 1
    return _clip(blur(out))


def motion_blur(x, s, rng):
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][s - 1]
    angles = np.round(rng.uniform(-45, 45, len(x))).astype(int)
    return _clip(line_blur(x, radius, sigma, angles))


def _zoom(img, z: float):
    """Zoom each image of (N, H, W, C) by z about the centre, cropped back to H x W."""
    h = img.shape[1]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    crop = img[:, top : top + ch, top : top + ch]
    out = ndimage.zoom(crop, (1, z, z, 1), order=1)
    trim = (out.shape[1] - h) // 2
    return out[:, trim : trim + h, trim : trim + h]


def zoom_blur(x, s, rng):
    zooms = [
        np.arange(1, 1.06, 0.01),
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.01),
        np.arange(1, 1.26, 0.01),
    ][s - 1]
    out = x.copy()
    for z in zooms:
        out += _zoom(x, z)
    return _clip(out / (len(zooms) + 1))


def snow(x, s, rng):
    loc, scale, zoom, thr, radius, sigma, blend = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][s - 1]
    n = len(x)
    layer = rng.normal(loc, scale, (n, SIZE, SIZE, 1))
    layer = _zoom(layer, zoom)
    layer[layer < thr] = 0
    flakes = line_blur(_clip(layer), radius, sigma, np.round(rng.uniform(-135, -45, n)).astype(int))
    gray = x @ np.array([0.299, 0.587, 0.114])
    out = blend * x + (1 - blend) * np.maximum(x, gray[..., None] * 1.5 + 0.5)
    return _clip(out + flakes + np.rot90(flakes, k=2, axes=(1, 2)))


def fog(x, s, rng):
    c, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][s - 1]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    f = plasma_crops(rng, len(x), SIZE, decay)[..., None]
    return _clip((x + c * f) * peak / (peak + c))


def brightness(x, s, rng):
    c = [0.05, 0.1, 0.15, 0.2, 0.3][s - 1]
    hsv = rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _clip(hsv_to_rgb(hsv))


def contrast(x, s, rng):
    c = [0.75, 0.5, 0.4, 0.3, 0.15][s - 1]
    means = x.mean(axis=(1, 2), keepdims=True)  # per image and channel, as the reference
    return _clip((x - means) * c + means)


def saturate(x, s, rng):
    c = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][s - 1]
    hsv = rgb_to_hsv(x)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return _clip(hsv_to_rgb(hsv))


def elastic_transform(x, s, rng):
    """The reference's two steps per image: a random affine map moving three points by up to ``affine`` pixels
    (its cv2.getAffineTransform and warpAffine, bilinear, reflect-101 border), then a smooth displacement field
    (uniform noise blurred with sigma, truncated at 3 sigma, times alpha) sampled bilinearly with a reflecting
    border. Draws as the reference: the affine's offsets, then dx, then dy."""
    alpha, sigma, affine = (
        np.array([(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)][s - 1])
        * SIZE
    )
    centre, half = SIZE // 2, SIZE // 3  # the reference's centre_square and square_size
    src = np.array(
        [[centre + half, centre + half], [centre + half, centre - half], [centre - half, centre - half]],
        dtype=np.float64,
    )  # (x, y) = (column, row)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    out = np.empty_like(x)
    for i in range(len(x)):
        g = rng.at(i)
        dst = src + g.uniform(-affine, affine, src.shape)
        # warpAffine's output at q is its input at A^-1 q, A the map taking src to dst; here A^-1 in (x, y)
        inv = np.linalg.solve(np.c_[dst, np.ones(3)], np.c_[src, np.ones(3)]).T
        warp_cols = inv[0, 0] * cols + inv[0, 1] * rows + inv[0, 2]
        warp_rows = inv[1, 0] * cols + inv[1, 1] * rows + inv[1, 2]
        dx = ndimage.gaussian_filter(g.uniform(-1, 1, (SIZE, SIZE)), sigma, mode="reflect", truncate=3) * alpha
        dy = ndimage.gaussian_filter(g.uniform(-1, 1, (SIZE, SIZE)), sigma, mode="reflect", truncate=3) * alpha
        for ch in range(3):
            warped = ndimage.map_coordinates(x[i, ..., ch], [warp_rows, warp_cols], order=1, mode="mirror")
            out[i, ..., ch] = ndimage.map_coordinates(warped, [rows + dy, cols + dx], order=1, mode="reflect")
    return _clip(out)


def _pil_each(x, fn):
    out = np.empty_like(x)
    for i in range(len(x)):
        img = Image.fromarray(np.round(x[i] * 255).astype(np.uint8))
        out[i] = np.asarray(fn(img), dtype=np.float64) / 255
    return out


def pixelate(x, s, rng):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][s - 1]
    small = int(SIZE * c)
    return _pil_each(x, lambda im: im.resize((small, small), Image.BOX).resize((SIZE, SIZE), Image.BOX))


def jpeg_compression(x, s, rng):
    q = [80, 65, 58, 50, 40][s - 1]

    def codec(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return _pil_each(x, codec)


def spatter(x, s, rng):
    loc, scale, sigma, thr, intensity, mud = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ][s - 1]
    liquid = ndimage.gaussian_filter(rng.normal(loc, scale, x.shape[:3]), sigma=(0, sigma, sigma))
    liquid[liquid < thr] = 0
    if not mud:
        m = ndimage.gaussian_filter((liquid > 0).astype(np.float64), sigma=(0, 1, 1))[..., None] * intensity
        colour = np.array([175 / 255, 238 / 255, 238 / 255])  # the reference's pale blue-grey liquid
        return _clip(x * (1 - m) + colour * m)
    # mud, as the reference: the blotches blurred with sigma ``intensity``, only their cores (>= 0.8) kept
    m = ndimage.gaussian_filter((liquid > thr).astype(np.float64), sigma=(0, intensity, intensity), mode="nearest")
    m = np.where(m < 0.8, 0.0, m)[..., None]
    colour = np.array([63 / 255, 42 / 255, 20 / 255])  # the reference's mud brown
    return _clip(x * (1 - m) + colour * m)


CIFAR10_C = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    # the benchmark's four extra corruptions
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "spatter": spatter,
    "saturate": saturate,
}
SEVERITIES = (1, 2, 3, 4, 5)


def corrupt_cifar(x: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt a batch (N, 3, 32, 32) of [0, 1] pixels at ``severity``; seeded by (seed, corruption, severity)."""

    if name not in CIFAR10_C:
        raise UserError(f"unknown corruption {name!r}; choose from: {', '.join(CIFAR10_C)}")
    if severity not in SEVERITIES:
        raise UserError(f"severity must be 1-5, got {severity}")
    if x.shape[1:] != (3, SIZE, SIZE):
        raise UserError(f"CIFAR-10-C corruptions take 32x32 RGB images, got shape {tuple(x.shape[1:])}")
    hwc = np.asarray(x, dtype=np.float64).transpose(0, 2, 3, 1)
    if len(hwc) == 0:  # nothing to corrupt (glass blur's, fog's and the HSV ones' batched work needs an image)
        return np.zeros(x.shape, np.float32)
    rng = PerImage([seed, list(CIFAR10_C).index(name), severity], len(hwc))  # per image: nested across --samples
    return CIFAR10_C[name](hwc, severity, rng).transpose(0, 3, 1, 2).astype(np.float32)
