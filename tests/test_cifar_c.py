"""CIFAR-10-C corruptions: shape and range kept, seeded, stronger with severity, wired into `robustness`."""
import json

import numpy as np
import pytest

from ticketlab.cli import main
from ticketlab.errors import UserError
from ticketlab.robust.cifar_c import CIFAR10_C, corrupt_cifar

from helpers import one_line_exit_2

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
    c = corrupt_cifar(images, "contrast", 5)  # (x - mean) * 0.15 + mean, per image
    m = images.mean(axis=(1, 2, 3), keepdims=True)
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


def test_robustness_on_cifar_runs_every_severity_and_caches_8_bit_sets(tmp_path, capsys):
    from test_cifar10 import write_archive

    (tmp_path / "data").mkdir()
    write_archive(tmp_path / "data" / "cifar-10-binary.tar.gz", n=1100)
    run = tmp_path / "imp"
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["imp", "--dataset", "cifar10", *data, "--model", "lenet300", "--iterations", "3", "--rounds", "1",
                 "--quiet", "--out", str(run)]) == 0
    assert main(["robustness", str(run), "--eps", "0.01", "--steps", "2", "--samples", "16", "--corruptions",
                 "contrast,gaussian_noise", *data, "--quiet"]) == 0
    res = next(run.glob("robustness-*"))
    rows = json.loads((res / "results.json").read_text())["rows"]
    assert set(rows[0]["corruption_acc"]) == {f"{c}/{s}" for c in ("contrast", "gaussian_noise") for s in range(1, 6)}
    from ticketlab.io import load_tensors

    assert load_tensors(res / "corrupted.safetensors")["contrast/5"].dtype.is_floating_point is False
    one_line_exit_2(main(["robustness", str(run), "--corruptions", "rotate", *data]), capsys.readouterr().err,
                    "unknown corruption 'rotate' for cifar10")
