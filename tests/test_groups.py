import pytest
import torch

from ticketlab.models import build_model
from ticketlab.structured import channel_groups, dead_channels, group_mask, output_layer


def test_residual_stream_is_one_group_with_all_its_batchnorms_and_readers():
    model = build_model("resnet20", (3, 32, 32), 10)
    groups = {g.name: g for g in channel_groups(model, (3, 32, 32))}
    stem = groups["conv"]  # the first stage's stream: stem + every block's second conv in stage 1
    assert stem.size == 16
    assert set(stem.norms) == {"bn", "blocks.0.bn2", "blocks.1.bn2", "blocks.2.bn2"}
    readers = {s.param for s in stem.slices if not s.out}
    assert {"blocks.0.conv1.weight", "blocks.3.conv1.weight", "blocks.3.shortcut.0.weight"} <= readers
    assert groups["blocks.0.conv1"].norms == ["blocks.0.bn1"]  # a block's inner channels stand alone
    assert "fc" not in groups and output_layer(model) == "fc"


def test_flatten_maps_each_channel_to_its_block_of_linear_inputs():
    model = build_model("conv2", (1, 8, 8), 10)
    g = {g.name: g for g in channel_groups(model, (1, 8, 8))}["2"]  # second conv, feeds the flatten
    [s] = [s for s in g.slices if s.param == "5.1.weight"]
    assert s.dim == 1 and len(s.index) == 64 * 16
    assert torch.equal(s.channel, s.index // 16)  # channel c owns features c*H*W ... (c+1)*H*W - 1


def test_group_mask_zeroes_producers_norms_and_readers_of_removed_channels():
    model = build_model("conv2bn", (1, 8, 8), 10)
    groups = channel_groups(model, (1, 8, 8))
    keep = {groups[0].name: torch.arange(64) % 2 == 0}
    mask = group_mask(model, groups, keep)
    assert not mask["0.weight"][1::2].any() and mask["0.weight"][0::2].all()
    assert not mask["1.weight"][1::2].any() and not mask["1.bias"][1::2].any()
    assert not mask["3.weight"][:, 1::2].any() and mask["3.weight"][:, 0::2].all()
    dead = dead_channels(model, groups, mask)
    assert torch.equal(dead[groups[0].name], torch.arange(64) % 2 == 1)


def test_a_neuron_nobody_reads_is_dead():
    model = build_model("lenet300", (1, 8, 8), 10)
    groups = channel_groups(model, (1, 8, 8))
    mask = {"3.weight": torch.ones(100, 300, dtype=torch.bool)}
    mask["3.weight"][:, 7] = False
    dead = dead_channels(model, groups, mask)
    assert dead["1"].nonzero().flatten().tolist() == [7] and not dead["3"].any()


def test_groups_come_in_module_order_with_their_sizes_and_exact_slices():
    model = build_model("cnn1d", (1, 40), 10)
    groups = channel_groups(model, (1, 40))
    assert [(g.name, g.size) for g in groups] == [("0", 32), ("2", 32), ("4", 32)]
    g = groups[1]
    assert g.producers == ["2"] and g.norms == []
    assert [(s.param, s.dim, s.out) for s in g.slices] == [
        ("2.weight", 0, True),
        ("2.bias", 0, True),
        ("4.weight", 1, False),
    ]
    assert all(torch.equal(s.index, torch.arange(32)) and torch.equal(s.channel, torch.arange(32)) for s in g.slices)
    # the last group feeds the classifier through a flatten: 5 positions per channel
    [read] = [s for s in groups[2].slices if not s.out]
    assert read.param == "7.weight" and len(read.index) == 160 and torch.equal(read.channel, read.index // 5)
    assert [s.param for s in groups[2].slices_of("4.bias")] == ["4.bias"] and groups[2].slices_of("4.bias")[0].out
    assert groups[2].slices_of("nope") == []


def test_group_mask_combines_with_a_base_mask_and_leaves_full_groups_alone():
    model = build_model("lenet300", (1, 4, 4), 10)
    groups = channel_groups(model, (1, 4, 4))
    base = {"1.weight": torch.ones(300, 16, dtype=torch.bool)}
    base["1.weight"][0, 0] = False
    keep = {"1": torch.ones(300, dtype=torch.bool), "3": torch.arange(100) != 4}
    mask = group_mask(model, groups, keep, base)
    assert torch.equal(mask["1.weight"], base["1.weight"]) and mask["1.weight"] is not base["1.weight"]
    assert set(mask) == {"1.weight", "3.weight", "3.bias", "5.weight"}
    assert not mask["3.weight"][4].any() and not mask["3.bias"][4] and int(mask["3.weight"].sum()) == 99 * 300
    assert not mask["5.weight"][:, 4].any() and int(mask["5.weight"].sum()) == 10 * 99
    assert group_mask(model, groups, {"1": torch.ones(300, dtype=torch.bool)}) == {}


def test_a_channel_lives_while_any_producer_or_any_reader_is_nonzero():
    model = build_model("conv2bn", (1, 8, 8), 10)
    groups = channel_groups(model, (1, 8, 8))
    name = groups[0].name
    with torch.no_grad():
        model[0].weight[5] = 0  # conv row zero, but its BatchNorm shift still produces a constant
    assert not dead_channels(model, groups)[name][5]
    with torch.no_grad():
        model[1].weight[5] = 0
        model[1].bias[5] = 0
    assert dead_channels(model, groups)[name].nonzero().flatten().tolist() == [5]
    with torch.no_grad():
        model[3].weight[:, 9] = 0  # nobody reads channel 9
    assert dead_channels(model, groups)[name].nonzero().flatten().tolist() == [5, 9]
    assert not dead_channels(model, groups)[groups[1].name].any()


def test_unsupported_models_are_refused():
    from torch import nn

    with pytest.raises(ValueError, match="^the model has no Linear or Conv layer$"):
        output_layer(nn.Sequential(nn.ReLU()))
    grouped = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    with pytest.raises(ValueError, match="^grouped convolution 0 is not supported by structured pruning$"):
        channel_groups(grouped, (4, 6, 6))
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, affine=False), nn.Flatten(), nn.Linear(64, 3))
    [g] = channel_groups(plain, (1, 6, 6))
    assert {s.param for s in g.slices} == {"0.weight", "0.bias", "3.weight"} and g.norms == ["1"]


def test_batchnorm_slices_produce_the_channel_and_group_names_are_the_roots():
    model = build_model("conv2bn", (1, 8, 8), 10)
    model.train()
    groups = channel_groups(model, (1, 8, 8))
    assert model.training and all(m.training for m in model.modules())  # the traced copy is a deep copy
    assert [g.name for g in groups] == ["0", "3", "7.1", "7.3"]
    assert [(s.param, s.dim, s.out) for s in groups[0].slices] == [
        ("0.weight", 0, True),
        ("1.weight", 0, True),
        ("1.bias", 0, True),
        ("3.weight", 1, False),
    ]
    assert groups[0].norms == ["1"] and groups[0].producers == ["0"]


def test_no_tensor_slice_is_listed_twice_even_across_residual_adds():
    model = build_model("resnet20", (3, 8, 8), 10)
    for g in channel_groups(model, (3, 8, 8)):
        keys = [(s.param, s.dim) for s in g.slices]
        assert len(keys) == len(set(keys)), g.name
    names = [g.name for g in channel_groups(model, (3, 8, 8))]
    assert names == [
        "conv",
        "blocks.0.conv1",
        "blocks.1.conv1",
        "blocks.2.conv1",
        "blocks.3.conv1",
        "blocks.3.shortcut.0",
        "blocks.4.conv1",
        "blocks.5.conv1",
        "blocks.6.conv1",
        "blocks.6.shortcut.0",
        "blocks.7.conv1",
        "blocks.8.conv1",
    ]


def test_keep_vectors_of_any_dtype_mean_the_same():
    model = build_model("lenet300", (1, 4, 4), 10)
    groups = channel_groups(model, (1, 4, 4))
    keep = torch.arange(300) % 3 != 0
    a = group_mask(model, groups, {"1": keep})
    b = group_mask(model, groups, {"1": keep.to(torch.uint8)})
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
