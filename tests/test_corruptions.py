"""MNIST-C corruptions: shape and range kept, seeded, each one changes the images, bad names refused."""
import numpy as np
import pytest

from ticketlab.errors import UserError
from ticketlab.robust.corruptions import MNIST_C, corrupt


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
        assert any(np.allclose(np.roll(np.roll(a, -dy, 0), -dx, 1)[4:24, 4:24], b[4:24, 4:24], atol=1e-5)
                   for dy, dx in shifts)


def test_unknown_corruption_and_wrong_size_are_user_errors(images):
    with pytest.raises(UserError, match="unknown corruption 'snow'"):
        corrupt(images, "snow")
    with pytest.raises(UserError, match="28x28"):
        corrupt(np.zeros((2, 32, 32)), "rotate")
