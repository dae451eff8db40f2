"""train.losses: the loop's loss terms come from a registry (objectives replace the cross-entropy, penalties
add to it); a user's term trains through the same loop, and two objectives at once are refused."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import UserError
from ticketlab.train import TrainConfig, train
from ticketlab.train.losses import LOSS_TERMS, LossTerm, build_losses, enabled_terms, register_loss


@pytest.fixture
def term():
    added = []

    def add(t):
        added.append(t.name)
        return register_loss(t)

    yield add
    for name in added:
        LOSS_TERMS._items.pop(name)


def test_the_built_in_terms_are_registered_and_off_by_default():
    assert enabled_terms(TrainConfig()) == []
    assert {"adversarial", "certified", "stability"} <= set(LOSS_TERMS.names())
    on = {t.name for t in enabled_terms(TrainConfig(adv="pgd", adv_eps=0.1, rs_weight=0.01))}
    assert on == {"adversarial", "stability"}
    objective, penalties = build_losses(TrainConfig(rs_weight=0.01), None, 0, 10)
    assert objective is None and len(penalties) == 1


def test_a_penalty_term_is_added_to_the_cross_entropy_in_the_loop(term, tiny_data):
    seen = []

    def build(cfg, data, seed, total):
        def pen(model, x, y, it):
            seen.append(it)
            return 0.0 * sum(p.sum() for p in model.parameters())

        return pen

    term(LossTerm("test-zero-penalty", "penalty", lambda cfg: cfg.lr == 0.0123, build))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    train(net, tiny_data, TrainConfig(iterations=3, eval_every=3, batch_size=8, lr=0.0123), seed=0)
    assert seen == [0, 1, 2]


def test_an_objective_term_replaces_the_cross_entropy(term, tiny_data):
    def build(cfg, data, seed, total):
        return lambda model, x, y, it: F.cross_entropy(model(x), y) * 0.0  # no gradient: nothing moves

    term(LossTerm("test-null-objective", "objective", lambda cfg: cfg.lr == 0.0456, build))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    before = [p.detach().clone() for p in net.parameters()]
    train(
        net,
        tiny_data,
        TrainConfig(iterations=3, eval_every=3, batch_size=8, lr=0.0456, optimizer="sgd", momentum=0.0),
        seed=0,
    )
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_two_objectives_at_once_are_refused(term):
    term(LossTerm("test-a", "objective", lambda cfg: cfg.lr == 0.0789, lambda *a: None))
    term(LossTerm("test-b", "objective", lambda cfg: cfg.lr == 0.0789, lambda *a: None))
    with pytest.raises(UserError, match="test-a, test-b each replace the training loss"):
        build_losses(TrainConfig(lr=0.0789), None, 0, 10)


def test_a_term_of_an_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="kind is one of"):
        register_loss(LossTerm("test-odd", "bonus", lambda cfg: False, lambda *a: None))


def test_the_stability_penalty_is_rs_weight_times_the_rs_loss_of_the_batch():
    from types import SimpleNamespace

    from ticketlab.verify import StabilityLoss

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    data = SimpleNamespace(input_shape=(2,), mean=None, std=None, pixel_range=(0.0, 1.0))
    x, y = torch.rand(4, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    cfg = TrainConfig(rs_weight=0.25, rs_eps=0.1)
    objective, (penalty,) = build_losses(cfg, data, 0, 10)
    want = 0.25 * StabilityLoss(cfg, data)(net, x)
    assert objective is None and want.item() != 0 and torch.equal(penalty(net, x, y, 3), want)
