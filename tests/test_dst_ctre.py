import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab.dst as dst
from ticketlab.dst.ctre import cosine_scores
from ticketlab.errors import UserError
from ticketlab.seeding import generator


def hand_cos(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    nu, nv = math.sqrt(sum(a * a for a in u)), math.sqrt(sum(b * b for b in v))
    return abs(dot) / (nu * nv) if nu > 0 and nv > 0 else 0.0


def scores_after_forward(model, x, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = dst.make("ctre", model, opt, density=0.5, total_steps=100, **kw)
    t._armed = True
    model.train()
    model(x)
    return t, t.grow_scores(1, generator(0, "test"))


def test_linear_scores_match_a_hand_computed_cosine_similarity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(7, 4)
    t, scores = scores_after_forward(model, x)
    with torch.no_grad():
        hidden = F.relu(model[0](x))  # weights already masked by the trainer
        out = torch.softmax(model[2](hidden), dim=1)
    for j in range(3):
        for i in range(4):
            assert scores[0][j, i].item() == pytest.approx(hand_cos(x[:, i].tolist(), hidden[:, j].tolist()), abs=1e-6)
    for j in range(2):
        for i in range(3):
            assert scores[1][j, i].item() == pytest.approx(
                hand_cos(hidden[:, i].tolist(), out[:, j].tolist()), abs=1e-6
            )


def test_conv_scores_use_channel_means_and_are_shared_by_kernel_positions():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4))
    x = torch.randn(6, 2, 5, 5)
    _, scores = scores_after_forward(model, x)
    with torch.no_grad():
        a = x.mean((2, 3))
        h = F.relu(model[0](x)).mean((2, 3))
    assert scores[0].shape == (3, 2, 3, 3)
    for j in range(3):
        for i in range(2):
            want = hand_cos(a[:, i].tolist(), h[:, j].tolist())
            assert torch.allclose(scores[0][j, i], torch.full((3, 3), want), atol=1e-6)


def test_cosine_scores_are_zero_for_a_silent_neuron():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    h = torch.tensor([[3.0], [4.0]])
    s = cosine_scores(a, h)
    assert s[0, 1] == 0 and s[0, 0] == pytest.approx(11 / (math.sqrt(5) * 5))


def test_sim_mode_replaces_just_dropped_links_by_fresh_ones():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = dst.make("ctre", model, opt, density=0.3, total_steps=100, mode="sim")
    old = t.mask_list[0]
    g = generator(0, "x")
    keep = old.clone()
    dropped_idx = old.nonzero()[:5]
    for r, c in dropped_idx.tolist():
        keep[r, c] = False
    scores = torch.rand(10, 10, generator=g)
    scores[~keep & old] = 10.0  # the just-dropped links score best
    grown = t.choose_growth(0, scores, keep, old, 5, g)
    assert int(grown.sum()) == 5
    assert not (grown & old).any() and not (grown & keep).any()
    seq = dst.make("ctre", nn.Sequential(nn.Linear(10, 10)), opt, density=0.3, total_steps=100, mode="seq")
    assert torch.equal(seq.choose_growth(0, scores, keep, old, 5, g), ~keep & old)


def test_seq_mode_switches_to_random_growth_after_patience():
    model = nn.Sequential(nn.Linear(10, 10))
    t = dst.make("ctre", model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=100, mode="seq", patience=2)
    for acc in (0.5, 0.6, 0.6):
        t.observe({"val_acc": acc})
    assert not t.random_growth
    t.observe({"val_acc": 0.55})
    assert t.random_growth


def test_probe_examples_are_run_at_each_update_in_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    probe = torch.randn(50, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = dst.make("ctre", model, opt, density=0.5, total_steps=100, probe=probe, probe_batch=16)
    scores = t.grow_scores(1, generator(0, "t"))
    with torch.no_grad():
        hidden = F.relu(model[0](probe))
    assert scores[0][1, 2].item() == pytest.approx(hand_cos(probe[:, 2].tolist(), hidden[:, 1].tolist()), abs=1e-6)
    assert model.training


def test_bad_mode_is_a_user_error():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(UserError, match="CTRE mode"):
        dst.make("ctre", model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=10, mode="both")


def test_seq_mode_state_survives_a_state_dict_round_trip():
    def make(seed=0):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return dst.make("ctre", model, opt, density=0.3, total_steps=100, mode="seq", patience=2)

    t = make()
    for acc in (0.5, 0.6, 0.55, 0.52):
        t.observe({"val_acc": acc})
    assert t.random_growth and t.best == 0.6
    fresh = make(1)
    fresh.load_state_dict(*t.state_dict())
    assert (fresh.best, fresh.stall, fresh.random_growth) == (t.best, t.stall, t.random_growth)
