import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab.dst as dst
from ticketlab.dst.acdc import ACDCPhases
from ticketlab.errors import UserError


def test_phases_warm_up_dense_alternate_and_end_sparse():
    p = ACDCPhases(100, warmup_fraction=0.1, phase_fraction=0.1, final_fraction=0.2)
    pattern = "".join("S" if p.sparse_at(c) else "D" for c in range(100))
    assert pattern == "D" * 10 + "S" * 10 + "D" * 10 + "S" * 10 + "D" * 10 + "S" * 10 + "D" * 10 + "S" * 30
    assert p.dense_snapshot_step == 70


def test_dense_phases_train_every_weight_and_sparse_phases_hold_an_exact_global_magnitude_mask():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    t = dst.make(
        "acdc", model, opt, density=0.1, total_steps=100, warmup_fraction=0.1, phase_fraction=0.1, final_fraction=0.2
    )
    n = sum(p.numel() for p in t.params)
    g = torch.Generator().manual_seed(0)
    for step in range(100):
        x, y = torch.randn(32, 1, 16, generator=g), torch.randint(0, 10, (32,), generator=g)
        if step == 10:  # the first compression just happened: the mask is the global top-|w|
            w = torch.cat([p.detach().abs().flatten() for p in t.params])
            kept = torch.cat([m.flatten() for m in t.mask_list])
            assert int(kept.sum()) == round(0.1 * n)
            assert w[kept].min() >= w[~kept].max()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        t.step()
        if t.sparse_phase():
            assert sum(int(m.sum()) for m in t.mask_list) == round(0.1 * n)
            assert all(torch.count_nonzero(p[~m]) == 0 for p, m in zip(t.params, t.mask_list))
            assert all(
                torch.count_nonzero(opt.state[p]["momentum_buffer"][~m]) == 0 for p, m in zip(t.params, t.mask_list)
            )
        else:
            assert all(bool(m.all()) for m in t.mask_list)
    # the last dense phase trained weights that are pruned again at the end
    assert sum(int(m.sum()) for m in t.mask_list) == round(0.1 * n)


def test_flops_count_dense_phases_at_dense_cost():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 20), nn.ReLU(), nn.Linear(20, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    t = dst.make(
        "acdc",
        model,
        opt,
        density=0.25,
        total_steps=20,
        warmup_fraction=0.25,
        phase_fraction=0.25,
        final_fraction=0.25,
        input_shape=(1, 16),
    )
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(4, 1, 16)), torch.randint(0, 10, (4,))).backward()
        opt.step()
        t.step()
    dense, sparse = 2 * 520, 2 * 130  # 16*20 + 20*10 weights, a quarter kept
    assert t.flops_per_example == 10 * 3 * dense + 10 * 3 * sparse


def test_no_alternating_phase_is_a_user_error():
    with pytest.raises(UserError, match="no alternating phases"):
        ACDCPhases(100, warmup_fraction=0.5, phase_fraction=0.1, final_fraction=0.5)
