import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ticketlab.deploy import compact, load_compact, save_compact, widths
from ticketlab.errors import UserError
from ticketlab.io import save_tensors
from ticketlab.models import build_model
from ticketlab.sparse import apply_mask_
from ticketlab.structured import channel_groups, group_mask

ARCHITECTURES = [
    ("lenet300", (1, 28, 28)),
    ("mlp1d", (1, 40)),
    ("cnn1d", (1, 40)),
    ("conv2", (1, 16, 16)),
    ("conv4", (3, 16, 16)),
    ("conv6", (3, 16, 16)),
    ("conv2bn", (1, 16, 16)),
    ("conv4bn", (3, 16, 16)),
    ("conv6bn", (3, 16, 16)),
    ("vgg16", (3, 16, 16)),
    ("resnet20", (3, 16, 16)),
]


def randomised(name, shape, seed=0):
    """A model with random BatchNorm statistics and affine values (so removed channels would show)."""
    model = build_model(name, shape, 10, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
            elif isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("name,shape", ARCHITECTURES)
def test_compaction_keeps_the_masked_models_outputs(name, shape):
    model = randomised(name, shape)
    groups = channel_groups(model, shape)
    g = torch.Generator().manual_seed(1)
    keep = {grp.name: torch.rand(grp.size, generator=g) < 0.5 for grp in groups}
    mask = group_mask(model, groups, keep)
    small = compact(model, shape, mask)
    apply_mask_(model, mask)
    x = torch.randn(4, *shape, generator=g)
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5)
    removed = sum(int((~k).sum()) for k in keep.values())
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters()) or removed == 0
    for grp in groups:  # each group lost exactly the removed channels (or all but one)
        kept = max(1, int(keep[grp.name].sum()))
        w = widths(small)[grp.name]
        assert w[0] == kept


def test_compact_file_round_trip_and_plain_torch_reading(tmp_path):
    shape = (3, 16, 16)
    model = randomised("resnet20", shape)
    groups = channel_groups(model, shape)
    mask = group_mask(model, groups, {grp.name: torch.arange(grp.size) % 3 != 0 for grp in groups})
    small = compact(model, shape, mask)
    save_compact(
        small, tmp_path / "c.safetensors", {"model": "resnet20", "input_shape": list(shape), "num_classes": 10}
    )
    back, recipe = load_compact(tmp_path / "c.safetensors")
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.equal(back(x), small(x))
    assert recipe["widths"]["conv"] == [10, 3]
    plain = load_file(str(tmp_path / "c.safetensors"))  # plain safetensors, no ticketlab needed to read
    assert plain["conv.weight"].shape == (10, 3, 3, 3)


def test_foreign_files_are_refused_in_one_line(tmp_path):
    save_tensors(tmp_path / "x.safetensors", {"a": torch.zeros(2)})
    with pytest.raises(UserError, match="not a ticketlab"):
        load_compact(tmp_path / "x.safetensors")
    small = compact(build_model("lenet300", (1, 8, 8), 10), (1, 8, 8))
    save_compact(small, tmp_path / "c.safetensors", {"model": "conv2", "input_shape": [1, 8, 8], "num_classes": 10})
    with pytest.raises(UserError, match="does not match"):
        load_compact(tmp_path / "c.safetensors")


def expected_shapes(model, groups, removed):
    """Every parameter's shape once the channels in ``removed`` (group -> set) and their dependants go."""
    shapes = {n: list(p.shape) for n, p in model.named_parameters()}
    for grp in groups:
        for s in grp.slices:
            shapes[s.param][s.dim] -= sum(int(c) in removed[grp.name] for c in s.channel)
    return shapes


@pytest.mark.parametrize("name,shape", ARCHITECTURES)
def test_every_width_of_the_compact_model_and_its_file_match_the_masked_model(name, shape, tmp_path):
    model = randomised(name, shape, seed=3)
    groups = channel_groups(model, shape)
    g = torch.Generator().manual_seed(2)
    keep = {grp.name: torch.rand(grp.size, generator=g) < 0.6 for grp in groups}
    mask = group_mask(model, groups, keep)
    small = compact(model, shape, mask)
    removed = {grp.name: {c for c in range(grp.size) if not keep[grp.name][c]} for grp in groups}
    want = expected_shapes(model, groups, removed)
    assert {n: list(p.shape) for n, p in small.named_parameters()} == want
    for n, m in small.named_modules():  # norm statistics follow their layer's width
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert m.running_mean.shape == m.running_var.shape == m.weight.shape, n
    save_compact(small, tmp_path / "c.safetensors", {"model": name, "input_shape": list(shape), "num_classes": 10})
    back, _ = load_compact(tmp_path / "c.safetensors")
    apply_mask_(model, mask)
    x = torch.randn(3, *shape, generator=g)
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(small(x), ref, atol=1e-5) and torch.allclose(back(x), ref, atol=1e-5)


def test_a_residual_channel_dead_in_some_producers_only_is_kept():
    shape = (3, 16, 16)
    model = randomised("resnet20", shape)
    groups = {grp.name: grp for grp in channel_groups(model, shape)}
    stream = groups["conv"]  # stem + blocks 0-2's second convs, added together
    with torch.no_grad():  # the stem produces exactly zero on channel 3 ...
        model.conv.weight[3] = 0
        model.bn.weight[3] = 0
        model.bn.bias[3] = 0
    from ticketlab.structured import dead_channels

    assert not dead_channels(model, list(groups.values()))["conv"][3]  # ... but block 0 still adds to it
    small = compact(model, shape)
    assert small.conv.out_channels == stream.size == 16
    for b in range(3):  # ... and once every producer is zero there, it goes
        with torch.no_grad():
            model.blocks[b].conv2.weight[3] = 0
            model.blocks[b].bn2.weight[3] = 0
            model.blocks[b].bn2.bias[3] = 0
        dead = dead_channels(model, list(groups.values()))["conv"]
        assert bool(dead[3]) == (b == 2) and int(dead.sum()) == int(b == 2)
    small = compact(model, shape)
    assert small.conv.out_channels == 15 and small.blocks[3].conv1.in_channels == 15
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5)


def test_unstructured_zeros_remove_only_dead_neurons():
    model = build_model("lenet300", (1, 8, 8), 10, seed=0)
    mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    mask["1.weight"][5] = False  # neuron 5 of the first layer produces only its bias ...
    mask["3.weight"][:, 9] = False  # ... neuron 9 of it is read by nobody
    mask["1.weight"][7, :10] = False  # a partly pruned neuron stays
    with torch.no_grad():
        model[1].bias[5] = 0
    small = compact(model, (1, 8, 8), mask)
    assert widths(small) == {"1": [298, 64], "3": [100, 298], "5": [10, 100]}


def test_corrupt_or_mismatched_compact_files_are_refused_in_one_line(tmp_path):
    from safetensors.torch import save_file

    small = compact(build_model("conv2", (1, 8, 8), 10), (1, 8, 8))
    recipe = {"model": "conv2", "input_shape": [1, 8, 8], "num_classes": 10}
    save_compact(small, tmp_path / "c.safetensors", recipe)
    tensors = load_file(str(tmp_path / "c.safetensors"))
    meta = json.dumps({"format": "ticketlab-compact-v1", "recipe": {**recipe, "widths": widths(small)}})
    del tensors["0.bias"]  # a tensor missing: not silently left at its initial value
    save_file(tensors, str(tmp_path / "missing.safetensors"), metadata={"ticketlab": meta})
    with pytest.raises(UserError, match="does not match model 'conv2'"):
        load_compact(tmp_path / "missing.safetensors")
    save_file(
        load_file(str(tmp_path / "c.safetensors")),
        str(tmp_path / "sparse.safetensors"),
        metadata={"ticketlab": meta.replace("compact-v1", "sparse-v1")},
    )
    with pytest.raises(
        UserError,
        match=r"is not a ticketlab compact export \(corrupt or foreign file\); export it "
        r"again with ticketlab export",
    ):
        load_compact(tmp_path / "sparse.safetensors")
    unknown = json.dumps({"format": "ticketlab-compact-v1", "recipe": {**recipe, "model": "nope", "widths": {}}})
    save_file(
        load_file(str(tmp_path / "c.safetensors")), str(tmp_path / "u.safetensors"), metadata={"ticketlab": unknown}
    )
    with pytest.raises(UserError, match="the export needs model 'nope', which this ticketlab does not have"):
        load_compact(tmp_path / "u.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(UserError, match="not a ticketlab compact export"):
        load_compact(tmp_path / "junk.safetensors")


def test_compact_model_is_a_cpu_eval_copy_that_trains_and_keeps_layer_settings():
    model = randomised("conv2", (1, 8, 8))
    model.train()
    small = compact(model, (1, 8, 8))
    assert model.training and not small.training and small is not model
    assert all(p.requires_grad and p.device.type == "cpu" for p in small.parameters())
    from ticketlab.deploy.compact import build_compact

    rebuilt = build_compact(
        {"model": "conv2", "input_shape": [1, 8, 8], "num_classes": 10, "widths": {"0": [5, 1], "2": [64, 5]}}
    )
    assert rebuilt[0].out_channels == 5 and rebuilt[0].padding == (1, 1) and rebuilt[0].bias is not None
    assert rebuilt[2].in_channels == 5 and rebuilt[2].kernel_size == (3, 3)
    bn = build_compact({"model": "conv2bn", "input_shape": [1, 8, 8], "num_classes": 10, "widths": {"1": [7]}})[1]
    assert bn.num_features == 7 and bn.affine and bn.track_running_stats and bn.momentum == 0.1
    fc = build_compact({"model": "lenet300", "input_shape": [1, 4, 4], "num_classes": 10, "widths": {"1": [30, 16]}})[1]
    assert (fc.out_features, fc.in_features) == (30, 16) and fc.bias is not None
    res = build_compact(
        {
            "model": "resnet20",
            "input_shape": [3, 8, 8],
            "num_classes": 10,
            "widths": {"blocks.3.conv1": [20, 16], "blocks.3.shortcut.0": [30, 16]},
        }
    )
    assert res.blocks[3].conv1.stride == (2, 2) and res.blocks[3].conv1.bias is None
    assert res.blocks[3].shortcut[0].stride == (2, 2) and res.blocks[3].shortcut[0].out_channels == 30


def test_a_group_with_every_channel_dead_keeps_one_and_later_groups_still_compact():
    model = randomised("conv4", (3, 16, 16))
    groups = channel_groups(model, (3, 16, 16))
    keep = {g.name: torch.ones(g.size, dtype=torch.bool) for g in groups}  # the first group intact ...
    keep["2"] = torch.arange(64) % 4 != 0  # ... the second conv loses a quarter
    keep["10.3"] = torch.arange(256) < 100  # ... and the FC before the classifier 156
    small = compact(model, (3, 16, 16), group_mask(model, groups, keep))
    w = widths(small)
    assert w["0"] == [64, 3] and w["2"] == [48, 64] and w["5"] == [128, 48] and w["10.3"] == [100, 256]
    assert w["10.5"] == [10, 100]
    # every channel of the last hidden layer removed: one (zero) channel stays, and the layer before it, which
    # nothing reads any more, is dead too (one pass: its own inputs are still read, so the convs stay)
    keep = {g.name: torch.ones(g.size, dtype=torch.bool) for g in groups}
    keep["10.3"] = torch.zeros(256, dtype=torch.bool)
    mask = group_mask(model, groups, keep)
    small = compact(model, (3, 16, 16), mask)
    assert widths(small) == {
        "0": [64, 3],
        "2": [64, 64],
        "5": [128, 64],
        "7": [128, 128],
        "10.1": [1, 2048],
        "10.3": [1, 1],
        "10.5": [10, 1],
    }
    apply_mask_(model, mask)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5)


def test_a_compaction_that_would_change_the_outputs_keeps_the_masked_model():
    """Torch-Pruning mishandles attention heads (a ViT's qkv groups): the check catches it and falls back."""
    import warnings

    model = build_model("vit", (3, 32, 32), 10).eval()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        small = compact(model, (3, 32, 32))
    assert any("kept uncompacted" in str(x.message) for x in w)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-6)
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in model.parameters())


def test_constant_neurons_are_folded_into_the_next_bias_and_dropped():
    from ticketlab.deploy.compact import fold_constant_neurons_

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
        model[0].bias.copy_(torch.tensor([0.5, 2.0, -1.0]))  # neuron 1: relu(2) = 2 always; neuron 2: relu(-1) = 0
        model[2].weight.copy_(torch.tensor([[1.0, 3, 5], [2, 4, 6]]))
        model[2].bias.copy_(torch.tensor([0.25, -0.25]))
    x = torch.randn(7, 4)
    with torch.no_grad():
        ref = model(x)
    work = nn.Sequential(*[m for m in __import__("copy").deepcopy(model)]).eval()
    assert fold_constant_neurons_(work) == 2
    # hand-worked: next bias += W[:, 1] * 2 + W[:, 2] * 0 = [6, 8]
    assert torch.equal(work[2].bias, torch.tensor([6.25, 7.75]))
    assert torch.equal(work[2].weight[:, 1:], torch.zeros(2, 2)) and torch.equal(
        work[0].bias, torch.tensor([0.5, 0, 0])
    )
    with torch.no_grad():
        assert torch.allclose(work(x), ref, atol=1e-6)
    small = compact(model, (4,))
    assert widths(small)["0"] == [1, 4] and widths(small)["2"] == [2, 1]  # both constant neurons gone
    with torch.no_grad():
        assert torch.allclose(small(x), ref, atol=1e-6)
