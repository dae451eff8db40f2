import pytest
import torch
from torch import nn

from ticketlab.sparse import (
    apply_mask_,
    density,
    density_report,
    from_torch_prune,
    layer_densities,
    ones_mask,
    prunable_names,
    sparsity,
    to_torch_prune,
)


def net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5), nn.LayerNorm(5), nn.Linear(5, 3)
    )


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
    mask = {
        n: torch.rand(p.shape, generator=g) > 0.5 for n, p in model.named_parameters() if n in prunable_names(model)
    }
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
    assert list(m) == (names or ["0.weight", "3.weight", "5.weight"])


def test_density_report_lines_and_empty_masks():
    mask = {"layer.a": torch.tensor([True, False, False, False]), "b": torch.ones(3, dtype=torch.bool)}
    lines = density_report(mask).splitlines()
    assert lines[0].split() == ["layer", "kept", "total", "density"]
    assert lines[1].split() == ["layer.a", "1", "4", "0.2500"] and lines[2].split() == ["b", "3", "3", "1.0000"]
    assert lines[3].split() == ["total", "4", "7", "0.5714"]
    assert len(lines[0]) == len(lines[1]) == len(lines[3])  # aligned columns
    assert density({}) == 1.0 and sparsity({}) == 0.0


def test_prunable_names_cover_every_conv_kind_and_a_bare_layer():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Conv3d(2, 2, 1), nn.Linear(3, 3, bias=False), nn.Embedding(4, 3))
    assert prunable_names(model) == ["0.weight", "1.weight", "2.weight"]
    assert prunable_names(nn.Linear(3, 2)) == ["weight"]
    assert prunable_names(net(), include=["3.*"], exclude=["*.bias"]) == ["3.weight"]


def test_apply_mask_matches_the_parameters_dtype():
    model = net().double()
    mask = ones_mask(model)
    mask["5.weight"][1] = False
    apply_mask_(model, mask)
    assert model[5].weight.dtype == torch.float64 and torch.count_nonzero(model[5].weight[1]) == 0
    assert torch.count_nonzero(model[5].weight[0]) == 5


def test_from_torch_prune_without_remove_keeps_the_reparametrisation():
    model = nn.Linear(4, 2)
    mask = {"weight": torch.tensor([[True, False, True, False], [False, False, True, True]])}
    to_torch_prune(model, mask)
    back = from_torch_prune(model)
    assert set(back) == {"weight"} and torch.equal(back["weight"], mask["weight"])
    assert hasattr(model, "weight_orig") and hasattr(model, "weight_mask")


def test_torch_prune_round_trip_with_nested_module_names():
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4)), nn.Linear(4, 2))
    mask = {"0.0.weight": torch.rand(4, 3, generator=torch.Generator().manual_seed(0)) > 0.5}
    to_torch_prune(model, mask)
    assert hasattr(model[0][0], "weight_mask") and not hasattr(model[1], "weight_mask")
    back = from_torch_prune(model, remove=True)
    assert list(back) == ["0.0.weight"] and torch.equal(back["0.0.weight"], mask["0.0.weight"])


def test_density_report_is_at_least_as_wide_as_its_header():
    assert density_report({"a": torch.tensor([True, False])}).splitlines() == [
        "layer        kept       total  density",
        "a               1           2   0.5000",
        "total           1           2   0.5000",
    ]
