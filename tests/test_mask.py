import pytest
import torch
from torch import nn

from ticketlab.sparse import (apply_mask_, density, density_report, from_torch_prune, layer_densities, ones_mask,
                              prunable_names, sparsity, to_torch_prune)


def net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
                         nn.LayerNorm(5), nn.Linear(5, 3))


def test_default_prunable_are_linear_and_conv_weights_only():
    assert prunable_names(net()) == ["0.weight", "3.weight", "5.weight"]


def test_prunable_names_overridable_by_pattern():
    assert prunable_names(net(), exclude=["5.*"]) == ["0.weight", "3.weight"]
    assert prunable_names(net(), include=["*.bias"]) == ["0.bias", "1.bias", "3.bias", "4.bias", "5.bias"]


def test_density_and_sparsity_are_complementary_and_exact():
    mask = {"a": torch.tensor([True, False, False, False]), "b": torch.tensor([True, True, False, False])}
    assert density(mask) == 3 / 8 and sparsity(mask) == 5 / 8
    assert layer_densities(mask) == {"a": 0.25, "b": 0.5}
    report = density_report(mask)
    assert "total" in report and "0.3750" in report


def test_apply_mask_zeroes_pruned_entries():
    model = net()
    mask = ones_mask(model)
    mask["3.weight"][0] = False
    apply_mask_(model, mask)
    assert torch.count_nonzero(model[3].weight[0]) == 0 and torch.count_nonzero(model[3].weight[1]) > 0


def test_torch_prune_round_trip():
    model = net()
    g = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(p.shape, generator=g) > 0.5 for n, p in model.named_parameters()
            if n in prunable_names(model)}
    to_torch_prune(model, mask)
    assert torch.count_nonzero(model[3].weight[~mask["3.weight"]]) == 0
    back = from_torch_prune(model, remove=True)
    assert set(back) == set(mask) and all(torch.equal(back[n], mask[n]) for n in mask)
    assert isinstance(model[3].weight, nn.Parameter)  # reparametrisation removed, zeros baked in
    assert torch.count_nonzero(model[3].weight[~mask["3.weight"]]) == 0


@pytest.mark.parametrize("names", [None, ["3.weight"]])
def test_ones_mask_is_dense(names):
    m = ones_mask(net(), names)
    assert density(m) == 1.0 and all(v.dtype == torch.bool for v in m.values())
