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


@pytest.mark.parametrize("name", ["gaussian", "augmix"])
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
    d = build_dataset("img", x, torch.zeros(16, dtype=torch.long).numpy(), x, torch.zeros(16, dtype=torch.long).numpy(),
                      val_size=4, num_classes=2, pixel_range=(0.0, 1.0))
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


@pytest.mark.parametrize("aug", ["gaussian", "augmix"])
def test_training_with_augmentation_resumes_bitwise(tmp_path, monkeypatch, aug):
    from ticketlab.pruners import PruneInitConfig, run_prune_init

    from helpers import killed_then_resumed, without_config

    cfg = PruneInitConfig(dataset="digits", model="lenet300", method="random", density=0.5,
                          train=TrainConfig(iterations=40, eval_every=20, batch_size=60, augment=aug))
    ref = run_prune_init(cfg, tmp_path / "ref", quiet=True, checkpoint_every=20)
    again = killed_then_resumed(run_prune_init, cfg, tmp_path / "r", monkeypatch, quiet=True, checkpoint_every=20)
    assert without_config(again) == without_config(ref)
    plain = run_prune_init(PruneInitConfig(dataset="digits", model="lenet300", method="random", density=0.5,
                                           train=TrainConfig(iterations=40, eval_every=20, batch_size=60)),
                           tmp_path / "plain", quiet=True)
    assert plain["test_acc"] != ref["test_acc"] or plain["history"] != ref["history"]
