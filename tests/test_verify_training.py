"""Certified training (IBP, CROWN-IBP): the schedule of the reference code, more verified samples than natural
training, masks exact, settings out of clean runs' configs, bad settings refused in one line."""

import math

import pytest
import torch

from ticketlab.data import load_dataset
from ticketlab.errors import UserError
from ticketlab.models import build_model
from ticketlab.robust import to_pixels
from ticketlab.sparse import Mask
from ticketlab.train import TrainConfig, train
from ticketlab.verify.bounds import crown, ibp, input_box, margin_spec
from ticketlab.verify.graph import to_ops
from ticketlab.verify.training import robust_ce, schedule


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", None, quiet=True)


def test_schedule_holds_eps_at_zero_then_ramps_eps_kappa_and_beta_linearly():
    cfg = TrainConfig(certified="crown-ibp", cert_eps=0.2, cert_start=0.1, cert_ramp=0.5, cert_kappa=0.5)
    assert schedule(cfg, 0, 100) == (0.0, 1.0, 1.0)
    assert schedule(cfg, 10, 100) == (0.0, 1.0, 1.0)
    eps, kappa, beta = schedule(cfg, 35, 100)
    assert eps == pytest.approx(0.1) and kappa == pytest.approx(0.75) and beta == pytest.approx(0.5)
    assert schedule(cfg, 60, 100) == (pytest.approx(0.2), 0.5, 0.0) == schedule(cfg, 99, 100)


def test_robust_cross_entropy_uses_zero_for_the_true_class_and_minus_the_margin_bound_elsewhere():
    lower = torch.tensor([[1.0, -2.0]])  # y = 1: bounds on logit_1 - logit_0 and logit_1 - logit_2
    want = torch.nn.functional.cross_entropy(torch.tensor([[-1.0, 0.0, 2.0]]), torch.tensor([1]))
    assert torch.allclose(robust_ce(lower, torch.tensor([1]), 3), want)


def verified(model, data, eps, method):
    model.eval()
    ops = to_ops(model, data.input_shape, data.mean, data.std)
    lo, hi = input_box(to_pixels(data.x_test, data), eps, data.pixel_range)
    with torch.no_grad():
        return float(method(ops, lo, hi, margin_spec(data.y_test, data.num_classes)).verified().float().mean())


@pytest.mark.slow
def test_certified_training_verifies_more_samples_than_natural_training(digits):
    acc = {}
    for cert in ("none", "ibp", "crown-ibp"):
        model = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
        kw = {} if cert == "none" else {"certified": cert, "cert_eps": 0.05}
        train(model, digits, TrainConfig(iterations=400, batch_size=64, eval_every=400, **kw), seed=0)
        acc[cert] = (verified(model, digits, 0.05, ibp), verified(model, digits, 0.05, crown))
    for cert in ("ibp", "crown-ibp"):  # measured: IBP 0.00 -> 0.83, CROWN 0.76 -> 0.90
        assert acc[cert][0] > acc["none"][0] + 0.5 and acc[cert][1] > acc["none"][1] + 0.05, acc


def test_masks_stay_exact_under_certified_training(digits):
    model = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
    g = torch.Generator().manual_seed(0)
    mask = Mask(
        {
            n: (torch.rand(p.shape, generator=g) < 0.3).float()
            for n, p in model.named_parameters()
            if n.endswith("weight")
        }
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in mask:
                p.mul_(mask[n])
    train(
        model,
        digits,
        TrainConfig(
            iterations=60,
            batch_size=64,
            eval_every=60,
            certified="crown-ibp",
            cert_eps=0.05,
            cert_start=0.0,
            cert_ramp=0.5,
        ),
        mask=mask,
        seed=0,
    )
    for n, p in model.named_parameters():
        if n in mask:
            assert torch.all(p[mask[n] == 0] == 0) and p[mask[n] == 1].abs().sum() > 0


def test_certified_training_is_seeded(digits):
    outs = []
    for _ in range(2):
        model = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
        train(
            model,
            digits,
            TrainConfig(iterations=40, batch_size=64, eval_every=40, certified="ibp", cert_eps=0.05, cert_start=0.0),
            seed=3,
        )
        outs.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(outs[0], outs[1])


def test_certified_settings_stay_out_of_a_clean_runs_config():
    assert "certified" not in TrainConfig().to_dict() and "cert_eps" not in TrainConfig().to_dict()
    d = TrainConfig(certified="ibp", cert_eps=0.1).to_dict()
    assert d["certified"] == "ibp" and d["cert_eps"] == 0.1 and d["cert_ramp"] == 0.61


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"certified": "lp"}, "unknown --certified 'lp'"),
        ({"certified": "ibp"}, "needs --cert-eps > 0"),
        ({"certified": "ibp", "cert_eps": 0.1, "adv": "pgd", "adv_eps": 0.1}, "give --adv or --certified"),
        ({"certified": "ibp", "cert_eps": 0.1, "cert_start": 0.6, "cert_ramp": 0.6}, "sum <= 1"),
        ({"certified": "ibp", "cert_eps": 0.1, "cert_kappa": 1.5}, "--cert-kappa must be in [0, 1]"),
    ],
)
def test_bad_certified_settings_are_user_errors(kw, msg):
    with pytest.raises(UserError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        TrainConfig(**kw).validate()


def test_certified_training_refuses_batch_norm_models(digits):
    model = build_model("conv2bn", digits.input_shape, digits.num_classes, seed=0)
    with pytest.raises(UserError, match="does not support models with BatchNorm") as e:
        train(model, digits, TrainConfig(iterations=2, certified="ibp", cert_eps=0.1), seed=0)
    assert str(e.value).endswith("pick lenet300, mlp1d, cnn-small, conv2/4/6 or cnn1d")


def test_certified_training_flops_count_the_bound_passes():
    assert TrainConfig().passes_per_example() == 3
    assert TrainConfig(certified="ibp", cert_eps=0.1).passes_per_example() == 9
    assert TrainConfig(certified="crown-ibp", cert_eps=0.1).passes_per_example() == 36


# -- the ReLU-stability regulariser (Xiao et al.'s RS loss, CertifiedPruning's rs_reg) -----------------------


def test_stability_loss_of_a_hand_worked_neuron(digits):
    """One hidden neuron z = x_0 - 0.5 over pixel x_0 in [0.2, 1] (eps 0.4 around 0.6): l = -0.3, u = 0.5, so
    the loss is -tanh(1 + l u) = -tanh(0.85)."""
    from types import SimpleNamespace

    from ticketlab.verify.training import StabilityLoss

    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.ReLU(), torch.nn.Linear(1, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        net[0].bias.fill_(-0.5)
    data = SimpleNamespace(input_shape=(2,), mean=None, std=None, pixel_range=(0.0, 1.0))
    rs = StabilityLoss(SimpleNamespace(rs_eps=0.4), data)
    x = torch.tensor([[0.6, 0.5]], dtype=torch.float64)
    assert rs(net, x).item() == pytest.approx(-math.tanh(0.85))
    # the ball is cut to the pixel range: x_0 = 0.8 +- 0.4 is [0.4, 1], so l = -0.1, u = 0.5 (not 0.7)
    assert rs(net, torch.tensor([[0.8, 0.5]], dtype=torch.float64)).item() == pytest.approx(-math.tanh(0.95))


def test_the_stability_regulariser_cuts_unstable_relus(digits):
    counts = {}
    for w in (0.0, 1.0):
        model = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
        kw = {"rs_weight": w, "rs_eps": 0.05} if w else {}
        train(model, digits, TrainConfig(iterations=300, batch_size=64, eval_every=300, **kw), seed=0)
        model.eval()
        ops = to_ops(model, digits.input_shape, digits.mean, digits.std)
        lo, hi = input_box(to_pixels(digits.x_test, digits), 0.05, digits.pixel_range)
        with torch.no_grad():
            pre = ibp(ops, lo, hi).pre
        counts[w] = sum(int(((lo_ < 0) & (hi_ > 0)).sum()) for lo_, hi_ in pre.values())
    assert counts[1.0] < 0.5 * counts[0.0], counts


def test_stability_settings_stay_out_of_a_clean_runs_config_and_are_checked():
    assert "rs_weight" not in TrainConfig().to_dict()
    assert TrainConfig(rs_weight=0.01, rs_eps=0.1).to_dict()["rs_weight"] == 0.01
    assert TrainConfig(rs_weight=0.01, rs_eps=0.1).passes_per_example() == 9
    with pytest.raises(UserError, match="--rs-weight needs --rs-eps > 0"):
        TrainConfig(rs_weight=0.01).validate()
    with pytest.raises(UserError, match="--rs-weight must be >= 0"):
        TrainConfig(rs_weight=-1.0).validate()


# -- the certified loss, by hand --------------------------------------------------------------------------------


def certified_setup(certified="crown-ibp"):
    from types import SimpleNamespace

    from ticketlab.verify.training import CertifiedLoss

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()
    mean, std = torch.tensor([0.4], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)
    data = SimpleNamespace(input_shape=(3,), mean=mean, std=std, pixel_range=(0.0, 1.0), num_classes=3)
    cfg = TrainConfig(certified=certified, cert_eps=0.1, cert_start=0.2, cert_ramp=0.4, cert_kappa=0.5)
    pix = torch.rand(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return net, data, cfg, CertifiedLoss(cfg, data, 100), (pix - 0.4) / 0.2, torch.arange(8) % 3, pix


def test_before_the_ramp_the_certified_loss_is_the_natural_loss():
    net, data, cfg, loss, x, y, _ = certified_setup()
    assert torch.equal(loss(net, x, y, 10), torch.nn.functional.cross_entropy(net(x), y))


@pytest.mark.parametrize("certified", ["ibp", "crown-ibp"])
def test_during_the_ramp_it_mixes_natural_and_worst_case_losses_with_the_schedules_weights(certified):
    net, data, cfg, loss, x, y, pix = certified_setup(certified)
    it = 40  # halfway through the ramp (20..60): eps 0.05, kappa 0.75, beta 0.5
    eps, kappa, beta = schedule(cfg, it, 100)
    assert (eps, kappa, beta) == (pytest.approx(0.05), pytest.approx(0.75), pytest.approx(0.5))
    ops = to_ops(net, (3,), data.mean, data.std)
    lo, hi = input_box(pix, eps, (0.0, 1.0))
    C = margin_spec(y, 3).double()
    b_ibp = ibp(ops, lo, hi, C)
    lower = b_ibp.lower
    if certified == "crown-ibp":
        lower = beta * crown(ops, lo, hi, C, intermediate="ibp", upper=False, pre=b_ibp.pre).lower + (1 - beta) * lower
    want = kappa * torch.nn.functional.cross_entropy(net(x), y) + (1 - kappa) * robust_ce(lower, y, 3)
    assert torch.allclose(loss(net, x, y, it), want, atol=1e-12)


def test_after_the_ramp_crown_ibp_is_plain_ibp_at_the_final_weights():
    net, data, cfg, loss, x, y, pix = certified_setup("crown-ibp")
    ops = to_ops(net, (3,), data.mean, data.std)
    lo, hi = input_box(pix, 0.1, (0.0, 1.0))
    want = 0.5 * torch.nn.functional.cross_entropy(net(x), y) + 0.5 * robust_ce(
        ibp(ops, lo, hi, margin_spec(y, 3).double()).lower, y, 3
    )
    assert torch.allclose(loss(net, x, y, 90), want, atol=1e-12)


def test_the_certified_ops_are_built_once_and_checked_against_the_model():
    net, data, cfg, loss, x, y, _ = certified_setup()
    loss(net, x, y, 50)
    ops = loss.ops
    loss(net, x, y, 51)
    assert loss.ops is ops

    class Residual(torch.nn.Sequential):
        def forward(self, z):
            return super().forward(z) + z

    from ticketlab.verify.training import CertifiedLoss

    bad = Residual(torch.nn.Linear(3, 3)).double()
    with pytest.raises(UserError, match=r"layer Residual \(Residual, a Sequential with a forward of its own\)"):
        CertifiedLoss(cfg, data, 100)(bad, x, y, 50)


def test_the_schedule_without_a_ramp_jumps_to_the_final_values_at_its_start():
    cfg = TrainConfig(certified="ibp", cert_eps=0.2, cert_start=0.5, cert_ramp=0.0, cert_kappa=0.3)
    assert schedule(cfg, 49, 100) == (0.0, 1.0, 1.0)
    assert schedule(cfg, 50, 100) == (pytest.approx(0.2), pytest.approx(0.3), 0.0)


def test_the_stability_loss_averages_every_relu_neuron_of_every_sample_and_is_zero_without_relus():
    from types import SimpleNamespace

    from ticketlab.verify.training import StabilityLoss

    net = torch.nn.Sequential(
        torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2)
    ).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.copy_(torch.tensor([-0.5, 0.5]))
        net[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        net[2].bias.zero_()
    data = SimpleNamespace(input_shape=(2,), mean=None, std=None, pixel_range=(0.0, 1.0))
    x = torch.tensor([[0.5, 0.5], [0.2, 0.9]], dtype=torch.float64)
    rs = StabilityLoss(SimpleNamespace(rs_eps=0.1), data)
    terms = []
    for s in x:
        lo, hi = (s - 0.1).clamp(0, 1), (s + 0.1).clamp(0, 1)
        l1, u1 = lo + torch.tensor([-0.5, 0.5]), hi + torch.tensor([-0.5, 0.5])
        terms += [-math.tanh(1 + a * b) for a, b in zip(l1.tolist(), u1.tolist())]
        h_lo, h_hi = l1.clamp_min(0), u1.clamp_min(0)  # second layer: [h0, -h1]
        terms += [-math.tanh(1 + float(h_lo[0] * h_hi[0])), -math.tanh(1 + float(-h_hi[1] * -h_lo[1]))]
    assert rs(net, x).item() == pytest.approx(sum(terms) / len(terms))
    linear = torch.nn.Sequential(torch.nn.Linear(2, 2)).double()
    assert StabilityLoss(SimpleNamespace(rs_eps=0.1), data)(linear, x).item() == 0.0
    with pytest.raises(
        UserError,
        match=r"^--rs-weight does not support models with BatchNorm; pick lenet300, mlp1d, "
        r"cnn-small, conv2/4/6 or cnn1d$",
    ):
        StabilityLoss(SimpleNamespace(rs_eps=0.1), data)(torch.nn.Sequential(torch.nn.BatchNorm1d(2)), x)
