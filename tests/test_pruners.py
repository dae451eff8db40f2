import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import UserError
from ticketlab.pruners import PRUNERS, prune_at_init
from ticketlab.sparse import density, layer_densities


def two_layer():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))


NAMES = ["0.weight", "1.weight"]


def test_synflow_scores_of_a_two_layer_linear_net_by_hand():
    m = two_layer()
    W1, W2 = m[0].weight.detach().clone(), m[1].weight.detach().clone()
    s = PRUNERS.get("synflow")(m, NAMES, [(torch.zeros(1, 3), None)], None)
    # R = 1^T |W2| |W1| 1:  dR/dW1_ij = sum_k |W2_ki|;  dR/dW2_ki = sum_j |W1_ij|
    assert torch.allclose(s["0.weight"], W1.abs() * W2.abs().sum(0)[:, None], rtol=1e-6)
    assert torch.allclose(s["1.weight"], W2.abs() * W1.abs().sum(1)[None, :], rtol=1e-6)
    assert torch.equal(m[0].weight, W1) and m[0].weight.dtype == torch.float32  # signs and dtype restored


def test_snip_is_abs_weight_times_gradient():
    m = two_layer()
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    s = PRUNERS.get("snip")(m, NAMES, [(x, y)], None)
    loss = F.cross_entropy(m(x), y)
    g1 = torch.autograd.grad(loss, m[0].weight)[0]
    assert torch.allclose(s["0.weight"], (m[0].weight * g1).abs().detach())


def test_grasp_is_weight_times_hessian_gradient_product():
    m = two_layer()
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    s = PRUNERS.get("grasp")(m, NAMES, [(x, y)], None)
    w0 = torch.cat([m[0].weight.detach().flatten(), m[1].weight.detach().flatten()])

    def loss_of(w):
        W1, W2 = w[:12].view(4, 3), w[12:].view(2, 4)
        return F.cross_entropy((x @ W1.T @ W2.T) / 200.0, y)

    H = torch.autograd.functional.hessian(loss_of, w0)
    g = torch.autograd.functional.jacobian(loss_of, w0)
    expected = w0 * (H @ g)
    got = torch.cat([s["0.weight"].flatten(), s["1.weight"].flatten()])
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("method", ["random", "magnitude", "snip", "grasp", "synflow"])
def test_exact_density_and_weights_left_intact(method):
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    batches = [(torch.randn(20, 16), torch.randint(0, 10, (20,)))]
    mask = prune_at_init(
        m,
        ["1.weight", "3.weight"],
        method,
        0.1,
        batches,
        torch.Generator().manual_seed(0),
        rounds=5 if method == "synflow" else None,
    )
    assert sum(int(v.sum()) for v in mask.values()) == round(0.1 * (16 * 32 + 32 * 10))
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


def test_layerwise_scope_follows_the_distribution():
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    batches = [(torch.randn(8, 16), torch.randint(0, 10, (8,)))]
    mask = prune_at_init(
        m, ["1.weight", "3.weight"], "snip", 0.25, batches, torch.Generator().manual_seed(0), scope="layerwise"
    )
    assert layer_densities(mask) == {"1.weight": 0.25, "3.weight": 0.25}


def test_iterative_synflow_avoids_layer_collapse_where_one_shot_magnitude_does_not():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    with torch.no_grad():
        m[5].weight.mul_(0.01)  # a layer of small weights: global magnitude pruning removes it entirely
    names = ["1.weight", "3.weight", "5.weight"]
    batches = [(torch.randn(4, 64), torch.randint(0, 2, (4,)))]
    mag = prune_at_init(m, names, "magnitude", 0.005, batches, torch.Generator().manual_seed(0))
    syn = prune_at_init(m, names, "synflow", 0.005, batches, torch.Generator().manual_seed(0))
    assert int(mag["5.weight"].sum()) == 0
    assert all(int(v.sum()) > 0 for v in syn.values()) and density(syn) == pytest.approx(0.005, abs=1e-4)


def test_unknown_pruner_and_bad_values():
    m = two_layer()
    g = torch.Generator()
    with pytest.raises(UserError, match="unknown pruner"):
        prune_at_init(m, NAMES, "obd", 0.5, [], g)
    with pytest.raises(UserError, match="unknown scope"):
        prune_at_init(m, NAMES, "random", 0.5, [], g, scope="local")
    with pytest.raises(UserError, match="density must be in"):
        prune_at_init(m, NAMES, "random", 0.0, [], g)
