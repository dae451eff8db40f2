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
    assert cubic_density(40, 10, 50, 0.1) == pytest.approx(0.1 + 0.9 * 0.25 ** 3)
    assert cubic_density(50, 10, 50, 0.1) == 0.1 == cubic_density(99, 10, 50, 0.1)


@pytest.mark.parametrize("distribution", ["uniform", "global"])
def test_gmp_prunes_monotonically_to_the_exact_density_and_never_regrows(distribution):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    t = dst.make("gmp", model, opt, density=0.2, distribution=distribution, total_steps=100, delta_t=10,
                 start_fraction=0.1, end_fraction=0.5, input_shape=(16,))
    g = torch.Generator().manual_seed(0)
    prev = [m.clone() for m in t.masks]
    kept = []
    for step in range(100):
        x, y = torch.randn(8, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        t.step()
        assert all((m <= p).all() for m, p in zip(t.masks, prev))  # never regrows
        for p, m in zip(t.params, t.masks):
            assert torch.count_nonzero(p[~m]) == 0
        prev = [m.clone() for m in t.masks]
        kept.append(sum(int(m.sum()) for m in t.masks))
    n = 16 * 32 + 32 * 10
    assert kept[8] == n  # dense until step 10
    assert kept[29] == pytest.approx(n * cubic_density(30, 10, 50, 0.2), abs=2)
    assert kept[-1] == round(0.2 * n) and kept[49] == kept[-1]
    if distribution == "uniform":
        assert [int(m.sum()) for m in t.masks] == [round(0.2 * 512), round(0.2 * 320)]


def test_gmp_run_reports_flops_between_sparse_and_dense(tmp_path):
    cfg = DSTConfig(dataset="digits", method="gmp", density=0.1, delta_t=10,
                    train=TrainConfig(iterations=60, eval_every=20, batch_size=60))
    s = run_dst(cfg, tmp_path / "g", quiet=True)
    assert s["density"] == pytest.approx(0.1, abs=1e-4)
    f = s["flops"]
    assert 0.1 * f["training_dense"] < f["training"] < f["training_dense"]
    with pytest.raises(UserError, match="gmp prunes from --gmp-start"):
        DSTConfig(method="gmp", gmp_start=0.8).validate()
    assert "gmp_start" not in DSTConfig(method="rigl").to_dict()
