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
    with pytest.raises(UserError, match="unknown corruption 'snow'"):
        corrupt(images, "snow")
    with pytest.raises(UserError, match="28x28"):
        corrupt(np.zeros((2, 32, 32)), "rotate")


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
    assert np.all(_line(4, 2, 4, 9) == 0)  # a vertical segment draws nothing
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


def drawn_signs(name, n, each=(), seed=0):
    """The signs a corruption draws for its n images (image i's generator is seeded by seed, corruption, i)."""
    return PerImage([seed, list(MNIST_C).index(name)], n).choice([-1.0, 1.0], (n, *each))


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
