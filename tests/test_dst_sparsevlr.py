"""SparseVLR: RigL's drop-and-grow on a verified-robust (CROWN-IBP) loss, sparse from scratch."""

import pytest
import torch

from ticketlab.dst.runner import DSTConfig, run_dst
from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.train import TrainConfig


def cfg(certified="crown-ibp", method="sparsevlr", density=0.05, **kw):
    train = TrainConfig(
        iterations=60,
        eval_every=20,
        batch_size=60,
        certified=certified,
        cert_eps=0.05 if certified != "none" else 0.0,
        cert_start=0.0,
        cert_ramp=0.5,
    )
    return DSTConfig(dataset="digits", method=method, density=density, delta_t=10, train=train, **kw)


def test_a_sparsevlr_run_keeps_its_exact_density_and_its_pruned_weights_zero(tmp_path):
    s = run_dst(cfg(), tmp_path / "v", quiet=True)
    assert s["density"] == round(0.05 * 50200) / 50200  # lenet300 on 8x8 digits
    mask = load_tensors(tmp_path / "v" / "train_0" / "mask.safetensors")
    final = load_tensors(tmp_path / "v" / "train_0" / "final.safetensors")
    assert sum(int(m.sum()) for m in mask.values()) == round(0.05 * 50200)
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    # the certified loss costs more passes than natural training, and the FLOPs count it
    nat = run_dst(cfg(certified="none", method="rigl"), tmp_path / "r", quiet=True)
    assert s["flops"]["training"] > nat["flops"]["training"]
    # dense training is costed with the same certified passes: a dense static run matches it
    dense = run_dst(cfg(method="static", density=1.0), tmp_path / "d", quiet=True)
    assert dense["flops"]["training"] == pytest.approx(dense["flops"]["training_dense"], rel=1e-6)
    assert s["flops"]["training"] < 0.2 * dense["flops"]["training_dense"]


def test_sparsevlr_grows_by_the_verified_losss_gradient_not_the_natural_one(tmp_path):
    """Same seed, same init mask: RigL on the natural loss and SparseVLR end with different masks."""
    run_dst(cfg(), tmp_path / "v", quiet=True)
    run_dst(cfg(certified="none", method="rigl"), tmp_path / "r", quiet=True)
    a = load_tensors(tmp_path / "v" / "train_0" / "mask.safetensors")
    b = load_tensors(tmp_path / "r" / "train_0" / "mask.safetensors")
    assert any(not torch.equal(a[n], b[n]) for n in a)


def test_sparsevlr_without_a_certified_loss_is_refused():
    with pytest.raises(UserError, match="sparsevlr trains on a verified-robust loss"):
        cfg(certified="none").validate()
