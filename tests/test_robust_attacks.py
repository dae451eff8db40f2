"""PGD, FGSM and FGSM-RS worked by hand on linear models whose input gradients are known in closed form:
the step count, the default step size, L-inf and L2 steps and projections, targeted directions, the pixel
clamp, the random starts' distributions, which restart each example keeps, and the accuracy counts."""

import math

import pytest
import torch
from torch import nn

from ticketlab.attacks import _project, _random_delta, from_pixels, to_pixels
from ticketlab.errors import UserError
from ticketlab.robust import AttackConfig, PixelSpace, fgsm, fgsm_rs, pgd, robust_accuracy


class Identity(nn.Module):
    """logits = x: the cross-entropy of class y has input gradient softmax(x) - e_y."""

    def forward(self, x):
        return x.flatten(1)


def ce_sign(x, y):
    return (torch.softmax(x, 1) - torch.eye(x.shape[1], dtype=x.dtype)[y]).sign()


X = torch.tensor([[0.3, 0.2, 0.1]], dtype=torch.float64)
Y = torch.tensor([0])


@pytest.mark.parametrize("steps, moved", [(1, 0.03), (2, 0.06), (3, 0.09), (4, 0.1), (6, 0.1)])
def test_linf_pgd_takes_steps_signed_steps_of_its_size_clamped_to_eps(steps, moved):
    cfg = AttackConfig(eps=0.1, steps=steps, step_size=0.03, random_start=False)
    adv = pgd(Identity(), X, Y, cfg)
    assert torch.allclose(adv - X, moved * ce_sign(X, Y), atol=1e-12)  # the gradient's sign is the same each step


def test_the_default_step_is_2_5_eps_over_the_steps_and_an_explicit_one_wins():
    assert AttackConfig(eps=0.1, steps=4).alpha == pytest.approx(0.0625)
    assert AttackConfig(eps=0.2, steps=10).alpha == pytest.approx(0.05)
    assert AttackConfig(eps=0.1, steps=4, step_size=0.01).alpha == 0.01


def test_an_l2_step_follows_the_normalised_gradient_and_projects_onto_the_ball():
    g = torch.softmax(X, 1) - torch.eye(3, dtype=X.dtype)[Y]
    # each step's gradient changes with x; follow it by hand
    x = X.clone()
    for _ in range(3):
        gr = torch.softmax(x, 1) - torch.eye(3, dtype=X.dtype)[Y]
        x = x + 0.03 * gr / gr.norm()
    adv = pgd(Identity(), X, Y, AttackConfig(eps=0.5, norm="l2", steps=3, step_size=0.03, random_start=False))
    assert torch.allclose(adv, x, atol=1e-12) and (adv - X).norm() < 0.5
    far = pgd(Identity(), X, Y, AttackConfig(eps=0.05, norm="l2", steps=3, step_size=0.04, random_start=False))
    assert math.isclose(float((far - X).norm()), 0.05, rel_tol=1e-9)  # 0.12 along the gradient, cut to eps
    assert float(((far - X) / 0.05 - g / g.norm()).abs().max()) < 0.05  # and still along it


def test_projection_leaves_a_delta_inside_the_ball_alone():
    d = torch.tensor([[0.03, -0.04]], dtype=torch.float64)  # L2 norm 0.05, L-inf 0.04
    assert torch.equal(_project(d, 0.05, "l2"), d) and torch.equal(_project(d, 0.04, "linf"), d)
    assert torch.allclose(_project(d, 0.025, "l2"), d / 2) and torch.allclose(
        _project(d, 0.035, "linf"), torch.tensor([[0.03, -0.035]], dtype=torch.float64)
    )


def test_a_targeted_attack_descends_the_targets_loss():
    target = torch.tensor([2])
    adv = pgd(
        Identity(),
        X,
        Y,
        AttackConfig(eps=0.1, steps=1, step_size=0.05, random_start=False, targeted=True),
        target=target,
    )
    # untargeted would go along sign(p - e_0) = (-, +, +); toward class 2 is -sign(p - e_2) = (-, -, +)
    assert torch.allclose(adv - X, torch.tensor([[-0.05, -0.05, 0.05]], dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="needs target labels"):
        pgd(Identity(), X, Y, AttackConfig(eps=0.1, targeted=True))


def test_every_iterate_is_clamped_to_the_pixel_range():
    x = torch.tensor([[0.02, 0.97, 0.5]], dtype=torch.float64)
    adv = pgd(
        Identity(), x, Y, AttackConfig(eps=0.1, steps=1, step_size=0.1, random_start=False), pixel_range=(0.0, 1.0)
    )
    assert torch.allclose(adv, torch.tensor([[0.0, 1.0, 0.6]], dtype=torch.float64), atol=1e-12)
    # a random start outside the range is clamped before the first gradient is taken
    start = pgd(
        Identity(),
        x,
        Y,
        AttackConfig(eps=0.1, steps=1, step_size=1e-12),
        pixel_range=(0.0, 1.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert start.min() >= 0 and start.max() <= 1


def test_fgsm_is_one_step_of_eps_and_fgsm_rs_starts_at_random_and_steps_1_25_eps():
    assert torch.allclose(fgsm(Identity(), X, Y, 0.07) - X, 0.07 * ce_sign(X, Y), atol=1e-12)
    g = torch.Generator().manual_seed(3)
    u = torch.rand(X.shape, generator=torch.Generator().manual_seed(3), device="cpu").to(X.dtype)
    start = X + (2 * u - 1) * 0.1
    want = X + (start + 0.125 * ce_sign(start, Y) - X).clamp(-0.1, 0.1)
    assert torch.allclose(fgsm_rs(Identity(), X, Y, 0.1, generator=g), want, atol=1e-12)
    want = X + (start + 0.02 * ce_sign(start, Y) - X).clamp(-0.1, 0.1)
    got = fgsm_rs(Identity(), X, Y, 0.1, alpha=0.02, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(got, want, atol=1e-12)


class Bowl(nn.Module):
    """logits (0, -(x - 0.03)^2): the attack on class 0 pulls x toward 0.03, so repeated steps of 0.07 from 0
    would oscillate; one step lands at 0.07."""

    def forward(self, x):
        z = -((x.flatten(1) - 0.03) ** 2) * 100
        return torch.cat([torch.zeros_like(z), z], 1)


def test_fgsm_takes_exactly_one_step_and_clamps_to_the_pixel_range():
    x = torch.zeros(1, 1, dtype=torch.float64)
    assert torch.allclose(fgsm(Bowl(), x, torch.tensor([0]), 0.07), torch.tensor([[0.07]], dtype=torch.float64))
    edge = torch.full((1, 1), 0.98, dtype=torch.float64)
    up = fgsm(
        Identity(),
        torch.cat([edge, torch.zeros(1, 1, dtype=torch.float64)], 1),
        torch.tensor([1]),
        0.07,
        pixel_range=(0.0, 1.0),
    )  # class 1's loss rises as x0 grows: x0 steps up and is clamped at 1
    assert torch.allclose(up, torch.tensor([[1.0, 0.0]], dtype=torch.float64))


def test_linf_random_starts_are_uniform_in_the_cube():
    d = _random_delta(torch.zeros(20000, 3), 0.2, "linf", torch.Generator().manual_seed(0))
    assert d.abs().max() <= 0.2 and d.min() < -0.199 and d.max() > 0.199
    assert abs(float(d.mean())) < 0.003 and abs(float(d.std()) - 0.2 / math.sqrt(3)) < 0.002


def test_l2_random_starts_are_uniform_in_the_ball():
    d = _random_delta(torch.zeros(20000, 1, 2), 0.5, "l2", torch.Generator().manual_seed(0))
    r = d.flatten(1).norm(dim=1) / 0.5
    assert r.max() <= 1 + 1e-6
    # uniform in a disc: (r / eps)^2 is uniform on [0, 1], and every direction is as likely
    area = r**2
    assert abs(float(area.mean()) - 0.5) < 0.01 and abs(float((area < 0.25).float().mean()) - 0.25) < 0.01
    angle = torch.atan2(d[:, 0, 1], d[:, 0, 0])
    assert abs(float((angle > 0).float().mean()) - 0.5) < 0.02 and abs(float(angle.cos().mean())) < 0.02


def test_random_starts_come_from_the_given_generator():
    x = torch.zeros(4, 3)
    a = _random_delta(x, 0.1, "linf", torch.Generator().manual_seed(5))
    assert torch.equal(a, _random_delta(x, 0.1, "linf", torch.Generator().manual_seed(5)))
    assert not torch.equal(a, _random_delta(x, 0.1, "linf", torch.Generator().manual_seed(6)))


class Threshold(nn.Module):
    """Class 1 where the single input is above ``t`` (per example), else class 0; a flat input gradient."""

    def __init__(self, t):
        super().__init__()
        self.t = t

    def forward(self, x):
        z = 1000 * (x.flatten(1) - self.t[:, None])
        return torch.cat([torch.zeros_like(z), z], 1)


def test_each_example_keeps_its_first_successful_restart_else_the_last():
    n, eps, seed = 400, 0.1, 11
    g = torch.Generator().manual_seed(seed)
    deltas = [(2 * torch.rand(n, 1, generator=g) - 1).double() * eps for _ in range(3)]
    d = torch.cat(deltas, 1)  # (n, 3): restart r's start of each example
    # thresholds a little below the middle start: examples differ in which restarts cross them
    t = 0.5 + d.median(1).values - 1e-6
    success = d + 0.5 > t[:, None]
    pattern = {tuple(s.tolist()) for s in success}
    assert {(False, True, True), (True, True, False), (True, False, True)} <= pattern  # the cases that tell apart
    x = torch.full((n, 1), 0.5, dtype=torch.float64)
    adv = pgd(
        Threshold(t),
        x,
        torch.zeros(n, dtype=torch.long),
        AttackConfig(eps=eps, steps=1, step_size=1e-9, restarts=3),
        generator=torch.Generator().manual_seed(seed),
    )
    first = torch.where(success.any(1), success.float().argmax(1), torch.full((n,), 2))
    want = x[:, 0] + d[torch.arange(n), first]
    assert torch.allclose(adv[:, 0], want, atol=1e-8)
    assert not success.all(1).all() and (~success).all(1).sum() == 0  # the median restart always succeeds


def test_with_all_restarts_failing_the_last_restarts_result_is_kept():
    n, eps = 50, 0.1
    g = torch.Generator().manual_seed(2)
    last = [(2 * torch.rand(n, 1, generator=g) - 1).double() * eps for _ in range(2)][-1]
    t = torch.full((n,), 10.0, dtype=torch.float64)  # out of reach: every restart fails
    x = torch.full((n, 1), 0.5, dtype=torch.float64)
    adv = pgd(
        Threshold(t),
        x,
        torch.zeros(n, dtype=torch.long),
        AttackConfig(eps=eps, steps=1, step_size=1e-9, restarts=2),
        generator=torch.Generator().manual_seed(2),
    )
    assert torch.allclose(adv, x + last, atol=1e-8)


def test_a_targeted_restart_succeeds_only_on_the_target():
    n = 300
    g = torch.Generator().manual_seed(4)
    d = torch.cat([(2 * torch.rand(n, 1, generator=g) - 1).double() * 0.1 for _ in range(2)], 1)
    t = torch.where(torch.arange(n) % 2 == 0, 0.5 + d.max(1).values + 1e-6, 0.5 + d.min(1).values - 1e-6)
    x = torch.full((n, 1), 0.5, dtype=torch.float64)
    y = torch.zeros(n, dtype=torch.long)
    target = torch.zeros(n, dtype=torch.long)  # the true class: "success" = staying below the threshold
    adv = pgd(
        Threshold(t),
        x,
        y,
        AttackConfig(eps=0.1, steps=1, step_size=1e-9, restarts=2, targeted=True),
        target=target,
        generator=torch.Generator().manual_seed(4),
    )
    # even examples: both restarts stay below (the target is hit at once: restart 1 kept); odd: both cross, so
    # the target is never hit and the last restart is kept
    want = torch.where(torch.arange(n) % 2 == 0, d[:, 0], d[:, 1])
    assert torch.allclose(adv[:, 0] - 0.5, want, atol=1e-8)


def test_attacks_restore_the_models_mode_even_when_they_fail():
    model = Identity().train()
    pgd(model, X, Y, AttackConfig(eps=0.1, steps=1))
    assert model.training
    model.eval()
    pgd(model, X, Y, AttackConfig(eps=0.1, steps=1))
    assert not model.training

    class Boom(Identity):
        def forward(self, x):
            assert not self.training  # attacked in eval mode
            raise RuntimeError("boom")

    boom = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        pgd(boom, X, Y, AttackConfig(eps=0.1, steps=1))
    assert boom.training


class Data:
    """What robust_accuracy reads of a dataset: test split, standardisation, pixel range."""

    def __init__(self, x, y, mean=None, std=None, pixel_range=None):
        self.x_test, self.y_test, self.mean, self.std, self.pixel_range = x, y, mean, std, pixel_range


def test_robust_accuracy_counts_clean_and_attacked_hits_over_every_batch():
    # 1-D inputs, class 1 above 0.5: examples 0.3 and 0.45 / 0.55 and 0.7; eps 0.1 flips only 0.45 and 0.55
    x = torch.tensor([[0.3], [0.45], [0.55], [0.7], [0.52]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 0])  # the last is misclassified already

    class Pooled(nn.Module):  # a threshold model that takes any batch size (10x: its gradient never rounds to 0)
        def forward(self, x):
            z = 10 * (x.flatten(1) - 0.5)
            return torch.cat([torch.zeros_like(z), z], 1)

    cfg = AttackConfig(eps=0.1, steps=5, random_start=False)
    for batch in (1, 2, 500):
        clean, robust = robust_accuracy(Pooled(), Data(x, y), cfg, batch=batch)
        assert (clean, robust) == (4 / 5, 2 / 5)
    # explicit x and y replace the test split
    assert robust_accuracy(Pooled(), Data(x, y), cfg, x=x[:2], y=y[:2]) == (1.0, 0.5)


def test_robust_accuracy_attacks_in_pixel_units_and_maps_back_for_the_model():
    # pixels p; the model sees (p - 0.5) / 0.25 and predicts class 1 above 0; eps 0.1 in pixels flips 0.45 only
    x_pix = torch.tensor([[[0.45]], [[0.3]]], dtype=torch.float64)
    mean, std = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[0.25]], dtype=torch.float64)
    data = Data(from_pixels(x_pix, Data(None, None, mean, std)), torch.tensor([0, 0]), mean, std, (0.0, 1.0))

    class Sign(nn.Module):
        def forward(self, z):
            z = 10 * z.flatten(1)
            return torch.cat([torch.zeros_like(z), z], 1)

    assert robust_accuracy(Sign(), data, AttackConfig(eps=0.1, steps=3, random_start=False)) == (1.0, 0.5)
    assert torch.allclose(to_pixels(data.x_test, data), x_pix)
    model = Sign().train()
    robust_accuracy(model, data, AttackConfig(eps=0.1, steps=1))
    assert model.training  # mode restored


def test_robust_accuracy_is_seeded():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    x, y = torch.rand(64, 4, dtype=torch.float64), torch.randint(0, 3, (64,))
    cfg = AttackConfig(eps=0.3, steps=1, step_size=1e-3, restarts=1)
    a = robust_accuracy(net, Data(x, y), cfg, seed=1)
    assert a == robust_accuracy(net, Data(x, y), cfg, seed=1)
    runs = {robust_accuracy(net, Data(x, y), cfg, seed=s)[1] for s in range(6)}
    assert len(runs) > 1  # the random starts depend on the seed


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(eps=float("nan")), "--eps must be >= 0"),
        (dict(eps=0.1, norm="l1"), "unknown norm 'l1'; choose one of: linf, l2"),
        (dict(eps=0.1, steps=0), "steps and restarts must be >= 1"),
        (dict(eps=0.1, restarts=0), "steps and restarts must be >= 1"),
        (dict(eps=0.1, step_size=0.0), "--adv-step-size must be > 0, got 0.0"),
        (dict(eps=0.1, step_size=float("nan")), "--adv-step-size must be > 0"),
    ],
)
def test_bad_attack_budgets_are_refused(kw, msg):
    with pytest.raises(UserError, match=msg.replace("(", r"\(")):
        AttackConfig(**kw).validate()


@pytest.mark.parametrize("kw", [dict(eps=0.0), dict(eps=0.1, steps=1, restarts=1, step_size=1e-9)])
def test_edge_budgets_are_accepted(kw):
    AttackConfig(**kw).validate()


def test_pixel_space_standardises_before_the_model():
    model = Identity()
    mean, std = torch.tensor([0.5]), torch.tensor([0.25])
    assert torch.allclose(PixelSpace(model, mean, std)(torch.tensor([[1.0]])), torch.tensor([[2.0]]))


def test_l2_fgsm_steps_eps_along_the_normalised_gradient_not_its_sign():
    """Asked for L2 eps 0.5, the perturbation's L2 norm is 0.5 (an L-inf step of 0.5 on every one of d inputs
    would have norm 0.5 sqrt(d)), in the gradient's direction."""
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    d = fgsm(Identity(), x, y, 0.5, norm="l2") - x
    assert torch.allclose(d.norm(dim=1), torch.full((4,), 0.5, dtype=torch.float64), atol=1e-12)
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(xr, y, reduction="sum").backward()
    g = xr.grad / xr.grad.norm(dim=1, keepdim=True)
    assert torch.allclose(d, 0.5 * g, atol=1e-12)


def test_l2_fgsm_rs_starts_and_stays_inside_the_l2_ball():
    x = torch.zeros(50, 6, dtype=torch.float64)
    y = torch.zeros(50, dtype=torch.long)
    d = fgsm_rs(Identity(), x, y, 0.3, norm="l2", generator=torch.Generator().manual_seed(0)) - x
    assert float(d.norm(dim=1).max()) <= 0.3 + 1e-12 and float(d.abs().max()) > 0.3 / 6**0.5


def _boundary_case():
    """Class 1 iff x0 > 0.5, 1001 points with x0 within 0.05 of it: an L2 attack of eps 0.1 whose step is
    negligible is decided by its random start alone, so robust accuracy reads the draws."""
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
        net.bias.copy_(torch.tensor([0.0, -5.0]))
    x = torch.rand(1001, 2, generator=torch.Generator().manual_seed(42)) * 0.1 + torch.tensor([0.45, 0.0])
    data = Data(x, net(x).argmax(1))
    return net, data, AttackConfig(eps=0.1, norm="l2", steps=1, step_size=1e-9)


def test_robust_accuracy_draws_from_its_own_seed_0_by_default_in_batches_of_500():
    """The same number whatever the global RNG holds; seed 0 and batches of 500 unless told (an L2 start's
    draws depend on the batching), and another seed or batch size gives another number here."""
    net, data, cfg = _boundary_case()
    torch.manual_seed(5)
    first = robust_accuracy(net, data, cfg)
    torch.manual_seed(6)
    assert robust_accuracy(net, data, cfg) == first == robust_accuracy(net, data, cfg, seed=0, batch=500)
    assert robust_accuracy(net, data, cfg, seed=1)[1] != first[1]
    assert robust_accuracy(net, data, cfg, batch=501)[1] != first[1]


def test_robust_accuracy_attacks_inside_the_datas_pixel_range():
    """x0 = 1 exactly, class 0 (logit 10 x0 - 10 ties at 0): beyond 1 it would be class 1, so an attack
    clamped to [0, 1] leaves every point robust, one that is not clamped none."""
    net = nn.Linear(1, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0], [10.0]]))
        net.bias.copy_(torch.tensor([0.0, -10.0]))
    x = torch.ones(4, 1)
    cfg = AttackConfig(eps=0.5, steps=2, random_start=False)
    y = torch.zeros(4, dtype=torch.long)
    assert robust_accuracy(net, Data(x, y, pixel_range=(0.0, 1.0)), cfg) == (1.0, 1.0)
    assert robust_accuracy(net, Data(x, y), cfg) == (1.0, 0.0)


def test_from_pixels_without_statistics_is_the_identity():
    from types import SimpleNamespace

    x = torch.tensor([[0.25, 2.0]])
    assert from_pixels(x, SimpleNamespace(mean=None, std=None)) is x


def test_the_steps_and_restarts_refusal_is_its_whole_message():
    with pytest.raises(UserError, match=r"^attack steps and restarts must be >= 1$"):
        AttackConfig(eps=0.1, restarts=0).validate()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_starts_are_drawn_on_the_cpu_and_land_on_the_inputs_device(norm):
    """The draws are the CPU generator's whatever the default device (the same starts on every device), then
    moved to the inputs' (the meta device standing in for a GPU); an L2 start works for a batch of one."""
    x = torch.zeros(1, 3, dtype=torch.float64)
    want = _random_delta(x, 0.1, norm, torch.Generator().manual_seed(0))
    with torch.device("meta"):
        got = _random_delta(x, 0.1, norm, torch.Generator().manual_seed(0))
    assert torch.equal(got, want) and want.abs().max() > 0
    meta = _random_delta(x.to("meta"), 0.1, norm, torch.Generator().manual_seed(0))
    assert (meta.device.type, meta.dtype, tuple(meta.shape)) == ("meta", torch.float64, (1, 3))


def test_a_targeted_attack_without_targets_is_a_programming_error_saying_so():
    with pytest.raises(ValueError, match=r"^a targeted attack needs target labels$"):
        pgd(Identity(), X, Y, AttackConfig(eps=0.1, targeted=True))
