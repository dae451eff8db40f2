"""GMP (Zhu & Gupta 2017) as a sparse trainer: the cubic schedule's values, monotone exact pruning, never
regrowing, dense FLOPs at first."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab.dst as dst
from ticketlab.dst.gmp import cubic_density
from ticketlab.dst.runner import DSTConfig, run_dst
from ticketlab.errors import UserError
from ticketlab.train import TrainConfig


def test_cubic_schedule_values():
    """d_f = 0.1, start 10, end 50: at t = 30 (halfway) d = 0.1 + 0.9 * 0.5^3 = 0.2125."""
    assert cubic_density(5, 10, 50, 0.1) == 1.0
    assert cubic_density(10, 10, 50, 0.1) == 1.0
    assert cubic_density(30, 10, 50, 0.1) == pytest.approx(0.2125)
    assert cubic_density(40, 10, 50, 0.1) == pytest.approx(0.1 + 0.9 * 0.25**3)
    assert cubic_density(50, 10, 50, 0.1) == 0.1 == cubic_density(99, 10, 50, 0.1)


@pytest.mark.parametrize("distribution", ["uniform", "global"])
def test_gmp_prunes_monotonically_to_the_exact_density_and_never_regrows(distribution):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    t = dst.make(
        "gmp",
        model,
        opt,
        density=0.2,
        distribution=distribution,
        total_steps=100,
        delta_t=10,
        start_fraction=0.1,
        end_fraction=0.5,
        input_shape=(16,),
    )
    g = torch.Generator().manual_seed(0)
    prev = [m.clone() for m in t.mask_list]
    kept = []
    for _ in range(100):
        x, y = torch.randn(8, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        t.step()
        assert all((m <= p).all() for m, p in zip(t.mask_list, prev))  # never regrows
        for p, m in zip(t.params, t.mask_list):
            assert torch.count_nonzero(p[~m]) == 0
        prev = [m.clone() for m in t.mask_list]
        kept.append(sum(int(m.sum()) for m in t.mask_list))
    n = 16 * 32 + 32 * 10
    assert kept[8] == n  # dense until step 10
    assert kept[29] == pytest.approx(n * cubic_density(30, 10, 50, 0.2), abs=2)
    assert kept[-1] == round(0.2 * n) and kept[49] == kept[-1]
    if distribution == "uniform":
        assert [int(m.sum()) for m in t.mask_list] == [round(0.2 * 512), round(0.2 * 320)]


def test_gmp_run_reports_flops_between_sparse_and_dense(tmp_path):
    cfg = DSTConfig(
        dataset="digits",
        method="gmp",
        density=0.1,
        delta_t=10,
        train=TrainConfig(iterations=60, eval_every=20, batch_size=60),
    )
    s = run_dst(cfg, tmp_path / "g", quiet=True)
    assert s["density"] == pytest.approx(0.1, abs=1e-4)
    f = s["flops"]
    assert 0.1 * f["training_dense"] < f["training"] < f["training_dense"]
    with pytest.raises(UserError, match="gmp prunes from --gmp-start"):
        DSTConfig(method="gmp", gmp_start=0.8).validate()
    assert "gmp_start" not in DSTConfig(method="rigl").to_dict()


def gmp(model, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    args = dict(density=0.2, total_steps=100, delta_t=10, start_fraction=0.1, end_fraction=0.5, input_shape=(16,))
    return dst.make("gmp", model, opt, **(args | kw))


def two_layers():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))


def test_updates_come_every_delta_t_from_start_and_at_the_end():
    t = gmp(two_layers(), start_fraction=0.12, end_fraction=0.47, delta_t=10)
    assert (t.start, t.end) == (12, 47)  # rounded fractions of 100 steps
    assert [s for s in range(100) if t.is_update(s)] == [12, 22, 32, 42, 47]
    assert t.density_at(11) == 1.0 and t.density_at(47) == 0.2 and t.density_at(80) == 0.2


def test_the_net_starts_dense_and_each_update_lands_on_the_schedules_count():
    model = two_layers()
    t = gmp(model)
    assert all(m.all() for m in t.mask_list)
    t.update(30, 0.0)
    d = cubic_density(30, 10, 50, 0.2)
    assert [int(m.sum()) for m in t.mask_list] == [round(d * 512), round(d * 320)]
    kept_before = [m.clone() for m in t.mask_list]
    t.update(40, 0.0)
    assert all((m <= k).all() for m, k in zip(t.mask_list, kept_before))  # only active weights compete


def test_each_update_keeps_the_largest_magnitudes_of_the_active_weights():
    model = two_layers()
    t = gmp(model)
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(512, dtype=torch.float32).view(32, 16) - 256)  # |w| known
    t.update(50, 0.0)  # final density: 102 of 512 kept in layer 0
    w = model[0].weight.detach().abs().flatten()
    kept = t.mask_list[0].flatten()
    assert int(kept.sum()) == round(0.2 * 512) and w[kept].min() >= w[~kept].max()


def test_global_gmp_ranks_every_layer_together():
    model = two_layers()
    t = gmp(model, distribution="global")
    with torch.no_grad():
        model[0].weight.fill_(10.0)  # layer 0's weights all larger than layer 1's
        model[2].weight.uniform_(-1, 1)
    t.update(50, 0.0)
    n = round(0.2 * (512 + 320))
    assert int(t.mask_list[0].sum()) == min(512, n) and int(t.mask_list[1].sum()) == n - min(512, n)


def test_er_gmp_gives_layers_their_er_shares():
    from ticketlab.sparse.distributions import layer_counts

    t = gmp(two_layers(), distribution="er")
    t.update(50, 0.0)
    want = layer_counts({"0.weight": (32, 16), "2.weight": (10, 32)}, 0.2, "er")
    assert [int(m.sum()) for m in t.mask_list] == [want["0.weight"], want["2.weight"]]
    assert int(t.mask_list[0].sum()) != round(0.2 * 512)  # not uniform


def test_an_empty_window_jumps_to_the_final_density():
    assert cubic_density(10, 10, 10, 0.3) == 0.3 and cubic_density(9, 10, 10, 0.3) == 1.0
    assert cubic_density(12, 10, 5, 0.3) == 0.3


def test_ties_among_equal_magnitudes_are_broken_by_the_seeded_generator_not_the_global_one():
    def pruned(seed, global_seed):
        model = two_layers()
        t = gmp(model, seed=seed)
        with torch.no_grad():
            model[0].weight.fill_(0.5)  # every weight of layer 0 tied
        torch.manual_seed(global_seed)
        t.update(50, 0.0)
        return t.mask_list[0].clone()

    a = pruned(0, 0)
    assert int(a.sum()) == round(0.2 * 512)
    assert torch.equal(a, pruned(0, 123))  # the global RNG plays no part
    assert not torch.equal(a, pruned(1, 0))  # the run's seed does


def test_global_ties_are_broken_by_the_seeded_generator_not_the_global_one():
    def pruned(seed, global_seed):
        model = two_layers()
        t = gmp(model, seed=seed, distribution="global")
        with torch.no_grad():
            for p in (model[0].weight, model[2].weight):
                p.fill_(0.5)  # every prunable weight tied
        torch.manual_seed(global_seed)
        t.update(50, 0.0)
        return torch.cat([m.flatten() for m in t.mask_list]).clone()

    a = pruned(0, 0)
    assert int(a.sum()) == round(0.2 * (512 + 320))
    assert torch.equal(a, pruned(0, 123))  # the global RNG plays no part
    assert not torch.equal(a, pruned(1, 0))  # the run's seed does


def test_the_defaults_prune_to_a_tenth_from_a_tenth_of_training():
    model = two_layers()
    t = dst.make("gmp", model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=100, input_shape=(16,))
    assert t.start == 10 and t.end == 75  # start_fraction 0.1, end_fraction 0.75
    assert t.density_at(9) == 1.0 and t.density_at(75) == pytest.approx(0.1)


def test_the_tie_breaks_are_the_runs_gmp_stream_at_that_step():
    from ticketlab.seeding import generator
    from ticketlab.sparse import global_prune

    model = two_layers()
    t = gmp(model, seed=3, distribution="global")
    with torch.no_grad():
        for p in (model[0].weight, model[2].weight):
            p.fill_(0.5)
    names = ["0.weight", "2.weight"]
    want = global_prune(
        {n: p.detach().abs() for n, p in zip(names, (model[0].weight, model[2].weight))},
        {n: torch.ones_like(p, dtype=torch.bool) for n, p in zip(names, (model[0].weight, model[2].weight))},
        t.density_at(50),
        generator(3, "gmp", 50),
    )
    t.update(50, 0.0)
    assert all(torch.equal(m, want[n]) for n, m in zip(names, t.mask_list))
