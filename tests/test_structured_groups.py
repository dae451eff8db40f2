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
