import pytest
import torch

from ticketlab.errors import UserError
from ticketlab.models import build_model
from ticketlab.structured import channel_groups
from ticketlab.structured.select import channel_scores, select_channels


def test_threshold_removes_exactly_the_channels_scored_below_it():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(50, generator=g), "b": torch.rand(30, generator=g)}
    keep = select_channels(scores, threshold=0.4)
    for n, s in scores.items():
        assert torch.equal(keep[n], s >= 0.4)


def test_global_sparsity_removes_an_exact_count_of_the_lowest_scores():
    g = torch.Generator().manual_seed(1)
    scores = {"a": torch.rand(40, generator=g), "b": torch.rand(60, generator=g) + 0.3}
    keep = select_channels(scores, sparsity=0.3)
    assert sum(int((~k).sum()) for k in keep.values()) == 30
    removed = torch.cat([scores[n][~keep[n]] for n in scores])
    kept = torch.cat([scores[n][keep[n]] for n in scores])
    assert removed.max() <= kept.min()


def test_layerwise_sparsity_and_channels_already_removed():
    scores = {"a": torch.arange(10.0), "b": torch.arange(20.0)}
    first = select_channels(scores, sparsity=0.5, scope="layerwise")
    assert [int(k.sum()) for k in first.values()] == [5, 10]
    second = select_channels(scores, sparsity=0.2, scope="layerwise", current=first)
    assert [int(k.sum()) for k in second.values()] == [4, 8]
    assert all(not (s & ~f).any() for s, f in zip(second.values(), first.values()))


def test_a_layer_always_keeps_its_best_channel():
    keep = select_channels({"a": torch.tensor([0.1, 0.2, 0.05]), "b": torch.ones(5)}, threshold=0.5)
    assert keep["a"].tolist() == [False, True, False] and keep["b"].all()


def test_scores_bn_scale_and_l1():
    model = build_model("conv2bn", (1, 8, 8), 10)
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(-1, 1, 64))
    groups = channel_groups(model, (1, 8, 8))
    s = channel_scores(model, groups, "bn-scale")
    assert torch.allclose(s["0"], torch.linspace(-1, 1, 64).abs())
    l1 = channel_scores(
        build_model("lenet300", (1, 8, 8), 10), channel_groups(build_model("lenet300", (1, 8, 8), 10), (1, 8, 8)), "l1"
    )
    assert set(l1) == {"1", "3"} and l1["1"].shape == (300,)
    with pytest.raises(UserError, match="bn-scale needs BatchNorm"):
        channel_scores(
            build_model("lenet300", (1, 8, 8), 10),
            channel_groups(build_model("lenet300", (1, 8, 8), 10), (1, 8, 8)),
            "bn-scale",
        )
