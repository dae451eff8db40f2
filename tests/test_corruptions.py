"""MNIST-C corruptions: shape and range kept, seeded, bad names refused, and each one checked against its
reference definition on images whose statistics it fixes (Poisson moments, salt-and-pepper fractions, blur
weights, affine maps by the centre of mass, line profiles, the fog and mud formulas)."""

import numpy as np
import pytest
from scipy import ndimage, stats

from ticketlab.errors import UserError
from ticketlab.robust.corruptions import MNIST_C, PerImage, _line, corrupt, glass_blur, line_blur, plasma


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = np.zeros((6, 28, 28), dtype=np.float32)
    x[:, 6:22, 9:19] = rng.uniform(0.5, 1.0, (6, 16, 10))  # a bright block on black, like a digit
    return x


@pytest.mark.parametrize("name", list(MNIST_C))
def test_a_corruption_keeps_shape_and_pixel_range_and_changes_the_images(images, name):
    y = corrupt(images, name, seed=0)
    assert y.shape == images.shape and y.dtype == np.float32
    assert y.min() >= 0 and y.max() <= 1
    assert np.abs(y - images).mean() > 1e-3


@pytest.mark.parametrize("name", list(MNIST_C))
def test_a_corruption_is_seeded(images, name):
    assert np.array_equal(corrupt(images, name, seed=3), corrupt(images, name, seed=3))


def test_random_corruptions_differ_with_the_seed(images):
    assert not np.array_equal(corrupt(images, "shot_noise", seed=1), corrupt(images, "shot_noise", seed=2))


def test_channel_dimension_is_kept(images):
    assert corrupt(images[:, None], "rotate", seed=0).shape == (6, 1, 28, 28)


def test_the_deterministic_ones_do_what_they_say(images):
    assert np.allclose(corrupt(images, "brightness"), np.clip(images + 0.5, 0, 1))
    s = corrupt(images, "stripe")
    assert np.allclose(s[:, :, :7], 1 - images[:, :, :7]) and np.allclose(s[:, :, 7:21], images[:, :, 7:21])
    sc = corrupt(images, "scale")  # zooms out about the centre: the block shrinks
    assert (sc > 0.25).sum() < (images > 0.25).sum()


def test_translate_moves_by_three_pixels(images):
    t = corrupt(images, "translate", seed=0)
    shifts = {(dy, dx) for dy in (-3, 3) for dx in (-3, 3)}
    for a, b in zip(images, t):
        assert any(
            np.allclose(np.roll(np.roll(a, -dy, 0), -dx, 1)[4:24, 4:24], b[4:24, 4:24], atol=1e-5) for dy, dx in shifts
        )


def test_unknown_corruption_and_wrong_size_are_user_errors(images):
    with pytest.raises(
        UserError, match="unknown corruption 'snow'; choose from: shot_noise, impulse_noise, glass_blur"
    ):
        corrupt(images, "snow")
    with pytest.raises(UserError, match=r"^MNIST-C corruptions take 28x28 grayscale images, got shape \(3, 32, 32\)$"):
        corrupt(np.zeros((2, 3, 32, 32)), "rotate")


@pytest.mark.parametrize("name", list(MNIST_C))
def test_an_empty_batch_corrupts_to_an_empty_batch(name):
    out = corrupt(np.zeros((0, 1, 28, 28), np.float64), name)
    assert out.shape == (0, 1, 28, 28) and out.dtype == np.float32


def test_corruptions_are_seeded_by_0_by_default_and_computed_in_float64(images):
    for name in MNIST_C:
        assert np.array_equal(corrupt(images, name), corrupt(images, name, seed=0))
    # float32 and float64 pixels of the same values give the same bits: the work is done in float64
    differ = [n for n in MNIST_C if not np.array_equal(corrupt(images, n), corrupt(images.astype(np.float64), n))]
    assert differ == []
    assert not all(np.array_equal(corrupt(images, n), corrupt(images, n, seed=1)) for n in MNIST_C)


# -- each corruption's definition, on images where its statistics are known -------------------------------------


def flat(value, n=400):
    return np.full((n, 28, 28), value, dtype=np.float32)


@pytest.mark.parametrize("value", [0.2, 0.5])
def test_shot_noise_is_poisson_with_3_photons_per_unit_clipped_to_1(value):
    y = corrupt(flat(value), "shot_noise", seed=0).astype(np.float64)
    assert np.allclose(y * 3, np.round(y * 3), atol=1e-6)  # on the lattice k / 3
    k = np.arange(60)
    pmf = stats.poisson.pmf(k, 3 * value)
    mean = float((np.minimum(k / 3, 1) * pmf).sum())
    var = float((np.minimum(k / 3, 1) ** 2 * pmf).sum()) - mean**2
    assert abs(y.mean() - mean) < 0.004 and abs(y.var() - var) < 0.004
    assert abs(float((y == 0).mean()) - float(pmf[0])) < 0.005


def test_impulse_noise_sets_17_percent_of_pixels_half_to_white_half_to_black():
    y = corrupt(flat(0.5), "impulse_noise", seed=0)
    assert set(np.unique(y)) == {0.0, 0.5, 1.0}
    assert abs(float((y != 0.5).mean()) - 0.17) < 0.003
    assert abs(float((y == 1).mean()) - 0.085) < 0.003 and abs(float((y == 0).mean()) - 0.085) < 0.003


def test_glass_blur_quantises_to_8_bits_by_flooring_and_keeps_a_flat_image_flat():
    y = corrupt(flat(0.5, 3), "glass_blur", seed=0)
    assert np.allclose(y, 127 / 255, atol=1e-6)  # floor(127.5) / 255; rounding would give 128 / 255


def test_glass_blur_moves_pixels_by_at_most_its_window_and_blurs_with_sigma_0_7():
    x = np.zeros((200, 28, 28), dtype=np.float32)
    x[:, 14, 14] = 1.0
    y = corrupt(x, "glass_blur", seed=0).astype(np.float64)
    once = ndimage.gaussian_filter(x[0].astype(np.float64), (0.7, 0), mode="nearest")  # down the columns only
    # without swaps the result would be the point blurred, quantised and blurred again (down the columns)
    rr, cc = np.mgrid[0:28, 0:28]
    assert (np.abs(cc - 14) * y).sum((1, 2)).max() <= 2 * 2 * 1.0 + 1e-6  # two passes, each moves a pixel <= 1 column
    twice = ndimage.gaussian_filter(np.floor(np.clip(once, 0, 1) * 255) / 255, (0.7, 0), mode="nearest")
    assert not np.allclose(y.mean(0), twice, atol=1e-3)  # the swaps moved something
    assert abs(y.sum(axis=(1, 2)).mean() - twice.sum()) < 0.02  # swaps move mass, never add any


def test_line_blur_spreads_a_point_along_its_angle_with_normalised_gaussian_weights():
    x = np.zeros((2, 28, 28))
    x[:, 13, 20] = 1.0
    out = line_blur(x, 4, 2.0, np.array([0, 90]))
    w = np.exp(-(np.arange(5) ** 2) / 8.0)
    w /= w.sum()
    assert np.allclose(out[0, 13, 16:21], w[::-1]) and np.isclose(out[0].sum(), 1.0)  # angle 0: toward column 0
    assert np.allclose(out[1, 9:14, 20], w[::-1]) and np.isclose(out[1].sum(), 1.0)  # angle 90: toward row 0


def test_motion_blur_uses_radius_10_sigma_3_and_an_angle_within_45_degrees():
    x = np.zeros((300, 28, 28), dtype=np.float32)
    x[:, 14, 14] = 1.0
    y = corrupt(x, "motion_blur", seed=0).astype(np.float64)
    w = np.exp(-(np.arange(11) ** 2) / 18.0)
    w /= w.sum()
    assert np.isclose(y[:, 14, 14].min(), w[0], atol=1e-6)  # the point keeps weight w_0 (more off the axes)
    rr, cc = np.mgrid[0:28, 0:28]
    com_r = (y * rr).sum((1, 2)) / y.sum((1, 2)) - 14
    com_c = (y * cc).sum((1, 2)) / y.sum((1, 2)) - 14
    mean_len = float((np.arange(11) * w).sum())
    assert np.allclose(np.hypot(com_r, com_c), mean_len, atol=0.05)  # a one-sided blur of that length
    angle = np.degrees(np.arctan2(-com_r, -com_c))
    assert angle.min() > -45.5 and angle.max() < 45.5 and angle.max() - angle.min() > 80


def blob(row, col, n=2, sigma=1.2):
    rr, cc = np.mgrid[0:28, 0:28]
    img = np.exp(-((rr - row) ** 2 + (cc - col) ** 2) / (2 * sigma**2))
    return np.repeat((img / img.max())[None], n, 0).astype(np.float32)


def centre_of_mass(y):
    rr, cc = np.mgrid[0:28, 0:28]
    m = y.sum((1, 2))
    return np.stack([(y * rr).sum((1, 2)) / m, (y * cc).sum((1, 2)) / m], 1)


def one_of(points, candidates, tol=0.1):
    return all(any(np.abs(p - c).max() < tol for c in candidates) for p in points)


def test_rotate_turns_by_0_4_radians_about_the_centre_either_way():
    y = corrupt(blob(13.5, 20.5, n=40), "rotate", seed=0)
    r = 7.0
    got = centre_of_mass(y)
    cand = [np.array([13.5 + s * r * np.sin(0.4), 13.5 + r * np.cos(0.4)]) for s in (-1, 1)]
    assert one_of(got, cand)
    assert len({round(float(p[0]), 1) for p in got}) == 2  # both directions drawn


def test_scale_zooms_out_by_0_7_about_the_centre():
    y = corrupt(blob(13.5, 20.5), "scale", seed=0)
    assert one_of(centre_of_mass(y), [np.array([13.5, 13.5 + 7 * 0.7])])


def test_shear_slants_rows_by_the_sine_of_0_4_either_way():
    y = corrupt(blob(18.5, 13.5, n=40), "shear", seed=0)
    got = centre_of_mass(y)
    # out(x, y) = in(x - sin(s) y, cos(s) y) about the centre: a point 5 rows below moves to 5 / cos(s) rows
    # below and 5 tan(s) columns aside
    cand = [np.array([13.5 + 5 / np.cos(0.4), 13.5 + s * 5 * np.tan(0.4)]) for s in (-1, 1)]
    assert one_of(got, cand, tol=0.15)
    assert len({round(float(p[1]), 1) for p in got}) == 2


def test_translate_draws_each_axis_sign_apart():
    y = corrupt(blob(13.5, 13.5, n=60), "translate", seed=0)
    d = np.round(centre_of_mass(y) - 13.5).astype(int)
    assert {tuple(v) for v in d} == {(-3, -3), (-3, 3), (3, -3), (3, 3)}


def test_stripe_inverts_the_outer_seven_columns_on_both_sides():
    x = np.random.default_rng(0).uniform(size=(2, 28, 28)).astype(np.float32)
    s = corrupt(x, "stripe")
    assert np.allclose(s[:, :, 21:], 1 - x[:, :, 21:]) and np.allclose(s[:, :, :7], 1 - x[:, :, :7])
    assert np.allclose(s[:, :, 7:21], x[:, :, 7:21])


def test_plasma_maps_span_0_to_1_and_a_larger_decay_is_smoother():
    rough = plasma(np.random.default_rng(0), 4, size=64, decay=1.1)
    smooth = plasma(np.random.default_rng(0), 4, size=64, decay=2.5)
    for m in (rough, smooth):
        assert m.shape == (4, 64, 64) and np.allclose(m.min((1, 2)), 0) and np.allclose(m.max((1, 2)), 1)
    tv = lambda m: np.abs(np.diff(m, axis=2)).mean()  # noqa: E731
    assert tv(smooth) < 0.5 * tv(rough)


def test_fog_adds_3_times_a_plasma_map_and_rescales_to_the_images_peak():
    x = blob(13.5, 13.5, n=300) * 0.8  # peak 0.8; 300 images: two chunks of maps
    y = corrupt(x, "fog", seed=0).astype(np.float64)
    f = y * (0.8 + 3.0) / 0.8 - x  # = 3 x the map, where nothing was clipped
    assert f.min() >= -1e-5 and f.max() <= 3.0 + 1e-5 and f.max() > 2.0
    assert not np.allclose(f[0], f[299], atol=0.1)  # every image its own map
    assert np.allclose(corrupt(np.zeros((2, 28, 28), np.float32), "fog"), 0)  # a black image stays black


def test_spatter_mixes_toward_mud_grey_where_the_mask_is_at_least_0_8():
    y = corrupt(flat(1.0, 200), "spatter", seed=0).astype(np.float64)
    mud = 63 / 255
    m = (1 - y) / (1 - mud)  # out = 1 - m + mud m
    hit = m > 1e-6
    assert 0.001 < hit.mean() < 0.5 and m[hit].min() >= 0.8 - 1e-6 and m.max() <= 1 + 1e-6
    black = corrupt(flat(0.0, 50), "spatter", seed=0)
    assert black.max() <= mud + 1e-6


def test_the_line_profile_is_log_1_minus_d_over_2_3_plus_1_between_its_columns():
    line = _line(3.2, 5, 10.7, 5)
    assert np.allclose(line[5, 3:11], 1.0) and np.allclose(line[[4, 6], 3:11], np.log(1 - 1 / 2.3) + 1)
    assert np.all(line[[3, 7]] == 0) and np.all(line[:, :3] == 0) and np.all(line[:, 11:] == 0)
    assert _line(4, 2, 4, 9).shape == (28, 28) and np.all(_line(4, 2, 4, 9) == 0)  # a vertical one: nothing
    slope = _line(0, 0, 27, 27)  # the last column is past the end (the reference's ceil(c1):, too)
    assert np.allclose(np.diag(slope)[:27], 1.0) and np.all(slope[:, 27] == 0)


def test_dotted_lines_cross_the_image_with_gaps_of_two_columns():
    y = corrupt(flat(0.0, 30), "dotted_line", seed=0)
    cols = np.arange(28)
    assert np.all(y[:, :, cols % 4 < 2] == 0)
    kept = (cols % 4 >= 2) & (cols < 27)  # column 27 is past the line's end
    assert np.all(y[:, :, kept].max(1) > 0.4)  # every kept column has its piece of the line
    assert np.isclose(y.max(), 1.0)


def test_a_zigzag_stays_within_its_amplitude_of_a_line_from_column_2_to_25():
    y = corrupt(flat(0.0, 30), "zigzag", seed=0)
    on = y > 0
    cols = np.flatnonzero(on.any((0, 1)))
    assert cols.min() >= 1 and cols.max() <= 26
    for img in y:
        rows = np.flatnonzero(img.any(1))
        assert rows.max() - rows.min() <= 5 + 2 * 2 + 2 * 2.3 + 1  # slope <= 5 rows, amplitude 2, width 2.3


class _Fixed:
    """A generator stand-in whose ``integers`` returns the given values in turn."""

    def __init__(self, *values):
        self.values = list(values)

    def integers(self, lo, hi=None):
        return self.values.pop(0)

    def at(self, i):  # every image draws from this one
        return self


def test_a_level_zigzag_peaks_two_rows_either_side_of_its_line_every_four_columns():
    from ticketlab.robust.corruptions import zigzag

    img = zigzag(np.zeros((1, 28, 28)), _Fixed(10, 0))[0]  # r0 = 10, r1 = r0: a level line at row 10
    # vertices at columns 2 + 2, 2 + 6, ...: rows 10 + 2, 10 - 2, ... (amplitude b = 2), then back down
    for col, row in [(4, 12), (8, 8), (12, 12), (16, 8), (20, 12)]:
        assert img[row, col] == 1.0 and img[row + (1 if row > 10 else -1), col] < 0.5, (col, row)
    assert img[:, :2].max() == 0 and img[:, 25:].max() == 0  # from column 2 up to column 25


def test_a_tilted_zigzag_ends_on_its_line_offset_by_the_last_half_period():
    """r0 = 10, r1 = 13: length d = sqrt(23^2 + 3^2) = 23.195, six vertices (the last at 22 along, -2 across),
    then the end point 23.195 along and -2 / (2 (d - 20)) = -0.313 across. Rotated onto the line it is
    (col 25.040, row 12.690), so the last segment crosses column 25 at row 12.613: pixel (13, 25) is 0.387
    from it, intensity 1 + log(1 - 0.387 / 2.3) = 0.816."""
    from ticketlab.robust.corruptions import zigzag

    img = zigzag(np.zeros((1, 28, 28)), _Fixed(10, 3))[0]
    assert img[13, 25] == pytest.approx(0.816, abs=0.002)


def drawn(name, n, seed=0):
    """The generators corrupt() gives a batch of n images for ``name`` (image i's: seed, corruption, i)."""
    return PerImage([seed, list(MNIST_C).index(name)], n)


def drawn_signs(name, n, each=(), seed=0):
    """The signs a corruption draws for its n images."""
    return drawn(name, n, seed).choice([-1.0, 1.0], (n, *each))


def test_each_image_is_rotated_by_its_own_drawn_sign_as_skimages_inverse_map():
    y = corrupt(blob(13.5, 20.5, n=30), "rotate", seed=0)
    r = 0.4 * drawn_signs("rotate", 30)
    # out(p) = in(R(r) p) about the centre: the point 7 columns right of it appears at R(-r) (7, 0)
    want = np.stack([13.5 - 7 * np.sin(r), 13.5 + 7 * np.cos(r)], 1)
    assert np.allclose(centre_of_mass(y), want, atol=0.1)


def test_each_image_is_sheared_by_its_own_drawn_sign():
    y = corrupt(blob(18.5, 13.5, n=30), "shear", seed=0)
    s = 0.4 * drawn_signs("shear", 30)
    want = np.stack([13.5 + 5 / np.cos(s), 13.5 + 5 * np.tan(s)], 1)
    assert np.allclose(centre_of_mass(y), want, atol=0.15)


def test_each_image_is_translated_against_its_own_drawn_offsets():
    y = corrupt(blob(13.5, 13.5, n=30), "translate", seed=0)
    d = 3.0 * drawn_signs("translate", 30, (2,))  # (dx, dy) per image: out(p) = in(p + d)
    assert np.allclose(centre_of_mass(y), np.stack([13.5 - d[:, 1], 13.5 - d[:, 0]], 1), atol=0.05)


@pytest.mark.parametrize("name", ["shear", "rotate", "scale"])
def test_the_affine_corruptions_interpolate_bilinearly_as_mnist_cs_order_1_warp(name):
    """A single lit pixel maps to the few pixels whose preimage lies within one pixel of it (a bilinear tent;
    a higher-order spline rings over a hundred), with weights summing to the map's area change."""
    x = np.zeros((1, 28, 28))
    x[0, 9, 9] = 1.0
    y = MNIST_C[name](x, PerImage([0], 1))
    lit = np.argwhere(y[0] > 1e-9)
    assert 1 <= len(lit) <= 6 and np.ptp(lit, axis=0).max() <= 2
    area = {"shear": 1.0, "rotate": 1.0, "scale": 0.7**2}[name]
    assert abs(y.sum() - area) < 0.35 * area


def test_line_blur_of_colour_images_blurs_each_channel_alone():
    rng = np.random.default_rng(0)
    x = rng.random((2, 12, 12, 3))
    angles = np.array([30, -60])
    out = line_blur(x, 3, 1.5, angles)
    for c in range(3):
        assert np.allclose(out[..., c], line_blur(np.ascontiguousarray(x[..., c]), 3, 1.5, angles))


def test_glass_blur_blurs_down_the_columns_only_as_the_references_2d_multichannel_call():
    """skimage's gaussian(img2d, multichannel=True) takes the columns for channels: a vertical edge (each column
    constant) comes through untouched, a horizontal edge is the 1-D Gaussian of a step down each column."""
    vertical = np.zeros((1, 28, 28))
    vertical[:, :, 14:] = 1.0
    out = glass_blur(vertical, PerImage([0], 1), passes=0)
    assert np.array_equal(out, vertical)  # a blur across the columns would smooth this edge
    horizontal = vertical.transpose(0, 2, 1).copy()
    col = np.floor(np.clip(ndimage.gaussian_filter1d(horizontal[0, :, 0], 0.7, mode="nearest"), 0, 1) * 255) / 255
    want = ndimage.gaussian_filter1d(col, 0.7, mode="nearest")
    out = glass_blur(horizontal, PerImage([0], 1), passes=0)
    assert np.allclose(out[0], np.repeat(want[:, None], 28, axis=1), atol=1e-12)


@pytest.mark.parametrize("name", list(MNIST_C))
def test_an_images_corruption_does_not_depend_on_how_many_are_corrupted_with_it(images, name):
    many = np.concatenate([images, images[::-1]])
    assert np.array_equal(corrupt(many, name, seed=3)[:4], corrupt(many[:4], name, seed=3))
    assert np.array_equal(corrupt(many, name, seed=3)[:1], corrupt(many[:1], name, seed=3))


def test_per_image_draws_come_from_each_images_own_generator_and_refuse_a_wrong_batch_size():
    rng = PerImage([5, 1], 3)
    got = rng.random((3, 2))
    assert np.array_equal(got[2], np.random.default_rng([5, 1, 2]).random(2))
    assert np.array_equal(PerImage([5, 1], 4).sub(2, 4).random((2, 2))[0], got[2])
    with pytest.raises(ValueError, match="leading size of 3"):
        rng.random((4, 2))
    none = PerImage([5, 1], 0)  # no images: draws of the right empty shape
    assert none.random((0, 2)).shape == (0, 2) and none.poisson(np.zeros((0, 3))).shape == (0, 3)


def test_glass_blur_is_the_references_loop_of_local_swaps_between_its_two_column_blurs():
    """MNIST-C's glass blur written as its scalar loop: for 2 passes, for h and w from 27 down to 2, a coin and a
    (dx, dy) in {-1, 0}^2 per position, drawn up front for each image; blurred down the columns at sigma 0.7
    with edge pixels repeated (a random image, so the border rows show the mode), 8-bit floored between."""
    x = np.random.default_rng(4).random((3, 28, 28))
    steps = 2 * 26 * 26
    rng = drawn("glass_blur", 3)
    coins, offsets = rng.random((3, steps)) < 0.5, rng.integers(-1, 1, size=(3, steps, 2))
    want = np.empty_like(x)
    for i in range(3):
        img = ndimage.gaussian_filter1d(x[i], 0.7, axis=0, mode="nearest")
        img = np.floor(np.clip(img, 0, 1) * 255) / 255
        k = 0
        for _ in range(2):
            for h in range(27, 1, -1):
                for w in range(27, 1, -1):
                    if coins[i, k]:
                        dx, dy = offsets[i, k]
                        img[h, w], img[h + dy, w + dx] = img[h + dy, w + dx], img[h, w]
                    k += 1
        want[i] = np.clip(ndimage.gaussian_filter1d(img, 0.7, axis=0, mode="nearest"), 0, 1)
    assert np.allclose(corrupt(x, "glass_blur", seed=0), want, atol=1e-6)


def test_spatter_is_severity_4s_mud_of_the_references_blurred_liquid():
    """Liquid N(0.65, 0.3) per pixel blurred at sigma 1, a mask where it exceeds 0.65 blurred at 1.5 and kept
    where at least 0.8, mixed toward 63/255: recomputed image by image from each image's generator."""
    x = np.random.default_rng(5).random((4, 28, 28))
    rng = drawn("spatter", 4)
    want = np.empty_like(x)
    for i in range(4):
        liquid = ndimage.gaussian_filter(rng.at(i).normal(0.65, 0.3, (28, 28)), 1.0)
        m = ndimage.gaussian_filter((liquid > 0.65).astype(float), 1.5)
        m[m < 0.8] = 0
        want[i] = x[i] * (1 - m) + 63 / 255 * m
    assert (want != x).any() and np.allclose(corrupt(x, "spatter", seed=0), want, atol=1e-6)


def test_dotted_lines_run_from_column_0_to_27_between_rows_drawn_below_27():
    x = np.random.default_rng(6).random((20, 28, 28)) * 0.5
    rng = drawn("dotted_line", 20)
    cols = np.arange(28)
    for i, got in enumerate(corrupt(x, "dotted_line", seed=0)):
        r0, r1 = rng.at(i).integers(0, 27, size=2)
        line = _line(0, r0, 27, r1)
        line[:, cols % 4 < 2] = 0
        assert np.allclose(got, np.clip(x[i] + line, 0, 1), atol=1e-6)


def test_a_zigzag_is_a_chain_of_segments_from_column_2_at_a_drawn_row_peaking_2_off_its_base_line(monkeypatch):
    """The segments drawn (``_line``'s calls) chain from (2, r0), r0 drawn in [0, 27), and every joint but the
    last lies b = 2 off the base line from (2, r0) toward (25, r1), r1 - r0 drawn in [-5, 5), alternately."""
    from ticketlab.robust import corruptions

    calls = []
    real = corruptions._line
    monkeypatch.setattr(corruptions, "_line", lambda *a: calls.append(a) or real(*a))
    n = 12
    rng, fresh = drawn("zigzag", n), drawn("zigzag", n)
    for i in range(n):
        g = fresh.at(i)
        r0 = g.integers(0, 27)
        r1 = r0 + g.integers(-5, 5)
        calls.clear()
        corruptions.zigzag(np.zeros((1, 28, 28)), rng.sub(i, i + 1))
        assert np.allclose(calls[0][:2], (2, r0))
        for (_, _, c1, e1), (c0, s0, _, _) in zip(calls, calls[1:]):
            assert np.allclose((c1, e1), (c0, s0))  # one chain
        base = np.array([23.0, r1 - r0]) / np.hypot(23.0, r1 - r0)
        normal = np.array([-base[1], base[0]])
        off = [float(np.dot([c - 2, r - r0], normal)) for (_, _, c, r) in calls[:-1]]
        assert len(off) >= 5 and np.allclose(np.abs(off), 2.0) and all(a * b < 0 for a, b in zip(off, off[1:]))


class Recorder:
    """A Generator that records each uniform draw (its bounds, and the values)."""

    def __init__(self, seed):
        self.g, self.draws = np.random.default_rng(seed), []

    def uniform(self, low, high, size):
        u = self.g.uniform(low, high, size)
        self.draws.append((low, high, u))
        return u


def test_plasma_is_diamond_square_with_noise_of_wibble_squared_shrinking_by_its_decay():
    """The reference's plasma fractal written point by point (wrapping at the edges): each square's centre is
    its 4 corners' mean, then each edge midpoint its 4 neighbours' mean (2 centres, 2 corners), each plus
    wibble * U(-wibble, wibble), wibble starting at 100 and divided by the decay (default 1.4) per level;
    then each map rescaled to [0, 1]."""
    size, n = 16, 2
    rec = Recorder(0)
    got = plasma(rec, n, size=size)
    m = np.zeros((n, size, size))
    step, wibble, draws = size, 100.0, iter(rec.draws)

    def noise():
        low, high, u = next(draws)
        assert (low, high) == (-wibble, wibble)
        return wibble * u

    while step >= 2:
        half, k = step // 2, size // step
        u = noise()
        for i in range(k):
            for j in range(k):
                r, c = i * step, j * step
                corners = m[:, r, c] + m[:, (r + step) % size, c] + m[:, r, (c + step) % size]
                corners = corners + m[:, (r + step) % size, (c + step) % size]
                m[:, r + half, c + half] = corners / 4 + u[:, i, j]
        u_top, u_left = noise(), noise()
        new = m.copy()
        for i in range(k):
            for j in range(k):
                r, c = i * step, j * step  # the midpoint of a square's top edge, then of its left edge
                around = (
                    m[:, (r - half) % size, c + half]
                    + m[:, r + half, c + half]
                    + m[:, r, c]
                    + m[:, r, (c + step) % size]
                )
                new[:, r, c + half] = around / 4 + u_top[:, i, j]
                around = (
                    m[:, r + half, (c - half) % size]
                    + m[:, r + half, c + half]
                    + m[:, r, c]
                    + m[:, (r + step) % size, c]
                )
                new[:, r + half, c] = around / 4 + u_left[:, i, j]
        m = new
        step //= 2
        wibble /= 1.4
    assert next(draws, None) is None
    m -= m.min(axis=(1, 2), keepdims=True)
    assert np.allclose(got, m / m.max(axis=(1, 2), keepdims=True), atol=1e-12)


def test_fog_is_3_times_each_images_own_256_plasma_corner_of_decay_1_4_rescaled_to_its_peak():
    x = np.random.default_rng(7).random((3, 28, 28)) * 0.7
    rng = drawn("fog", 3)
    f = np.concatenate([plasma(rng.sub(i, i + 1), 1, size=256, decay=1.4)[:, :28, :28] for i in range(3)])
    peak = x.max(axis=(1, 2), keepdims=True)
    assert np.allclose(corrupt(x, "fog", seed=0), np.clip((x + 3 * f) * peak / (peak + 3), 0, 1), atol=1e-6)


def test_line_blur_shifts_within_each_image_repeating_its_edge_pixels():
    x = np.random.default_rng(8).random((3, 28, 28))
    x[:, :, 27] = 1.0  # a bright right edge: blurred toward column 0, its outside repeats it
    angles = np.array([0, 0, 30])
    out = line_blur(x, 4, 2.0, angles)
    for i in range(3):  # images sharing an angle are blurred each on its own
        assert np.allclose(out[i], line_blur(x[i : i + 1], 4, 2.0, angles[i : i + 1])[0])
    assert np.allclose(out[:2, :, 27], 1.0)
