import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab.dst as dst
from ticketlab.dst.edst import edst_phases
from ticketlab.errors import UserError


def make(total=90, **kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 40), nn.ReLU(), nn.Linear(40, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt, dst.make("edst", model, opt, density=0.2, total_steps=total, delta_t=10, **kw)


def test_phases_split_after_exploration_and_the_last_absorbs_the_remainder():
    assert edst_phases(100, 3, 0.3) == ([30, 53, 76], [53, 76, 100])


def test_learning_rate_restarts_each_refinement_phase():
    model, opt, t = make(total=90, members=3, explore_fraction=1 / 3, lr_drop=0.1)
    lrs = []
    g = torch.Generator().manual_seed(0)
    for _ in range(90):
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(8, 1, 16, generator=g)), torch.randint(0, 10, (8,), generator=g)).backward()
        opt.step()
        t.step()
    assert lrs[:30] == [0.1] * 30
    for start in (30, 50, 70):
        assert lrs[start : start + 10] == pytest.approx([0.01] * 10)
        assert lrs[start + 10 : start + 20] == pytest.approx([0.001] * 10)


def test_each_phase_opens_with_a_large_prune_and_regrow():
    model, opt, t = make(total=90, members=3, large_drop=0.8, drop_fraction=0.1)
    sizes = {}
    real = t.update

    def spy(step, fraction):
        sizes[step] = fraction
        real(step, fraction)

    t.update = spy
    for _ in range(90):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(8, 1, 16)), torch.randint(0, 10, (8,))).backward()
        opt.step()
        t.step()
    assert {s: f for s, f in sizes.items() if f == 0.8} == {30: 0.8, 50: 0.8, 70: 0.8}
    assert sizes[10] == pytest.approx(0.1) and sizes[40] == pytest.approx(0.1)
    assert t.member_ends == [50, 70, 90]


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"members": 0}, "--members"),
        ({"large_drop": 1.0}, "--large-drop"),
        ({"grow": "cosine"}, "EDST growth"),
        ({"members": 60}, "too few"),
    ],
)
def test_bad_settings(kw, msg):
    with pytest.raises(UserError, match=msg):
        make(**kw)
