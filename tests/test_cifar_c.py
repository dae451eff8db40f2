"""CIFAR-10-C corruptions: shape and range kept, seeded, stronger with severity, wired into `robustness`, and
each corruption at each severity checked against the benchmark script's parameters on images whose statistics
they fix."""

import io
import json

import numpy as np
import pytest
from helpers import one_line_exit_2
from matplotlib.colors import rgb_to_hsv
from PIL import Image
from scipy import ndimage

from ticketlab.cli import main
from ticketlab.errors import UserError
from ticketlab.robust.cifar_c import CIFAR10_C, corrupt_cifar
from ticketlab.robust.corruptions import PerImage

# the reference's parameters are not monotone in every corruption: saturate first desaturates (severities
# 1-2) then saturates; elastic's CIFAR severities trade the affine part against the smooth field
NOT_MONOTONE = {"saturate", "elastic_transform"}


@pytest.fixture(scope="module")
def images():
    """Smooth colour gradients with a bright block: structure for blurs to blur and noise to hide."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31
    x = np.stack([0.2 + 0.5 * xx, 0.3 + 0.4 * yy, 0.6 - 0.3 * xx * yy], 0)[None].repeat(4, 0)
    x[:, :, 10:22, 8:20] = rng.uniform(0.7, 1.0, (4, 3, 12, 12))
    return x.astype(np.float32)


@pytest.mark.parametrize("name", list(CIFAR10_C))
def test_a_corruption_keeps_shape_and_range_is_seeded_and_changes_the_images(images, name):
    y = corrupt_cifar(images, name, 3, seed=0)
    assert y.shape == images.shape and y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1
    assert np.abs(y - images).mean() > 1e-3
    assert np.array_equal(y, corrupt_cifar(images, name, 3, seed=0))


@pytest.mark.parametrize("name", sorted(set(CIFAR10_C) - NOT_MONOTONE))
def test_a_higher_severity_changes_the_images_more(images, name):
    change = [float(np.abs(corrupt_cifar(images, name, s, seed=0) - images).mean()) for s in (1, 5)]
    assert change[0] < change[1], change


def test_the_deterministic_ones_do_what_they_say(images):
    c = corrupt_cifar(images, "contrast", 5)  # (x - mean) * 0.15 + mean, per image and channel
    m = images.mean(axis=(2, 3), keepdims=True)
    assert np.allclose(c, np.clip((images - m) * 0.15 + m, 0, 1), atol=1e-6)
    gray = np.full((1, 3, 32, 32), 0.5, dtype=np.float32)  # a gray pixel's HSV value is the pixel: +0.3
    assert np.allclose(corrupt_cifar(gray, "brightness", 5), 0.8, atol=1e-6)
    p = corrupt_cifar(images, "pixelate", 5)  # box-downsampled to 20 px and back: blocks of equal pixels
    assert len(np.unique(p[0, 0, 0])) < 24


def test_bad_names_severities_and_sizes_are_user_errors(images):
    with pytest.raises(UserError, match="unknown corruption 'frost'"):
        corrupt_cifar(images, "frost", 1)  # left out: it needs the benchmark's frost photographs
    with pytest.raises(UserError, match="severity must be 1-5"):
        corrupt_cifar(images, "snow", 6)
    with pytest.raises(UserError, match="32x32 RGB"):
        corrupt_cifar(np.zeros((2, 1, 28, 28)), "snow", 1)


@pytest.mark.slow
def test_robustness_on_cifar_runs_every_severity_and_caches_8_bit_sets(tmp_path, capsys):
    from test_cifar10 import write_archive

    (tmp_path / "data").mkdir()
    write_archive(tmp_path / "data" / "cifar-10-binary.tar.gz", n=1100)
    run = tmp_path / "imp"
    data = ["--data-dir", str(tmp_path / "data")]
    assert (
        main(
            [
                "imp",
                "--dataset",
                "cifar10",
                *data,
                "--model",
                "lenet300",
                "--iterations",
                "3",
                "--rounds",
                "1",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "robustness",
                str(run),
                "--eps",
                "0.01",
                "--steps",
                "2",
                "--samples",
                "16",
                "--corruptions",
                "contrast,gaussian_noise",
                *data,
                "--quiet",
            ]
        )
        == 0
    )
    res = next(run.glob("robustness-*"))
    rows = json.loads((res / "results.json").read_text())["rows"]
    assert set(rows[0]["corruption_acc"]) == {f"{c}/{s}" for c in ("contrast", "gaussian_noise") for s in range(1, 6)}
    from ticketlab.io import load_tensors

    assert load_tensors(res / "corrupted.safetensors")["contrast/5"].dtype.is_floating_point is False
    one_line_exit_2(
        main(["robustness", str(run), "--corruptions", "rotate", *data]),
        capsys.readouterr().err,
        "unknown corruption 'rotate' for cifar10",
    )


# -- each corruption at each severity against the benchmark's CIFAR-10 script (its per-severity parameters,
# transcribed here from make_cifar_c.py), on images whose statistics those parameters fix -----------------------

REF = {
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],  # sigma, delta, passes
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],  # np.arange(1, stop, 0.01)
    "snow": [0.95, 0.9, 0.9, 0.85, 0.8],  # the blend with the brightened image
    "fog": [0.2, 0.5, 0.75, 1.0, 1.5],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "spatter": [(0.5, 0), (0.5, 0), (0.5, 0), (0.6, 1), (0.6, 1)],  # (intensity, mud)
    # the liquid layer: normal(loc, scale) blurred by sigma, cut below a threshold
    "spatter_liquid": [
        (0.62, 0.1, 0.7, 0.7),
        (0.65, 0.1, 0.8, 0.7),
        (0.65, 0.3, 1, 0.69),
        (0.65, 0.1, 0.7, 0.69),
        (0.65, 0.1, 0.5, 0.68),
    ],
}
SEV = [1, 2, 3, 4, 5]


def gray(value, n=32):
    return np.full((n, 3, 32, 32), value, dtype=np.float32)


def own_draws(name, s, n, seed=0):
    """The generators corrupt_cifar gives a batch of n images for ``name`` at severity s."""
    return PerImage([seed, list(CIFAR10_C).index(name), s], n)


def point(n=1, row=16, col=16):
    x = np.zeros((n, 3, 32, 32), dtype=np.float32)
    x[:, :, row, col] = 1.0
    return x


@pytest.mark.parametrize("s", SEV)
def test_gaussian_noise_has_the_references_std(s):
    d = corrupt_cifar(gray(0.5), "gaussian_noise", s).astype(np.float64) - 0.5
    assert abs(d.std() - REF["gaussian_noise"][s - 1]) < 0.002 and abs(d.mean()) < 0.002


@pytest.mark.parametrize("s", SEV)
def test_shot_noise_is_poisson_at_the_references_photon_count(s):
    c = REF["shot_noise"][s - 1]
    y = corrupt_cifar(gray(0.5), "shot_noise", s).astype(np.float64)
    assert np.allclose(y * c, np.round(y * c), atol=1e-3)  # counts over c
    assert abs(y.var() - 0.5 / c) < 0.08 * 0.5 / c and abs(y.mean() - 0.5) < 0.002


@pytest.mark.parametrize("s", SEV)
def test_impulse_noise_replaces_the_references_fraction(s):
    y = corrupt_cifar(gray(0.5, 64), "impulse_noise", s)
    c = REF["impulse_noise"][s - 1]
    assert abs(float((y != 0.5).mean()) - c) < 0.1 * c + 0.001
    assert abs(float((y == 1).mean()) - float((y == 0).mean())) < 0.1 * c + 0.001


@pytest.mark.parametrize("s", SEV)
def test_speckle_noise_scales_with_the_pixel(s):
    c = REF["speckle_noise"][s - 1]
    for v in (0.2, 0.4):
        d = corrupt_cifar(gray(v), "speckle_noise", s).astype(np.float64) - v
        assert abs(d.std() - v * c) < 0.03 * v * c


@pytest.mark.parametrize("s", SEV)
def test_gaussian_blur_is_skimages_gaussian_at_the_references_sigma(s):
    sigma = REF["gaussian_blur"][s - 1]
    y = corrupt_cifar(point(), "gaussian_blur", s)
    want = ndimage.gaussian_filter(point()[0, 0].astype(np.float64), sigma, mode="nearest")
    assert np.allclose(y[0, 0], want, atol=1e-6) and np.allclose(y[0, 1], want, atol=1e-6)


def cv2_gaussian_3x3(k, sigma):
    """OpenCV's GaussianBlur with a 3x3 kernel: a normalised 3-tap Gaussian along each axis, reflect-101."""
    t = np.exp(-(np.arange(-1, 2) ** 2) / (2 * sigma**2))
    t /= t.sum()
    k = np.pad(k, 1, mode="reflect")
    k = sum(t[i] * k[:, i : i + k.shape[1] - 2] for i in range(3))
    return sum(t[i] * k[i : i + k.shape[0] - 2] for i in range(3))


@pytest.mark.parametrize("s", SEV)
def test_defocus_blur_spreads_a_point_by_the_references_smoothed_disk(s):
    radius, alias = REF["defocus_blur"][s - 1]
    r = np.arange(-8, 9)
    xx, yy = np.meshgrid(r, r)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    kernel = cv2_gaussian_3x3(disk / disk.sum(), alias)
    y = corrupt_cifar(point(), "defocus_blur", s).astype(np.float64)[0, 0]
    assert np.allclose(y[8:25, 8:25], kernel[::-1, ::-1], atol=1e-6)


@pytest.mark.parametrize("s", SEV)
def test_motion_blur_spreads_a_point_over_the_references_radius_with_its_sigma(s):
    from ticketlab.robust.corruptions import line_blur

    radius, sigma = REF["motion_blur"][s - 1]
    x = point(40)
    y = corrupt_cifar(x, "motion_blur", s).astype(np.float64)
    # the angles the corruption draws (its generator is seeded by seed, corruption and severity)
    rng = own_draws("motion_blur", s, 40)  # each image's own generator
    angles = np.round(rng.uniform(-45, 45, 40)).astype(int)
    want = np.clip(line_blur(x.transpose(0, 2, 3, 1).astype(np.float64), radius, sigma, angles), 0, 1)
    assert np.allclose(y, want.transpose(0, 3, 1, 2), atol=1e-6)
    assert np.isclose(y.sum((1, 2, 3)), 3.0, atol=1e-4).all()  # the weights sum to 1: nothing is lost


@pytest.mark.parametrize("s", SEV)
def test_glass_blur_keeps_the_mass_its_8_bit_blurred_point_has(s):
    """Swaps and the second blur move mass but keep it; the first blur at the reference's sigma, floored to 8
    bits, fixes how much of a point's mass survives."""
    sigma = REF["glass_blur"][s - 1][0]
    y = corrupt_cifar(point(20), "glass_blur", s).astype(np.float64)
    once = ndimage.gaussian_filter(point()[0, 0].astype(np.float64), sigma, mode="nearest")
    assert np.allclose(y.sum((2, 3)), (np.floor(np.clip(once, 0, 1) * 255) / 255).sum(), atol=1e-5)


def test_a_second_glass_blur_pass_spreads_a_point_about_twice_as_far():
    rr, cc = np.mgrid[0:32, 0:32]

    def spread(s):
        y = corrupt_cifar(point(300), "glass_blur", s).astype(np.float64)[:, 0]
        m = y.sum((1, 2))
        return np.var((y * rr).sum((1, 2)) / m) + np.var((y * cc).sum((1, 2)) / m)

    # severities 2 and 4 share sigma 0.25 (1 and 2 passes), 3 and 5 sigma 0.4: the swaps are a random walk
    assert 1.6 < spread(4) / spread(2) < 2.6 and 1.6 < spread(5) / spread(3) < 2.6


def elastic_draws(s, n):
    """The elastic corruption's random numbers, drawn as it draws them (per image: the three points' offsets,
    then the two noise fields), with the reference's parameters in pixels."""
    alpha, sigma, affine = np.array(REF["elastic_transform"][s - 1]) * 32
    gens = own_draws("elastic_transform", s, n)
    for i in range(n):
        rng = gens.at(i)  # image i's own
        offsets = rng.uniform(-affine, affine, (3, 2))
        fields = [
            ndimage.gaussian_filter(rng.uniform(-1, 1, (32, 32)), sigma, mode="reflect", truncate=3) * alpha
            for _ in range(2)
        ]
        yield offsets, fields[0], fields[1]


SRC = np.array([[26.0, 26.0], [26.0, 6.0], [6.0, 6.0]])  # the reference's points: centre 16 +- 32 // 3, as (x, y)


def warp_source(offsets, cols, rows):
    """Where the affine map moving SRC to SRC + offsets takes output pixel (cols, rows) from: warpAffine's
    inverse map, as (columns, rows)."""
    inv = np.linalg.solve(np.c_[SRC + offsets, np.ones(3)], np.c_[SRC, np.ones(3)]).T
    return inv[0, 0] * cols + inv[0, 1] * rows + inv[0, 2], inv[1, 0] * cols + inv[1, 1] * rows + inv[1, 2]


def test_elastic_severity_1_is_the_affine_map_moving_the_references_three_points():
    rr, cc = np.mgrid[0:32, 0:32]
    x = np.zeros((4, 3, 32, 32), np.float32)
    for px, py in SRC:
        x[:, :, int(py), int(px)] = 1.0
    x = ndimage.gaussian_filter(x, (0, 0, 1.0, 1.0))
    y = corrupt_cifar(x, "elastic_transform", 1).astype(np.float64)[:, 0]
    for img, (offsets, dx, dy) in zip(y, elastic_draws(1, 4)):
        assert not dx.any() and not dy.any()  # alpha 0: no displacement field
        for (px, py), (ox, oy) in zip(SRC, offsets):
            win = (np.abs(rr - (py + oy)) <= 3) & (np.abs(cc - (px + ox)) <= 3)  # (the border mirrors a tail)
            w = img * win
            com = ((w * cc).sum() / w.sum(), (w * rr).sum() / w.sum())
            assert np.allclose(com, (px + ox, py + oy), atol=0.35), (com, px + ox, py + oy)
        assert np.abs(offsets).max() <= 0.08 * 32


@pytest.mark.parametrize("s", SEV)
def test_elastic_displaces_a_ramp_by_the_affine_map_plus_the_smoothed_noise_field(s):
    """A ramp across the columns: its affine image is linear, and bilinear sampling of a linear image is exact, so
    inside the image the output is the ramp at the affine map of (column + dx, row + dy)."""
    x = np.broadcast_to(np.linspace(0.2, 0.8, 32, dtype=np.float32), (3, 3, 32, 32)).copy()
    y = corrupt_cifar(x, "elastic_transform", s).astype(np.float64)[:, 0]
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float64)
    inner = (slice(9, 23), slice(9, 23))
    for img, (offsets, dx, dy) in zip(y, elastic_draws(s, 3)):
        c, _ = warp_source(offsets, cols + dx, rows + dy)
        want = 0.2 + 0.6 * c / 31
        assert np.allclose(img[inner], want[inner], atol=1e-5)
        if s > 1:
            assert np.abs(dx).max() > 0.05  # a field that moves pixels


def reference_clipped_zoom(img, z):
    """The reference's clipped_zoom of one (H, W, C) image: the central ceil(H / z) crop zoomed by z, trimmed."""
    h = img.shape[0]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    out = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


@pytest.mark.parametrize("s", SEV)
def test_zoom_blur_averages_the_image_with_its_zooms_from_1_in_steps_of_0_01(s):
    x = np.random.default_rng(3).uniform(size=(2, 3, 32, 32)).astype(np.float32)
    zooms = np.arange(1, REF["zoom_blur"][s - 1], 0.01)
    y = corrupt_cifar(x, "zoom_blur", s)
    for i in range(2):
        img = x[i].transpose(1, 2, 0).astype(np.float64)
        want = (img + sum(reference_clipped_zoom(img, z) for z in zooms)) / (len(zooms) + 1)
        assert np.allclose(y[i].transpose(1, 2, 0), want, atol=1e-5)


@pytest.mark.parametrize("s", SEV)
def test_snow_blends_toward_the_brightened_grey_by_the_references_weight(s):
    blend = REF["snow"][s - 1]
    y = corrupt_cifar(gray(0.0, 8), "snow", s).astype(np.float64)
    # where no flake falls, black becomes (1 - blend) * max(0, 1.5 * 0 + 0.5)
    assert np.isclose(y.min(), (1 - blend) * 0.5, atol=1e-6)
    assert (y > y.min() + 0.05).mean() > 0.001  # and flakes fall


@pytest.mark.parametrize("s", SEV)
def test_fog_adds_c_times_the_map_and_rescales_to_the_peak(s):
    c = REF["fog"][s - 1]
    # the same seed draws the same maps: two flat images of different levels must give the same map back
    maps = []
    for v in (0.5, 0.25):
        y = corrupt_cifar(gray(v, 4), "fog", s).astype(np.float64)
        maps.append((y * (v + c) / v - v) / c)
    assert np.allclose(maps[0], maps[1], atol=1e-5)
    assert maps[0].min() >= -1e-6 and maps[0].max() <= 1 + 1e-6


def test_fog_maps_are_corners_of_256x256_plasma_maps_not_32x32_ones():
    y = corrupt_cifar(gray(0.5, 40), "fog", 5).astype(np.float64)
    f = (y[:, 0] * 2.0 / 0.5 - 0.5) / 1.5
    rough = lambda m: np.abs(np.diff(m, axis=-1)).mean() / np.ptp(m, axis=(-2, -1)).mean()  # noqa: E731
    from ticketlab.robust.corruptions import plasma

    rng = np.random.default_rng(0)
    small, crop = plasma(rng, 40, size=32, decay=1.75), plasma(rng, 40, decay=1.75)[:, :32, :32]
    assert abs(rough(f) - rough(crop)) < abs(rough(f) - rough(small)) / 3


@pytest.mark.parametrize("s", SEV)
def test_brightness_adds_to_the_hsv_value(s):
    x = np.zeros((1, 3, 32, 32), np.float32)
    x[:, 0], x[:, 1], x[:, 2] = 0.6, 0.3, 0.2
    y = corrupt_cifar(x, "brightness", s)
    hsv_x, hsv_y = rgb_to_hsv(x[0].transpose(1, 2, 0)), rgb_to_hsv(y[0].transpose(1, 2, 0))
    assert np.allclose(hsv_y[..., 2], hsv_x[..., 2] + REF["brightness"][s - 1], atol=1e-5)
    assert np.allclose(hsv_y[..., :2], hsv_x[..., :2], atol=1e-5)


@pytest.mark.parametrize("s", SEV)
def test_contrast_shrinks_each_channel_toward_its_own_mean(s):
    c = REF["contrast"][s - 1]
    x = np.random.default_rng(0).uniform(size=(2, 3, 32, 32)).astype(np.float32)
    x[:, 0] *= 0.3  # channel means 0.15, 0.5, 0.5: a per-image mean would pull the red channel up
    m = x.mean(axis=(2, 3), keepdims=True)
    assert np.allclose(corrupt_cifar(x, "contrast", s), (x - m) * c + m, atol=1e-6)


@pytest.mark.parametrize("s", SEV)
def test_saturate_scales_and_shifts_the_hsv_saturation(s):
    k, b = REF["saturate"][s - 1]
    x = np.zeros((1, 3, 32, 32), np.float32)
    x[:, 0], x[:, 1], x[:, 2] = 0.6, 0.45, 0.4  # saturation 1/3
    y = corrupt_cifar(x, "saturate", s)
    sat = rgb_to_hsv(y[0].transpose(1, 2, 0))[..., 1]
    assert np.allclose(sat, min(1.0, (1 / 3) * k + b), atol=1e-5)


@pytest.mark.parametrize("s", SEV)
def test_pixelate_is_pils_box_resize_down_to_the_references_size_and_back(s):
    x = np.random.default_rng(1).uniform(size=(2, 3, 32, 32)).astype(np.float32)
    small = int(32 * REF["pixelate"][s - 1])
    for i in range(2):
        img = Image.fromarray(np.round(x[i].transpose(1, 2, 0) * 255).astype(np.uint8))
        want = np.asarray(img.resize((small, small), Image.BOX).resize((32, 32), Image.BOX)) / 255
        assert np.allclose(corrupt_cifar(x, "pixelate", s)[i].transpose(1, 2, 0), want, atol=1e-6)


@pytest.mark.parametrize("s", SEV)
def test_jpeg_is_pils_codec_at_the_references_quality(s):
    x = np.random.default_rng(2).uniform(size=(1, 3, 32, 32)).astype(np.float32)
    img = Image.fromarray(np.round(x[0].transpose(1, 2, 0) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=REF["jpeg_compression"][s - 1])
    want = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")) / 255
    assert np.allclose(corrupt_cifar(x, "jpeg_compression", s)[0].transpose(1, 2, 0), want, atol=1e-6)


@pytest.mark.parametrize("s", SEV)
def test_spatter_tints_toward_blue_grey_liquid_or_brown_mud(s):
    intensity, mud = REF["spatter"][s - 1]
    y = corrupt_cifar(gray(0.0, 16), "spatter", s).astype(np.float64).transpose(0, 2, 3, 1)
    hit = y.max(-1) > 0
    assert hit.mean() > 0.001 and (hit.mean() < 0.6 or not mud)  # the liquid's blurred mask reaches far
    colour = np.array([63, 42, 20]) if mud else np.array([175, 238, 238])
    ratio = y[hit] / colour  # black x (1 - m) + colour m = colour m: every channel the same m
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-4)
    m = ratio[:, 0] * 255
    if mud:  # the reference keeps only the blurred blotches' cores
        assert m.min() >= 0.8 - 1e-6 and m.max() <= 1 + 1e-6
    else:
        assert m.max() <= intensity + 1e-6


@pytest.mark.parametrize("s", SEV)
def test_spatter_is_the_references_liquid_each_image_blurred_on_its_own(s):
    """Recomputed from the same draws as the benchmark script does it, one image at a time (a blur across the
    batch, or another liquid setting, gives other pixels)."""
    (loc, scale, sigma, thr), (intensity, mud) = REF["spatter_liquid"][s - 1], REF["spatter"][s - 1]
    n = 6
    x = np.random.default_rng(16).random((n, 3, 32, 32))  # not black: the mix keeps (1 - m) of the image
    y = corrupt_cifar(x, "spatter", s).astype(np.float64).transpose(0, 2, 3, 1)
    x = x.transpose(0, 2, 3, 1)
    draws = own_draws("spatter", s, n).normal(loc, scale, (n, 32, 32))
    for i in range(n):
        liquid = ndimage.gaussian_filter(draws[i], sigma)
        liquid[liquid < thr] = 0
        if mud:
            m = ndimage.gaussian_filter((liquid > thr).astype(float), intensity, mode="nearest")
            m[m < 0.8] = 0
            colour = np.array([63, 42, 20]) / 255
        else:
            m = ndimage.gaussian_filter((liquid > 0).astype(float), 1) * intensity
            colour = np.array([175, 238, 238]) / 255
        assert np.allclose(y[i], np.clip(x[i] * (1 - m[..., None]) + m[..., None] * colour, 0, 1), atol=1e-6), i


@pytest.mark.parametrize("s", SEV)
def test_snow_brightens_a_colour_image_toward_its_grey_by_the_references_weights(s):
    """Where no flake falls, a pixel is blend x + (1 - blend) max(x, 1.5 grey + 0.5), grey the ITU-R 601 luma."""
    blend = REF["snow"][s - 1]
    colour = np.array([0.2, 0.05, 0.1])
    x = np.ones((8, 3, 32, 32), dtype=np.float32) * colour.astype(np.float32)[None, :, None, None]
    y = corrupt_cifar(x, "snow", s).astype(np.float64)
    grey = 0.299 * 0.2 + 0.587 * 0.05 + 0.114 * 0.1
    want = blend * colour + (1 - blend) * np.maximum(colour, 1.5 * grey + 0.5)
    assert np.allclose(y.min(axis=(0, 2, 3)), want, atol=1e-6)  # flakes only add


def test_snowflakes_fall_at_angles_between_minus_135_and_minus_45_degrees(monkeypatch):
    import ticketlab.robust.cifar_c as cc

    seen = []
    real = cc.line_blur

    def spy(x, radius, sigma, angles):
        seen.append(np.asarray(angles))
        return real(x, radius, sigma, angles)

    monkeypatch.setattr(cc, "line_blur", spy)
    corrupt_cifar(gray(0.0, 200), "snow", 1)
    (angles,) = seen
    assert angles.min() >= -135 and angles.max() <= -45
    assert angles.min() < -125 and angles.max() > -55  # the whole range is drawn


def test_the_seed_and_severity_pick_the_random_numbers(images):
    a = corrupt_cifar(images, "gaussian_noise", 1, seed=0)
    assert not np.array_equal(a, corrupt_cifar(images, "gaussian_noise", 1, seed=1))
    n1 = corrupt_cifar(gray(0.5, 2), "gaussian_noise", 1) - 0.5
    n2 = corrupt_cifar(gray(0.5, 2), "gaussian_noise", 2) - 0.5
    assert not np.allclose(n1 / 0.04, n2 / 0.06, atol=1e-3)  # not the same draws scaled
    sh = corrupt_cifar(gray(0.5, 2), "speckle_noise", 1) - 0.5  # nor another corruption's stream
    assert not np.allclose(n1 / 0.04, sh / (0.5 * 0.06), atol=1e-3)


def test_the_affine_warp_mirrors_the_image_at_its_border_as_opencvs_reflect_101():
    x = np.broadcast_to(np.linspace(0.2, 0.8, 32, dtype=np.float32), (6, 3, 32, 32)).copy()
    y = corrupt_cifar(x, "elastic_transform", 1).astype(np.float64)[:, 0]
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float64)
    checked = 0
    for img, (offsets, _, _) in zip(y, elastic_draws(1, 6)):
        c, r = warp_source(offsets, cols, rows)
        outside = ((c < -1) | (c > 32)) & (r > 0) & (r < 31)  # both neighbours mirrored: no kink between them
        mirrored = np.where(c < 0, -c, np.where(c > 31, 62 - c, c))  # reflect-101: -1 -> 1, 32 -> 30
        assert np.allclose(img[outside], 0.2 + 0.6 * mirrored[outside] / 31, atol=1e-5)
        checked += int(outside.sum())
    assert checked > 0


@pytest.mark.parametrize("name", list(CIFAR10_C))
def test_an_images_cifar_corruption_does_not_depend_on_how_many_are_corrupted_with_it(name):
    x = np.random.default_rng(4).random((5, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(corrupt_cifar(x, name, 3, seed=1)[:2], corrupt_cifar(x[:2], name, 3, seed=1))


@pytest.mark.parametrize("s", SEV)
def test_gaussian_and_speckle_noise_add_each_images_own_drawn_noise(s):
    x = np.random.default_rng(9).random((3, 3, 32, 32))
    hwc = x.transpose(0, 2, 3, 1)
    for name, scaled in (("gaussian_noise", False), ("speckle_noise", True)):
        c = REF[name][s - 1]
        z = np.stack([own_draws(name, s, 3).at(i).normal(0, c, (32, 32, 3)) for i in range(3)])
        want = np.clip(hwc + (hwc * z if scaled else z), 0, 1).transpose(0, 3, 1, 2)
        assert np.allclose(corrupt_cifar(x, name, s), want, atol=1e-6)


@pytest.mark.parametrize("s", SEV)
def test_gaussian_blur_blurs_each_channel_of_each_image_repeating_its_edges(s):
    x = np.random.default_rng(10).random((2, 3, 32, 32))  # detail up to the border: the edge mode shows
    c = REF["gaussian_blur"][s - 1]
    want = np.stack([[ndimage.gaussian_filter(x[i, ch], c, mode="nearest") for ch in range(3)] for i in range(2)])
    assert np.allclose(corrupt_cifar(x, "gaussian_blur", s), np.clip(want, 0, 1), atol=1e-6)


@pytest.mark.parametrize("s", SEV)
def test_defocus_blur_keeps_a_point_centred_and_mirrors_the_border(s):
    from ticketlab.robust.cifar_c import _disk

    y = corrupt_cifar(point(), "defocus_blur", s).astype(np.float64)[0, 0]
    rr, cc = np.mgrid[0:32, 0:32]
    assert np.allclose([(y * rr).sum() / y.sum(), (y * cc).sum() / y.sum()], 16, atol=1e-9)
    x = np.random.default_rng(11).random((1, 3, 32, 32))
    k = _disk(*REF["defocus_blur"][s - 1])
    want = np.stack([ndimage.convolve(x[0, ch], k, mode="mirror") for ch in range(3)])
    assert np.allclose(corrupt_cifar(x, "defocus_blur", s)[0], np.clip(want, 0, 1), atol=1e-6)


def test_cifar_refusals_say_the_choices_and_the_whole_shape_and_the_work_is_in_float64(images):
    with pytest.raises(UserError, match="^unknown corruption 'frost'; choose from: gaussian_noise, shot_noise, "):
        corrupt_cifar(images, "frost", 1)
    with pytest.raises(UserError, match=r"^CIFAR-10-C corruptions take 32x32 RGB images, got shape \(1, 28, 28\)$"):
        corrupt_cifar(np.zeros((2, 1, 28, 28)), "snow", 1)
    for name in CIFAR10_C:
        assert np.array_equal(corrupt_cifar(images, name, 3), corrupt_cifar(images.astype(np.float64), name, 3))


@pytest.mark.parametrize("s", SEV)
def test_glass_blur_is_the_references_loop_swapping_every_pixel_with_a_drawn_neighbour(s):
    """The reference's loop: for each pass, h and w from 31 down to 2, swap pixel (h, w) with (h + dy, w + dx),
    (dx, dy) drawn in {-1, 0}^2 up front per image; blurred per channel (edges repeated), 8-bit floored between."""
    sigma, delta, passes = REF["glass_blur"][s - 1]
    x = np.random.default_rng(12).random((2, 3, 32, 32))
    span = range(32 - delta, delta, -1)
    offsets = own_draws("glass_blur", s, 2).integers(-delta, delta, size=(2, passes * len(span) ** 2, 2))

    def blur(img):
        return np.clip(ndimage.gaussian_filter(img, (sigma, sigma, 0), mode="nearest"), 0, 1)

    want = np.empty((2, 32, 32, 3))
    for i in range(2):
        img, k = np.floor(blur(x[i].transpose(1, 2, 0)) * 255) / 255, 0
        for _ in range(passes):
            for h in span:
                for w in span:
                    dx, dy = offsets[i, k]
                    img[[h, h + dy], [w, w + dx]] = img[[h + dy, h], [w + dx, w]]
                    k += 1
        want[i] = blur(img)
    assert np.allclose(corrupt_cifar(x, "glass_blur", s), want.transpose(0, 3, 1, 2), atol=1e-6)


# the reference's snow layer per severity: (loc, scale, zoom, threshold, blur radius, blur sigma), and fog's decay
SNOW_LAYER = [(0.1, 0.2, 1, 0.6, 8, 3), (0.1, 0.2, 1, 0.5, 10, 4), (0.15, 0.3, 1.75, 0.55, 10, 4)]
SNOW_LAYER += [(0.25, 0.3, 2.25, 0.6, 12, 6), (0.3, 0.3, 1.25, 0.65, 14, 12)]
FOG_DECAY = [3, 3, 2.5, 2, 1.75]


@pytest.mark.parametrize("s", SEV)
def test_snow_is_the_references_flake_layer_and_its_half_turn_over_the_brightened_image(s):
    """Flakes: N(loc, scale) per pixel, zoomed, cut below the threshold, motion-blurred at an angle drawn in
    [-135, -45] (the layer's draws first, then the angle, per image); added with their half-turn copy."""
    from ticketlab.robust.cifar_c import _zoom, line_blur

    loc, scale, zoom, thr, radius, sigma = SNOW_LAYER[s - 1]
    blend = REF["snow"][s - 1]
    x = np.random.default_rng(13).random((2, 3, 32, 32))
    hwc = x.transpose(0, 2, 3, 1)
    g = own_draws("snow", s, 2)
    layer = _zoom(g.normal(loc, scale, (2, 32, 32, 1)), zoom)
    layer[layer < thr] = 0
    flakes = line_blur(np.clip(layer, 0, 1), radius, sigma, np.round(g.uniform(-135, -45, 2)).astype(int))
    grey = hwc @ np.array([0.299, 0.587, 0.114])
    out = blend * hwc + (1 - blend) * np.maximum(hwc, grey[..., None] * 1.5 + 0.5)
    want = np.clip(out + flakes + flakes[:, ::-1, ::-1], 0, 1).transpose(0, 3, 1, 2)
    assert flakes.max() > 0.05 and np.allclose(corrupt_cifar(x, "snow", s), want, atol=1e-6)


@pytest.mark.parametrize("s", SEV)
def test_fog_is_each_images_own_256_plasma_corner_at_the_references_decay(s):
    from ticketlab.robust.corruptions import plasma

    c = REF["fog"][s - 1]
    x = np.random.default_rng(14).random((2, 3, 32, 32)) * 0.8
    g = own_draws("fog", s, 2)
    f = np.concatenate([plasma(g.sub(i, i + 1), 1, decay=FOG_DECAY[s - 1])[:, None, :32, :32] for i in range(2)])
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    assert np.allclose(corrupt_cifar(x, "fog", s), np.clip((x + c * f) * peak / (peak + c), 0, 1), atol=1e-6)


@pytest.mark.parametrize("s", SEV)
def test_brightness_and_saturation_are_clipped_in_hsv_before_going_back_to_rgb(s):
    """On random colours (bright ones push the value past 1, pale ones show the saturation's scale and shift)."""
    from matplotlib.colors import hsv_to_rgb

    x = np.random.default_rng(15).random((2, 3, 32, 32))
    hsv = rgb_to_hsv(x.transpose(0, 2, 3, 1))
    bright = hsv.copy()
    bright[..., 2] = np.clip(hsv[..., 2] + REF["brightness"][s - 1], 0, 1)
    want = np.clip(hsv_to_rgb(bright), 0, 1).transpose(0, 3, 1, 2)
    assert np.allclose(corrupt_cifar(x, "brightness", s), want, atol=1e-6)
    k, b = REF["saturate"][s - 1]
    sat = hsv.copy()
    sat[..., 1] = np.clip(hsv[..., 1] * k + b, 0, 1)
    want = np.clip(hsv_to_rgb(sat), 0, 1).transpose(0, 3, 1, 2)
    assert np.allclose(corrupt_cifar(x, "saturate", s), want, atol=1e-6)


@pytest.mark.parametrize("name", list(CIFAR10_C))
def test_an_empty_batch_corrupts_to_an_empty_batch(name):
    out = corrupt_cifar(np.zeros((0, 3, 32, 32), np.float64), name, 3)
    assert out.shape == (0, 3, 32, 32) and out.dtype == np.float32


@pytest.mark.parametrize("z", [1.25, 1.75, 2.25])  # snow's zooms: 2.25 zooms 15 pixels to 34, trimmed by 1
def test_the_zoom_is_the_references_clipped_zoom_at_snows_factors(z):
    from ticketlab.robust.cifar_c import _zoom

    img = np.random.default_rng(17).random((32, 32, 3))
    assert np.allclose(_zoom(img[None], z)[0], reference_clipped_zoom(img, z), atol=1e-12)


@pytest.mark.parametrize("s", SEV[1:])  # severity 1 has no field
def test_elastic_samples_the_affine_image_bilinearly_at_the_field_reflecting_at_the_border(s):
    """On a random image (curved everywhere, so the interpolation order and the border show): the affine image
    (reflect-101, as OpenCV's warpAffine) sampled bilinearly at (row + dy, column + dx), reflecting at the edge."""
    x = np.random.default_rng(18).random((2, 3, 32, 32))
    y = corrupt_cifar(x, "elastic_transform", s).astype(np.float64)
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float64)
    for img, got, (offsets, dx, dy) in zip(x, y, elastic_draws(s, 2)):
        c, r = warp_source(offsets, cols, rows)
        for ch in range(3):
            warped = ndimage.map_coordinates(img[ch], [r, c], order=1, mode="mirror")
            want = ndimage.map_coordinates(warped, [rows + dy, cols + dx], order=1, mode="reflect")
            assert np.allclose(got[ch], np.clip(want, 0, 1), atol=1e-6)
