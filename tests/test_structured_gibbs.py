import pytest
import torch

from ticketlab.models import build_model
from ticketlab.structured import channel_groups
from ticketlab.structured.gibbs import GibbsPruning, beta_at, lowest_mask


def test_beta_rises_log_linearly_then_stays():
    assert beta_at(0, 1000) == pytest.approx(1.0)
    assert beta_at(320, 1000) == pytest.approx(100.0)
    assert beta_at(640, 1000) == pytest.approx(1e4) and beta_at(999, 1000) == pytest.approx(1e4)


def test_lowest_mask_removes_an_exact_count():
    keep = lowest_mask(torch.tensor([[3.0, 1.0], [2.0, 0.5]]), 0.5)
    assert keep.tolist() == [[True, False], [True, False]]


def test_unstructured_masks_follow_the_gibbs_probabilities():
    model = build_model("lenet300", (1, 8, 8), 10).train()
    gp = GibbsPruning(model, None, p=0.5, total_steps=100, hamiltonian="unstructured", beta_end=1e4)
    w2 = model[1].weight.detach() ** 2
    q = w2.flatten().kthvalue(w2.numel() // 2).values
    m = gp.sampled_masks()["1"]
    # at beta = 1 with tiny w^2 the masks are almost fair coins
    assert 0.4 < m.float().mean() < 0.6
    gp.step_count = 100  # fully annealed: the sample is the magnitude mask up to a few boundary weights
    m = gp.sampled_masks()["1"]
    far = (w2 - q).abs() > 1e-3
    assert torch.equal(m.bool()[far], (w2 >= q)[far])
    assert "3" in gp.layers and "5" not in gp.layers  # the output layer is never pruned


def test_same_step_same_seed_same_mask_and_forward_uses_it():
    model = build_model("lenet300", (1, 8, 8), 10).train()
    gp = GibbsPruning(model, None, p=0.5, total_steps=100, hamiltonian="unstructured", seed=3)
    a = {k: v.clone() for k, v in gp.sampled_masks().items()}
    gp._mask_step = -1
    b = gp.sampled_masks()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 1, 8, 8)
    h = torch.relu(torch.nn.functional.linear(x.flatten(1), model[1].weight * a["1"], model[1].bias))
    assert torch.allclose(model[2](model[1](x.flatten(1))), h)
    gp.detach()
    assert "forward" not in model[1].__dict__


def test_filter_hamiltonian_prunes_whole_filters():
    model = build_model("conv2", (1, 8, 8), 10).train()
    groups = channel_groups(model, (1, 8, 8))
    gp = GibbsPruning(model, groups, p=0.25, total_steps=10, hamiltonian="filter")
    gp.step_count = 10
    m = gp.sampled_masks()["0"]
    per_filter = m.flatten(1).mean(1)
    assert ((per_filter == 0) | (per_filter == 1)).float().mean() > 0.95
    keep = gp.channel_keep()
    assert int((~keep["0"]).sum()) == 16 and int((~keep["2"]).sum()) == 16
    test = gp.test_masks()["0"]
    assert torch.equal(test.flatten(1).all(1), keep["0"]) and torch.equal(test.flatten(1).any(1), keep["0"])
