"""Adversarial training losses against the papers' algorithms written out here (TRADES as its reference code
does it, Madry et al.'s PGD, Wong et al.'s FGSM-RS): same seeded noise, same modes (attack in eval, loss in
train), so the losses agree to float precision; a BatchNorm model tells the modes apart."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.robust import AdversarialLoss
from ticketlab.robust.training import trades_examples
from ticketlab.seeding import generator
from ticketlab.train import TrainConfig


class Data:
    def __init__(self, mean, std, pixel_range=(0.0, 1.0)):
        self.mean, self.std, self.pixel_range = mean, std, pixel_range


MEAN = torch.tensor([0.4, 0.6], dtype=torch.float64).view(2, 1)
STD = torch.tensor([0.2, 0.3], dtype=torch.float64).view(2, 1)


def net():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    with torch.no_grad():  # running statistics unlike the batch's, so eval and train mode give other outputs
        m[2].running_mean.fill_(0.5)
        m[2].running_var.fill_(3.0)
    return m


def batch():
    g = torch.Generator().manual_seed(1)
    pix = torch.rand(16, 2, 3, generator=g, dtype=torch.float64)
    return (pix - MEAN) / STD, torch.randint(0, 3, (16,), generator=g), pix


def trades_reference(model, x_nat_pix, y, eps, steps, step, beta, g):
    """TRADES as its reference code (yaodongyu/TRADES, trades.py) computes it, in pixel space."""
    f = lambda p: model((p - MEAN) / STD)  # noqa: E731
    model.eval()
    x_adv = x_nat_pix.detach() + 0.001 * torch.randn(x_nat_pix.shape, generator=g).double()
    x_adv = x_adv.clamp(0, 1)  # our code clamps the start too (the reference clamps after each step)
    with torch.no_grad():
        p_nat = F.softmax(f(x_nat_pix), dim=1)
    for _ in range(steps):
        x_adv.requires_grad_()
        loss_kl = F.kl_div(F.log_softmax(f(x_adv), dim=1), p_nat, reduction="sum")
        (grad,) = torch.autograd.grad(loss_kl, [x_adv])
        x_adv = x_adv.detach() + step * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_nat_pix - eps), x_nat_pix + eps).clamp(0.0, 1.0)
    model.train()
    logits = f(x_nat_pix)
    loss_robust = (1.0 / len(y)) * F.kl_div(
        F.log_softmax(f(x_adv.detach()), dim=1), F.softmax(logits, dim=1), reduction="sum"
    )
    return F.cross_entropy(logits, y) + beta * loss_robust


def pgd_reference(model, x_pix, y, eps, steps, step, g, norm="linf"):
    """Madry et al.'s PGD from a uniform start in the L-inf ball (L2: a uniform start in the L2 ball)."""
    f = lambda p: model((p - MEAN) / STD)  # noqa: E731
    model.eval()
    u = torch.rand(x_pix.shape, generator=g).double()
    if norm == "linf":
        delta = (2 * u - 1) * eps
    else:
        d = torch.randn(x_pix.shape, generator=g).double()
        r = u.flatten(1)[:, :1] ** (1.0 / x_pix[0].numel())
        delta = d / d.flatten(1).norm(dim=1).view(-1, 1, 1) * r.view(-1, 1, 1) * eps
    x = (x_pix + delta).clamp(0, 1)
    for _ in range(steps):
        x.requires_grad_()
        (grad,) = torch.autograd.grad(F.cross_entropy(f(x), y), [x])
        with torch.no_grad():
            if norm == "linf":
                x = x_pix + (x + step * grad.sign() - x_pix).clamp(-eps, eps)
            else:
                x = x + step * grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
                d = x - x_pix
                n = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
                x = x_pix + d * torch.clamp(eps / n, max=1.0)
            x = x.clamp(0, 1)
    model.train()
    return F.cross_entropy(f(x.detach()), y)


def loss_of(cfg, model, x, y, it=3, seed=5):
    model.train()
    return AdversarialLoss(cfg, Data(MEAN, STD), seed)(model, x, y, it)


@pytest.mark.parametrize("beta", [0.0, 1.0, 6.0])
def test_trades_loss_is_the_reference_codes(beta):
    x, y, pix = batch()
    cfg = TrainConfig(adv="trades", adv_eps=0.1, adv_steps=3, adv_step_size=0.02, trades_beta=beta)
    got = loss_of(cfg, net(), x, y)
    want = trades_reference(net(), pix, y, 0.1, 3, 0.02, beta, generator(5, "adversarial-training", 3))
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


def test_trades_without_a_step_size_steps_2_5_eps_over_the_steps():
    x, y, pix = batch()
    got = loss_of(TrainConfig(adv="trades", adv_eps=0.1, adv_steps=4), net(), x, y)
    want = trades_reference(net(), pix, y, 0.1, 4, 0.0625, 6.0, generator(5, "adversarial-training", 3))
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


def test_trades_examples_stay_in_the_ball_and_leave_the_mode():
    _, _, pix = batch()
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).double().train()
    adv = trades_examples(model, pix, 0.05, 5, 0.02, (0.0, 1.0), torch.Generator().manual_seed(0))
    assert (adv - pix).abs().max() <= 0.05 + 1e-12 and adv.min() >= 0 and adv.max() <= 1
    assert (adv - pix).abs().max() > 0.04 and model.training and not adv.requires_grad


def test_trades_random_start_is_clipped_to_the_pixel_range():
    """Pixels at 0 and 1 plus TRADES' 0.001 N(0, 1) start: the start itself (0 steps) is already clipped."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).double()
    pix = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]] * 8, dtype=torch.float64)
    start = trades_examples(model, pix, 0.05, 0, 0.02, (0.0, 1.0), torch.Generator().manual_seed(0))
    assert start.min() >= 0 and start.max() <= 1 and not torch.equal(start, pix)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_training_loss_is_madrys_on_the_seeded_start(norm):
    x, y, pix = batch()
    eps = 0.1 if norm == "linf" else 0.5
    cfg = TrainConfig(adv="pgd", adv_eps=eps, adv_steps=3, adv_step_size=eps / 4, adv_norm=norm)
    got = loss_of(cfg, net(), x, y)
    want = pgd_reference(net(), pix, y, eps, 3, eps / 4, generator(5, "adversarial-training", 3), norm)
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


def test_pgd_training_without_a_step_size_steps_2_5_eps_over_the_steps():
    x, y, pix = batch()
    got = loss_of(TrainConfig(adv="pgd", adv_eps=0.1, adv_steps=5), net(), x, y)
    want = pgd_reference(net(), pix, y, 0.1, 5, 0.05, generator(5, "adversarial-training", 3))
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


def test_fgsm_rs_training_takes_one_step_of_1_25_eps_whatever_the_step_count():
    x, y, pix = batch()
    got = loss_of(TrainConfig(adv="fgsm-rs", adv_eps=0.08, adv_steps=7), net(), x, y)
    want = pgd_reference(net(), pix, y, 0.08, 1, 0.1, generator(5, "adversarial-training", 3))
    assert torch.allclose(got, want, atol=1e-10, rtol=0)
    got = loss_of(TrainConfig(adv="fgsm-rs", adv_eps=0.08, adv_step_size=0.05), net(), x, y)
    want = pgd_reference(net(), pix, y, 0.08, 1, 0.05, generator(5, "adversarial-training", 3))
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


def test_the_noise_is_drawn_per_seed_and_iteration():
    x, y, _ = batch()
    cfg = TrainConfig(adv="pgd", adv_eps=0.1, adv_steps=1, adv_step_size=1e-3)
    a = loss_of(cfg, net(), x, y, it=3, seed=5)
    assert torch.equal(a, loss_of(cfg, net(), x, y, it=3, seed=5))
    assert not torch.equal(a, loss_of(cfg, net(), x, y, it=4, seed=5))
    assert not torch.equal(a, loss_of(cfg, net(), x, y, it=3, seed=6))


def test_the_training_loss_has_the_parameter_gradients_of_the_adversarial_cross_entropy_only():
    x, y, pix = batch()
    model = net()
    model.train()
    loss = AdversarialLoss(TrainConfig(adv="pgd", adv_eps=0.1, adv_steps=2), Data(MEAN, STD), 0)(model, x, y, 0)
    loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    ref_model = net()
    pgd_reference(ref_model, pix, y, 0.1, 2, 0.125, generator(0, "adversarial-training", 0)).backward()
    assert all(torch.allclose(a, p.grad, atol=1e-10) for a, p in zip(got, ref_model.parameters()))
