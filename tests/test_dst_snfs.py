"""SNFS (sparse momentum): momentum of every weight from dense gradients, momentum-based redistribution with
an exact total, growth at the largest momentum."""

import torch
import torch.nn.functional as F
from torch import nn

import ticketlab.dst as dst
from ticketlab.dst.runner import DSTConfig, run_dst
from ticketlab.dst.snfs import allocate
from ticketlab.train import TrainConfig


def test_allocate_splits_by_share_with_an_exact_total_and_caps():
    assert allocate([3.0, 1.0], 8, [100, 100]) == [6, 2]
    assert allocate([0.03, 0.01], 8, [100, 100]) == [6, 2]  # shares summing below 1 (small momenta) too
    assert allocate([3.0, 1.0], 8, [4, 100]) == [4, 4]  # the capped layer's excess goes on
    assert sum(allocate([1.0, 1.0, 1.0], 10, [100] * 3)) == 10  # remainders placed one by one
    assert allocate([0.0, 0.0], 3, [2, 2]) in ([2, 1], [1, 2])


def test_redistribution_follows_mean_momentum_and_growth_the_largest_momentum():
    """Two layers of 16 weights with 8 active each; fraction 0.5 drops 4 + 4 = 8. Layer 0's mean active
    momentum is 3 and layer 1's is 1, so layer 0 regrows 6 and layer 1 regrows 2: 10 and 6 active after."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = dst.make("snfs", model, opt, density=0.5, distribution="uniform", total_steps=100, delta_t=10, input_shape=(4,))
    assert [int(m.sum()) for m in t.mask_list] == [8, 8]
    with torch.no_grad():
        for i, (m, mo) in enumerate(zip(t.mask_list, t._mom)):
            mo.copy_(torch.where(m, torch.full_like(mo, 3.0 if i == 0 else 1.0), torch.zeros_like(mo)))
            # growth candidates: inactive positions get momentum rising with their index
            idx = torch.arange(16, dtype=mo.dtype).view(4, 4) / 100
            mo.add_(torch.where(m, torch.zeros_like(mo), idx))
    before = [m.clone() for m in t.mask_list]
    t.update(10, 0.5)
    assert [int(m.sum()) for m in t.mask_list] == [10, 6]
    grown0 = t.mask_list[0] & ~before[0]
    inactive = (~before[0]).flatten().nonzero().flatten()
    assert set(grown0.flatten().nonzero().flatten().tolist()) <= set(inactive.tolist())
    assert int(grown0.sum()) >= 2  # new positions: the highest-momentum inactive ones
    top = inactive[inactive.argsort(descending=True)][: int(grown0.sum())]
    assert set(grown0.flatten().nonzero().flatten().tolist()) == set(top.tolist())


def test_snfs_keeps_the_total_exact_and_pruned_weights_zero_and_resumes(tmp_path):
    cfg = DSTConfig(
        dataset="digits",
        method="snfs",
        density=0.1,
        delta_t=10,
        train=TrainConfig(iterations=60, eval_every=20, batch_size=60),
    )
    s = run_dst(cfg, tmp_path / "s", quiet=True)
    assert s["density"] == round(0.1 * 50200) / 50200
    f = s["flops"]
    assert f["training"] > 0.1 * f["training_dense"]  # the dense gradient every step


def test_momentum_accumulates_dense_gradients_of_pruned_weights_too():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = dst.make("snfs", model, opt, density=0.25, total_steps=100, delta_t=50, input_shape=(8,))
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    g = model[0].weight.grad.clone()
    opt.step()
    t.step()
    assert torch.allclose(t._mom[0], g)
    assert (t._mom[0][~t.mask_list[0]] != 0).any()


def test_the_momentum_is_saved_and_restored_with_the_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = dst.make("snfs", model, opt, density=0.5, total_steps=100, delta_t=50, input_shape=(8,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(16, 8)), torch.randint(0, 3, (16,))).backward()
        opt.step()
        t.step()
    tensors, meta = t.state_dict()
    assert {k for k in tensors if k.startswith("momentum.")} == {f"momentum.{n}" for n in t.names}
    fresh_model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 3))
    fresh = dst.make(
        "snfs",
        fresh_model,
        torch.optim.SGD(fresh_model.parameters(), lr=0.1),
        density=0.5,
        total_steps=100,
        delta_t=50,
        input_shape=(8,),
    )
    fresh.load_state_dict(tensors, meta)
    assert all(torch.equal(a, b) for a, b in zip(fresh._mom, t._mom)) and fresh._mom[0].abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(fresh.mask_list, t.mask_list))


def test_momentum_decays_by_mu_before_each_gradient_is_added():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    t = dst.make("snfs", model, opt, density=1.0, total_steps=100, delta_t=50, input_shape=(3,), momentum=0.5)
    grads = []
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(4, 3)), torch.randint(0, 2, (4,))).backward()
        grads.append(model[0].weight.grad.clone())
        opt.step()
        t.step()
    assert torch.allclose(t._mom[0], 0.25 * grads[0] + 0.5 * grads[1] + grads[2])


def test_allocate_gives_leftovers_to_the_largest_remainders_then_stops_when_nothing_has_room():
    assert allocate([1.0, 2.0], 4, [10, 10]) == [1, 3]  # 4/3 and 8/3: floors 1 + 2, the last to 8/3's .67
    assert allocate([1.0, 1.0], 5, [1, 1]) == [1, 1]  # no room left for the other 3
    assert allocate([5.0, 1.0, 1.0], 2, [0, 5, 5]) == [0, 1, 1]  # a full layer's share goes to the open ones
    assert allocate([1.0, 1.0, 1.0], 2, [5, 5, 5]) == [1, 1, 0]  # equal remainders: lowest index first
    assert allocate([1.0], 0, [3]) == [0]


def test_ties_in_the_prune_and_the_regrowth_are_broken_by_the_runs_seed():
    def updated(seed, global_seed):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False))
        t = dst.make(
            "snfs",
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            density=0.5,
            distribution="uniform",
            total_steps=100,
            delta_t=10,
            input_shape=(8,),
            seed=seed,
        )
        t.set_masks([torch.arange(64).view(8, 8) % 2 == 0] * 2)  # the same masks whatever the seed drew
        with torch.no_grad():
            for p, m in zip(t.params, t.mask_list):
                p.copy_(m.float())  # every active magnitude tied; zero momentum: every regrowth candidate tied too
        torch.manual_seed(global_seed)
        t.update(10, 0.5)
        return [m.clone() for m in t.mask_list]

    a = updated(0, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, updated(0, 99)))
    assert not all(torch.equal(x, y) for x, y in zip(a, updated(1, 0)))


def test_the_defaults_and_a_given_distribution_reach_the_trainer():
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))

    m = model()
    t = dst.make("snfs", m, torch.optim.SGD(m.parameters(), lr=0.1), total_steps=100, input_shape=(16,))
    assert t.density == 0.1 and t.mu == 0.9 and t.distribution == "erk"
    m = model()
    u = dst.make(
        "snfs", m, torch.optim.SGD(m.parameters(), lr=0.1), distribution="uniform", total_steps=100, input_shape=(16,)
    )
    assert u.distribution == "uniform" and [int(k.sum()) for k in u.mask_list] == [round(0.1 * 512), round(0.1 * 320)]
