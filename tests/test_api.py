"""ticketlab.prune and ticketlab.sparse_training: the one-call API, on tiny hand-worked models."""

import pytest
import torch
from torch import nn

import ticketlab
from ticketlab.errors import UserError


def two_layers():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.1, -0.9], [0.5, 0.2]]))
        net[2].weight.copy_(torch.tensor([[0.3, -0.05]]))
    return net


def test_layerwise_magnitude_keeps_the_largest_of_each_layer_and_zeroes_the_rest():
    net = two_layers()
    masks = ticketlab.prune(net, density=0.5)
    assert set(masks) == {"0.weight", "2.weight"}  # named, biases never pruned
    assert masks["0.weight"].tolist() == [[False, True], [True, False]]  # 0.9 and 0.5 of four
    assert masks["2.weight"].tolist() == [[True, False]]  # 0.3 of two
    assert net[0].weight.tolist() == [[0.0, pytest.approx(-0.9)], [pytest.approx(0.5), 0.0]]
    assert net[2].weight.tolist() == [[pytest.approx(0.3), 0.0]]


def test_global_scope_ranks_all_layers_together():
    net = two_layers()
    masks = ticketlab.prune(net, density=0.5, scope="global")  # 3 of 6: 0.9, 0.5, 0.3
    assert masks["0.weight"].tolist() == [[False, True], [True, False]]
    assert masks["2.weight"].tolist() == [[True, False]]
    masks = ticketlab.prune(two_layers(), density=2 / 6, scope="global")  # 2 of 6: both from the first layer
    assert int(masks["0.weight"].sum()) == 2 and int(masks["2.weight"].sum()) == 0


def test_density_is_the_fraction_kept_exactly():
    net = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10))
    masks = ticketlab.prune(net, density=0.1, method="random", seed=3)
    assert [int(m.sum()) for m in masks.values()] == [60, 20]
    again = ticketlab.prune(nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10)), 0.1, "random", seed=3)
    assert all(torch.equal(masks[n], again[n]) for n in masks)  # same seed, same masks


def test_with_an_optimizer_pruned_weights_stay_zero_through_adamw_training():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=0.1)
    masks = ticketlab.prune(net, density=0.25, optimizer=opt)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    for n, p in net.named_parameters():
        if n in masks:
            assert int((p[~masks[n]] != 0).sum()) == 0 and int((p[masks[n]] != 0).sum()) > 0


def test_data_scored_pruners_take_a_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    batch = (torch.randn(16, 8), torch.randint(0, 3, (16,)))
    with pytest.raises(UserError, match="batch="):
        ticketlab.prune(net, 0.5, "snip")
    masks = ticketlab.prune(net, 0.5, "snip", batch=batch)
    assert [int(m.sum()) for m in masks.values()] == [64, 24]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"density": 0.0}, r"\(0, 1\]"),
        ({"density": 1.5}, r"\(0, 1\]"),
        ({"density": float("nan")}, "number"),
        ({"density": True}, "number"),
        ({"density": 0.5, "method": "magnitud"}, "magnitude"),
        ({"density": 0.5, "scope": "per-layer"}, "layerwise"),
        ({"density": 0.5, "names": ["9.weight"]}, "no parameters named"),
    ],
)
def test_bad_arguments_are_refused_and_the_model_is_untouched(kwargs, match):
    net = two_layers()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(UserError, match=match):
        ticketlab.prune(net, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_sparse_training_gives_named_masks_at_the_density():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 5))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    t = ticketlab.sparse_training(net, opt, "rigl", 0.2, total_steps=10, delta_t=2, distribution="uniform")
    assert list(t.masks) == ["0.weight", "2.weight"]
    assert [int(m.sum()) for m in t.masks.values()] == [80, 20]
    erk = ticketlab.sparse_training(net, opt, "set", 0.2, total_steps=10)  # ERK by default: 100 of 500 in all
    assert sum(int(m.sum()) for m in erk.masks.values()) == 100
    assert all(t.masks[n] is m for n, m in zip(t.names, t.mask_list))
    with pytest.raises(UserError, match="total_steps"):
        ticketlab.sparse_training(net, opt, "rigl", 0.2, total_steps=0)


def test_importing_ticketlab_does_not_import_torch_until_the_api_is_used():
    import subprocess
    import sys

    code = "import sys, ticketlab; assert 'torch' not in sys.modules; ticketlab.prune; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


PUBLIC = ["api", "sparse", "data", "models", "train", "lottery", "pruners", "dst", "robust", "verify", "certsparse",
          "runs", "attacks", "metrics", "flops"]  # fmt: skip


@pytest.mark.parametrize("module", PUBLIC)
def test_every_public_function_and_class_has_a_docstring(module):
    """What the API reference (docs/api.md, from the docstrings) shows: a dataclass's generated ``Name(...)``
    signature does not count."""
    import importlib
    import inspect

    mod = importlib.import_module(f"ticketlab.{module}")
    names = getattr(mod, "__all__", None) or [
        n for n, v in vars(mod).items() if not n.startswith("_") and getattr(v, "__module__", "") == mod.__name__
    ]
    missing = []
    for n in names:
        v = getattr(mod, n)
        if inspect.isfunction(v) or inspect.isclass(v):
            doc = (v.__doc__ or "").strip()
            if not doc or (inspect.isclass(v) and doc.startswith(f"{v.__name__}(")):
                missing.append(n)
    assert missing == [], f"ticketlab.{module}: no docstring for {missing}"
