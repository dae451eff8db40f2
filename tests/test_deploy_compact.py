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

ARCHITECTURES = [("lenet300", (1, 28, 28)), ("mlp1d", (1, 40)), ("cnn1d", (1, 40)), ("conv2", (1, 16, 16)),
                 ("conv4", (3, 16, 16)), ("conv6", (3, 16, 16)), ("conv2bn", (1, 16, 16)),
                 ("conv4bn", (3, 16, 16)), ("conv6bn", (3, 16, 16)), ("vgg16", (3, 16, 16)),
                 ("resnet20", (3, 16, 16))]


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
    save_compact(small, tmp_path / "c.safetensors", {"model": "resnet20", "input_shape": list(shape), "num_classes": 10})
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
