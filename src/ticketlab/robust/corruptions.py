"""MNIST-C's common corruptions (Mu & Gilmer 2019) for 28x28 grayscale images in [0, 1], in numpy/scipy.

Each corruption takes a batch (N, 28, 28) of pixels and a numpy Generator and returns the corrupted batch,
same shape, in [0, 1]. The parameters are those MNIST-C's dataset was made with (each corruption's
default severity in its reference script): shot noise (Poisson, 3 photons per unit), impulse noise (17%
salt and pepper), glass blur (sigma 0.7, swaps within 1 pixel, 2 passes), motion blur (radius 10, sigma 3,
angle uniform in +-45 degrees), shear (0.4), scale (1 / 0.7), rotate (0.4 rad), translate (3 px) - each
about the image centre (13.5, 13.5) with bilinear interpolation and zero fill, a random sign -,
brightness (+0.5), stripe (the outer 7 columns inverted), fog (a plasma fractal of decay 1.4 at 3x),
spatter (severity 4's mud), dotted line and zigzag (random lines of MNIST-C's decaying profile). The
reference code is ImageMagick/scikit-image based; these are written from its definitions (motion blur
approximates ImageMagick's kernel), and MNIST-C's 15th corruption, Canny edges, is left out (it needs
scikit-image's Canny detector, which does not install here). Seeded per image (``PerImage``): the same seed
gives the same corrupted image, whatever the number of images corrupted with it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import UserError

CENTRE = 13.5


class PerImage:
    """Random draws for a batch made image by image, image i's from its own generator (the key's words, then
    i), stacked along a leading batch axis: an image's corruption is the same however many images are corrupted
    with it (sets made with different ``--samples`` are nested). Each draw's ``size`` starts with the batch."""

    def __init__(self, key: list[int], n: int, start: int = 0):
        self.n = n
        self.gens = [np.random.default_rng([*key, start + i]) for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def at(self, i: int) -> np.random.Generator:
        """Image i's own generator (for code that loops over the images)."""
        return self.gens[i]

    def sub(self, i: int, j: int) -> PerImage:
        """Images i..j-1 (their generators, in the state they are in)."""
        out = PerImage.__new__(PerImage)
        out.n, out.gens = j - i, self.gens[i:j]
        return out

    def _each(self, size, draw) -> np.ndarray:
        size = (size,) if isinstance(size, int) else tuple(size)
        if size[0] != self.n:
            raise ValueError(f"a draw for {self.n} images needs a leading size of {self.n}, got {size}")
        return np.stack([draw(g, size[1:]) for g in self.gens]) if self.n else np.zeros(size)

    def random(self, size) -> np.ndarray:
        return self._each(size, lambda g, sz: g.random(sz))

    def integers(self, low, high, size) -> np.ndarray:
        return self._each(size, lambda g, sz: g.integers(low, high, size=sz))

    def uniform(self, low, high, size) -> np.ndarray:
        return self._each(size, lambda g, sz: g.uniform(low, high, sz))

    def normal(self, loc, scale, size) -> np.ndarray:
        return self._each(size, lambda g, sz: g.normal(loc, scale, sz))

    def choice(self, a, size) -> np.ndarray:
        return self._each(size, lambda g, sz: g.choice(a, sz))

    def poisson(self, lam: np.ndarray) -> np.ndarray:
        return np.stack([g.poisson(lam[i]) for i, g in enumerate(self.gens)]) if self.n else np.zeros(lam.shape)


def shot_noise(x, rng):
    return np.clip(rng.poisson(x * 3.0) / 3.0, 0, 1)


def impulse_noise(x, rng, amount: float = 0.17):
    out = x.copy()
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    out[hit & salt], out[hit & ~salt] = 1.0, 0.0
    return out


def glass_blur(x, rng, sigma: float = 0.7, delta: int = 1, passes: int = 2):
    """MNIST-C's glass blur as its code does it: its 2-D image goes through scikit-image's ``gaussian`` with
    ``multichannel=True``, which takes the last axis for channels, so both blurs run down the columns only
    (along the row index), not across them; between them, 8-bit quantisation and random local swaps."""
    n = len(x)
    blur = lambda a: ndimage.gaussian_filter(a, sigma=(0, sigma, 0), mode="nearest")  # noqa: E731
    out = np.floor(np.clip(blur(x), 0, 1) * 255) / 255  # the reference quantises to 8 bits here
    span = range(28 - delta, delta, -1)
    steps = passes * len(span) ** 2
    swaps = rng.random((n, steps)) < 0.5  # per image: a coin, then an offset, at every position of every pass
    offsets = rng.integers(-delta, delta, size=(n, steps, 2))  # (dx, dy)
    rows, k = np.arange(n), 0
    for _ in range(passes):
        for h in span:
            for w in span:
                swap = swaps[:, k]
                i = rows[swap]
                h2, w2 = h + offsets[swap, k, 1], w + offsets[swap, k, 0]
                a, b = out[i, h, w].copy(), out[i, h2, w2].copy()
                out[i, h, w], out[i, h2, w2] = b, a
                k += 1
    return np.clip(blur(out), 0, 1)


def line_blur(x, radius: int, sigma: float, angles: np.ndarray) -> np.ndarray:
    """A one-sided Gaussian-weighted line blur along each image's angle in degrees (ImageMagick's
    -motion-blur), for batches (N, H, W) or (N, H, W, C); also CIFAR-10-C's motion blur and snow."""
    k = np.arange(radius + 1)
    wts = np.exp(-(k**2) / (2 * sigma**2))
    wts /= wts.sum()
    out = np.zeros_like(x)
    for a in np.unique(angles):
        sel = angles == a
        t = np.deg2rad(a)
        shift = [(0, -kk * np.sin(t), -kk * np.cos(t)) + ((0,) if x.ndim == 4 else ()) for kk in k]
        out[sel] = sum(wk * ndimage.shift(x[sel], sh, order=1, mode="nearest") for wk, sh in zip(wts, shift))
    return out


def motion_blur(x, rng, radius: int = 10, sigma: float = 3.0):
    """An approximation of MNIST-C's motion blur, which is ImageMagick's (through Wand): a one-sided Gaussian
    line kernel of radius + 1 = 11 taps at angles rounded to whole degrees, bilinear sub-pixel shifts."""
    angles = np.round(rng.uniform(-45, 45, len(x))).astype(int)
    return np.clip(line_blur(x, radius, sigma, angles), 0, 1)


def _affine(x, matrices: np.ndarray, translations: np.ndarray):
    """out(p) = x(M p + t) per image, (row, col) coordinates, bilinear, zero outside."""
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = ndimage.affine_transform(x[i], matrices[i], offset=translations[i], order=1, mode="constant")
    return np.clip(out, 0, 1)


def _about_centre(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) matrices and offsets for (x = col, y = row) linear maps ``xy`` (N, 2, 2) fixing the centre."""
    a1, a2, b1, b2 = xy[:, 0, 0], xy[:, 0, 1], xy[:, 1, 0], xy[:, 1, 1]
    a3, b3 = CENTRE * (1 - a1 - a2), CENTRE * (1 - b1 - b2)
    m = np.stack([np.stack([b2, b1], -1), np.stack([a2, a1], -1)], 1)
    return m, np.stack([b3, a3], -1)


def _signs(rng, n):
    return rng.choice([-1.0, 1.0], n)


def shear(x, rng, c: float = 0.4):
    s = c * _signs(rng, len(x))
    xy = np.zeros((len(x), 2, 2))
    xy[:, 0, 0], xy[:, 0, 1], xy[:, 1, 1] = 1, -np.sin(s), np.cos(s)
    return _affine(x, *_about_centre(xy))


def rotate(x, rng, c: float = 0.4):
    r = c * _signs(rng, len(x))
    xy = np.stack([np.stack([np.cos(r), -np.sin(r)], -1), np.stack([np.sin(r), np.cos(r)], -1)], 1)
    return _affine(x, *_about_centre(xy))


def scale(x, rng, c: float = 1 / 0.7):
    xy = np.tile(np.eye(2) * c, (len(x), 1, 1))
    return _affine(x, *_about_centre(xy))


def translate(x, rng, c: float = 3.0):
    d = c * rng.choice([-1.0, 1.0], (len(x), 2))  # (dx, dy)
    return _affine(x, np.tile(np.eye(2), (len(x), 1, 1)), np.stack([d[:, 1], d[:, 0]], -1))


def brightness(x, rng, c: float = 0.5):
    # HSV's value of a gray pixel is the pixel itself: +c on V is +c on the gray level
    return np.clip(x + c, 0, 1)


def stripe(x, rng):
    out = x.copy()
    out[:, :, :7] = 1 - out[:, :, :7]
    out[:, :, 21:] = 1 - out[:, :, 21:]
    return out


def plasma(rng, n: int, size: int = 256, decay: float = 1.4) -> np.ndarray:
    """Diamond-square height maps (n, size, size) in [0, 1]."""
    m = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def noisy_mean(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corner = m[:, 0:size:step, 0:size:step]
        sq = corner + np.roll(corner, -1, axis=1)
        sq = sq + np.roll(sq, -1, axis=2)
        m[:, half:size:step, half:size:step] = noisy_mean(sq)
        dr = m[:, half:size:step, half:size:step]
        ul = m[:, 0:size:step, 0:size:step]
        lt = (dr + np.roll(dr, 1, axis=1)) + (ul + np.roll(ul, -1, axis=2))
        m[:, 0:size:step, half:size:step] = noisy_mean(lt)
        tt = (dr + np.roll(dr, 1, axis=2)) + (ul + np.roll(ul, -1, axis=1))
        m[:, half:size:step, 0:size:step] = noisy_mean(tt)
        step //= 2
        wibble /= decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def plasma_crops(rng, n: int, crop: int, decay: float, chunk: int = 256) -> np.ndarray:
    """(n, crop, crop): the top-left corners of 256x256 plasma maps (the references crop their one map size),
    made ``chunk`` maps at a time to bound memory."""
    parts = [plasma(rng.sub(i, min(n, i + chunk)), min(chunk, n - i), decay=decay) for i in range(0, n, chunk)]
    return np.concatenate([p[:, :crop, :crop] for p in parts])


def fog(x, rng, c: float = 3.0, decay: float = 1.4):
    peak = x.max(axis=(1, 2), keepdims=True)
    f = plasma_crops(rng, len(x), 28, decay)
    return np.clip((x + c * f) * peak / (peak + c), 0, 1)


def spatter(x, rng, loc=0.65, scale_=0.3, sigma=1.0, threshold=0.65, sigma2=1.5):
    liquid = ndimage.gaussian_filter(rng.normal(loc, scale_, x.shape), sigma=(0, sigma, sigma))
    m = ndimage.gaussian_filter((liquid > threshold).astype(np.float64), sigma=(0, sigma2, sigma2))
    m[m < 0.8] = 0
    return np.clip(x * (1 - m) + 63 / 255 * m, 0, 1)


def _line(c0, r0, c1, r1) -> np.ndarray:
    """MNIST-C's line: intensity log(1 - d / 2.3) + 1 at vertical distance d, between columns c0 and c1."""
    if c1 == c0:
        return np.zeros((28, 28))
    cc, rr = np.meshgrid(np.linspace(0, 27, 28), np.linspace(0, 27, 28), sparse=True)
    dist = np.clip(np.abs(rr - ((r1 - r0) / (c1 - c0) * (cc - c0) + r0)), 0, 2.3 - 1e-10)
    out = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    out[:, : int(np.floor(c0))] = 0
    out[:, int(np.ceil(c1)) :] = 0
    return out


def dotted_line(x, rng):
    out = x.copy()
    gaps = np.zeros(28, dtype=bool)
    for j in range(0, 28, 4):  # every other 2-column segment is blank
        gaps[j : j + 2] = True
    for i in range(len(x)):
        r0, r1 = rng.at(i).integers(0, 27, size=2)
        line = _line(0, r0, 27, r1)
        line[:, gaps] = 0
        out[i] = np.clip(out[i] + line, 0, 1)
    return out


def zigzag(x, rng, a: float = 2.0, b: float = 2.0):
    out = x.copy()
    c0, c1 = 2, 25
    for i in range(len(x)):
        r0 = rng.at(i).integers(0, 27)
        r1 = r0 + rng.at(i).integers(-5, 5)
        theta = np.arctan((r1 - r0) / (c1 - c0))
        d = (c1 - c0) / np.cos(theta)
        pts = [(0.0, 0.0)]
        r_i = 0.0
        for k in range(int((d - a) // (2 * a)) + 1):
            r_i = (-1) ** k * b
            pts.append(((2 * k + 1) * a, r_i))
        last = (2 * a) * (d // (2 * a))
        if d != last:
            pts.append((d, r_i / (2 * (d - last))))
        p = np.array(pts).T
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        cs, rs = rot @ p
        cs, rs = cs + c0, rs + r0
        img = out[i]
        for k in range(1, len(cs)):
            img = np.clip(img + _line(cs[k - 1], rs[k - 1], cs[k], rs[k]), 0, 1)
        out[i] = img
    return out


MNIST_C = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
}


def corrupt(x: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Corrupt a batch (N, 28, 28) or (N, 1, 28, 28) of [0, 1] pixels; seeded by (seed, corruption)."""

    if name not in MNIST_C:
        raise UserError(f"unknown corruption {name!r}; choose from: {', '.join(MNIST_C)}")
    shape = x.shape
    if x.shape[-2:] != (28, 28):
        raise UserError(f"MNIST-C corruptions take 28x28 grayscale images, got shape {tuple(shape[1:])}")
    flat = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28)
    if len(flat) == 0:  # nothing to corrupt (glass blur's and fog's batched draws need an image)
        return np.zeros(shape, np.float32)
    rng = PerImage([seed, list(MNIST_C).index(name)], len(flat))
    return MNIST_C[name](flat, rng).reshape(shape).astype(np.float32)
