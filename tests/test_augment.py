"""Training augmentations: Gaussian noise and AugMix in pixel space, seeded, in range, off by default."""

import pytest
import torch

from ticketlab.data import build_dataset
from ticketlab.data.augment import augment, augment_pixels
from ticketlab.errors import UserError
from ticketlab.train import TrainConfig


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 6:22, 9:19] = 0.5 + 0.5 * torch.rand(16, 1, 16, 10, generator=g)
    return x


@pytest.mark.parametrize("name", ["gaussian", "augmix", "crop-flip"])
def test_an_augmentation_stays_in_range_is_seeded_and_changes_the_images(images, name):
    a = augment_pixels(name, images, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, augment_pixels(name, images, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, augment_pixels(name, images, torch.Generator().manual_seed(2)))
    assert float((a - images).abs().mean()) > 1e-3


def test_gaussian_noise_has_the_asked_std_before_clamping():
    mid = torch.full((64, 1, 28, 28), 0.5)
    a = augment_pixels("gaussian", mid, torch.Generator().manual_seed(0), sigma=0.05)
    assert float((a - mid).std()) == pytest.approx(0.05, rel=0.03)


def test_augmix_mixes_with_the_clean_image_so_it_stays_close_on_average(images):
    a = augment_pixels("augmix", images, torch.Generator().manual_seed(0))
    # a convex mix of the image and augmented chains: never further than the farthest chain, usually near
    assert float((a - images).abs().mean()) < float(images.mean())


def test_augment_works_on_standardised_batches_and_none_is_identity(images):
    x = images.numpy()
    d = build_dataset(
        "img",
        x,
        torch.zeros(16, dtype=torch.long).numpy(),
        x,
        torch.zeros(16, dtype=torch.long).numpy(),
        val_size=4,
        num_classes=2,
        pixel_range=(0.0, 1.0),
    )
    xs = d.x_train
    assert augment("none", xs, d, torch.Generator()) is xs
    out = augment("gaussian", xs, d, torch.Generator().manual_seed(0))
    pix = out * d.std + d.mean
    assert float(pix.min()) >= -1e-5 and float(pix.max()) <= 1 + 1e-5


def test_augment_fields_stay_out_of_old_configs_and_bad_names_are_refused():
    assert "augment" not in TrainConfig().to_dict() and "augment_sigma" not in TrainConfig().to_dict()
    assert TrainConfig(augment="augmix").to_dict()["augment"] == "augmix"
    with pytest.raises(UserError, match="unknown --augment 'cutout'"):
        TrainConfig(augment="cutout").validate()
    with pytest.raises(UserError, match="--augment-sigma must be > 0"):
        TrainConfig(augment="gaussian", augment_sigma=0).validate()


@pytest.mark.slow
@pytest.mark.parametrize("aug", ["gaussian", "augmix"])
def test_training_with_augmentation_resumes_bitwise(tmp_path, monkeypatch, aug):
    from helpers import killed_then_resumed, without_config

    from ticketlab.pruners import PruneInitConfig, run_prune_init

    cfg = PruneInitConfig(
        dataset="digits",
        model="lenet300",
        method="random",
        density=0.5,
        train=TrainConfig(iterations=40, eval_every=20, batch_size=60, augment=aug),
    )
    ref = run_prune_init(cfg, tmp_path / "ref", quiet=True, checkpoint_every=20)
    again = killed_then_resumed(run_prune_init, cfg, tmp_path / "r", monkeypatch, quiet=True, checkpoint_every=20)
    assert without_config(again) == without_config(ref)
    plain = run_prune_init(
        PruneInitConfig(
            dataset="digits",
            model="lenet300",
            method="random",
            density=0.5,
            train=TrainConfig(iterations=40, eval_every=20, batch_size=60),
        ),
        tmp_path / "plain",
        quiet=True,
    )
    assert plain["test_acc"] != ref["test_acc"] or plain["history"] != ref["history"]


def test_crop_flip_is_a_padded_crop_and_a_flip_per_image_and_seeded():
    from ticketlab.data.augment import crop_flip

    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1) + 1  # values 1..16, 0 is the padding
    out = crop_flip(x, torch.Generator().manual_seed(0), pad=1)
    again = crop_flip(x, torch.Generator().manual_seed(0), pad=1)
    assert torch.equal(out, again) and out.shape == x.shape
    seen = set()
    padded = torch.nn.functional.pad(x[0, 0], (1, 1, 1, 1))
    for img in out[:, 0]:
        found = None
        for dy in range(3):
            for dx in range(3):
                crop = padded[dy : dy + 4, dx : dx + 4]
                for flipped in (False, True):
                    if torch.equal(img, crop.flip(1) if flipped else crop):
                        found = (dy, dx, flipped)
        assert found is not None  # every output is one of the 18 crops-and-flips
        seen.add(found)
    assert len(seen) > 9 and {f for _, _, f in seen} == {False, True}


def test_a_crop_flip_run_killed_and_resumed_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    """CIFAR-shaped synthetic images (3 x 8 x 8) through your own arrays; the trainer seeds each step's
    augmentation by (seed, iteration), so a resume replays the same crops and flips."""
    import numpy as np
    from helpers import killed_then_resumed, without_config

    from ticketlab.data import from_arrays, register_dataset
    from ticketlab.io import load_tensors
    from ticketlab.pruners.runner import PruneInitConfig, run_prune_init
    from ticketlab.train import TrainConfig

    rng = np.random.default_rng(0)
    arr = {
        "x_train": rng.random((300, 3, 8, 8), dtype=np.float32),
        "y_train": rng.integers(0, 4, 300),
        "x_test": rng.random((60, 3, 8, 8), dtype=np.float32),
        "y_test": rng.integers(0, 4, 60),
    }
    name = register_dataset("cifar-shaped-crop-flip-test", from_arrays(**arr, pixel_range=(0.0, 1.0)))
    cfg = PruneInitConfig(
        dataset=name,
        model="conv2",
        method="random",
        density=0.5,
        train=TrainConfig(iterations=40, eval_every=20, batch_size=30, augment="crop-flip"),
    )
    ref = run_prune_init(cfg, tmp_path / "ref", quiet=True, checkpoint_every=10)
    s = killed_then_resumed(run_prune_init, cfg, tmp_path / "r", monkeypatch, quiet=True, checkpoint_every=10)
    assert without_config(s) == without_config(ref)
    a, b = (load_tensors(tmp_path / d / "final.safetensors") for d in ("ref", "r"))
    assert all(torch.equal(a[k], b[k]) for k in a)
