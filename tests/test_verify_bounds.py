"""IBP, CROWN and alpha-CROWN: sound on random dense and masked networks (sampled and PGD points never leave
the bounds), worked by hand on a 2-2-2 network, exact at eps 0, ordered as the methods promise."""

import math

import pytest
import torch
from torch import nn

from ticketlab.errors import UserError
from ticketlab.models import build_model
from ticketlab.verify.bounds import (
    Bounds,
    alpha_crown,
    backward,
    crown,
    graft_intercept,
    ibp,
    input_box,
    margin_spec,
    other_classes,
    pre_bounds,
    relu_relaxation,
    stability,
)
from ticketlab.verify.graph import ReLU, check_ops, forward, to_ops

TOL = 1e-9


def hand_net():
    """z = [x1 + x2, x1 - x2], h = relu(z), out = [h1 - h2, h2]."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    return net


def test_bounds_of_the_hand_worked_2_2_2_network():
    ops = to_ops(hand_net(), (2,))
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    b = ibp(ops, lo, hi)  # z in [-2, 2]^2, h in [0, 2]^2
    assert b.lower.tolist() == [[-2.0, 0.0]] and b.upper.tolist() == [[2.0, 2.0]]
    # CROWN: h1 >= z1 (u = -l: slope 1), h2 <= z2 / 2 + 1, so out1 >= x1/2 + 3 x2/2 - 1 >= -3; out2 >= z2 >= -2
    c = crown(ops, lo, hi)
    assert c.lower.tolist() == [[-3.0, -2.0]] and c.upper.tolist() == [[3.0, 2.0]]
    # alpha-CROWN finds slope 0 for out2 (bound 0) and a slope <= 1/2 for out1 (bound -2, the true minimum at
    # x = (1, -1))
    a = alpha_crown(ops, lo, hi, steps=50)
    assert torch.allclose(a.lower, torch.tensor([[-2.0, 0.0]], dtype=torch.float64), atol=1e-6)
    assert stability(ops, c.pre) == [
        {"layer": 1, "neurons": 2, "unstable": 2, "active": 0, "inactive": 0, "grafted": 0}
    ]


def random_net(kind: str, seed: int, density: float | None):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if kind == "mlp":
        net, shape = (
            nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)),
            (1, 3, 4),
        )
    elif kind == "cnn-plain":  # convolutions, BatchNorm and ReLUs only: CROWN's patches path
        net, shape = (
            nn.Sequential(
                nn.Conv2d(1, 4, 4, stride=2, padding=1),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.Conv2d(4, 3, 3, stride=1, padding=1),
                nn.ReLU(),
                nn.Conv2d(3, 4, 3, stride=2, padding=0),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(4, 4),
            ),
            (1, 8, 8),
        )
    elif kind == "cnn-rect":  # a non-square kernel and stride, padding per axis: the dense pass, not patches
        net, shape = (
            nn.Sequential(
                nn.Conv2d(1, 4, 3, stride=1, padding=(1, 0)),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.Conv2d(4, 3, (3, 5), stride=(2, 1), padding=(1, 2)),
                nn.ReLU(),
                nn.Conv2d(3, 2, 3, stride=2, padding=(0, 1)),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(6, 4),
            ),
            (1, 8, 8),
        )
    else:
        net, shape = (
            nn.Sequential(
                nn.Conv2d(1, 3, 3, padding=1),
                nn.BatchNorm2d(3),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(3, 4, 3, stride=1, padding=1),
                nn.ReLU(),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.Linear(16, 8),
                nn.ReLU(),
                nn.Linear(8, 4),
            ),
            (1, 8, 8),
        )
    net = net.double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.normal_(generator=g)
            if isinstance(m, (nn.Linear, nn.Conv2d)) and density is not None:
                m.weight.mul_((torch.rand(m.weight.shape, generator=g) < density).double())
    return net, shape


def outputs(net, x, mean, std):
    return net((x - mean) / std)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "cnn-plain", "cnn-rect"])
@pytest.mark.parametrize("density", [None, 0.3])
@pytest.mark.parametrize("seed", range(4))
def test_sampled_and_pgd_points_never_leave_the_bounds(kind, density, seed):
    net, shape = random_net(kind, seed, density)
    mean, std = (
        torch.tensor(0.4, dtype=torch.float64).view(1, 1, 1),
        torch.tensor(0.3, dtype=torch.float64).view(1, 1, 1),
    )
    ops = to_ops(net, shape, mean, std, sparse=density is not None)
    check_ops(ops, net, shape, mean, std)
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.rand(6, *shape, generator=g, dtype=torch.float64)
    y = outputs(net, x, mean, std).argmax(1)
    C = margin_spec(y, 4).double()
    lo, hi = input_box(x, 0.08, (0.0, 1.0))
    bounds = {"ibp": ibp(ops, lo, hi, C), "crown": crown(ops, lo, hi, C), "alpha": alpha_crown(ops, lo, hi, C)}
    pts = lo + (hi - lo) * torch.rand(3000, *lo.shape, generator=g, dtype=torch.float64)
    pts[:500] = torch.where(torch.rand(pts[:500].shape, generator=g) < 0.5, lo, hi)  # corners
    margins = torch.stack([(C @ outputs(net, p, mean, std)[..., None])[..., 0] for p in pts])  # (P, B, S)
    # PGD on each margin row: minimise it inside the box
    for s in range(C.shape[1]):
        z = ((lo + hi) / 2).clone().requires_grad_(True)
        for _ in range(40):
            m = (C[:, s] * outputs(net, z, mean, std)).sum()
            (gz,) = torch.autograd.grad(m, z)
            with torch.no_grad():
                z = torch.minimum(torch.maximum(z - 0.02 * gz.sign(), lo), hi).requires_grad_(True)
        with torch.no_grad():
            pgd_margin = (C[:, s] * outputs(net, z, mean, std)).sum(1)
        for name, b in bounds.items():
            assert (pgd_margin >= b.lower[:, s] - TOL).all(), name
    for name, b in bounds.items():
        assert (margins >= b.lower - TOL).all(), name
        if b.upper is not None:
            assert (margins <= b.upper + TOL).all(), name
    # pre-activation bounds hold too
    z = pts[:200].reshape(-1, *shape)
    for i, op in enumerate(ops):
        if i in bounds["crown"].pre:
            l_, u_ = bounds["crown"].pre[i]
            rep = z.view(200, 6, *z.shape[1:])
            assert (rep >= l_ - TOL).all() and (rep <= u_ + TOL).all()
        z = op.forward(z)


@pytest.mark.parametrize("seed", range(3))
def test_crown_is_never_looser_than_ibp_before_a_relu_and_alpha_never_looser_than_crown(seed):
    net, shape = random_net("mlp", seed, None)
    ops = to_ops(net, shape)
    x = torch.rand(5, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    lo, hi = input_box(x, 0.1, (0.0, 1.0))
    pre_i = ibp(ops, lo, hi).pre
    pre_c, _ = pre_bounds(ops, lo, hi, "crown")
    first = min(pre_i)
    assert torch.equal(pre_c[first][0], pre_i[first][0]) and torch.equal(pre_c[first][1], pre_i[first][1])
    for i in pre_i:
        assert (pre_c[i][0] >= pre_i[i][0] - TOL).all() and (pre_c[i][1] <= pre_i[i][1] + TOL).all()
    C = margin_spec(net(x).argmax(1), 4).double()
    assert (alpha_crown(ops, lo, hi, C).lower >= crown(ops, lo, hi, C).lower - TOL).all()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_bounds_at_eps_zero_are_the_networks_output(kind):
    net, shape = random_net(kind, 7, 0.5)
    ops = to_ops(net, shape, sparse=True)
    x = torch.rand(3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want = net(x)
    for b in (ibp(ops, x, x), crown(ops, x, x)):
        assert torch.allclose(b.lower, want, atol=1e-10) and torch.allclose(b.upper, want, atol=1e-10)
    assert torch.allclose(alpha_crown(ops, x, x).lower, want, atol=1e-10)


def test_sparse_and_dense_weights_give_the_same_bounds():
    net, shape = random_net("mlp", 3, 0.02)
    x = torch.rand(4, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lo, hi = input_box(x, 0.1, (0.0, 1.0))
    sparse, dense = to_ops(net, shape, sparse=True), to_ops(net, shape, sparse=False)
    assert any(getattr(op, "csr", None) is not None for op in sparse)
    for f in (ibp, crown):
        assert torch.allclose(f(sparse, lo, hi).lower, f(dense, lo, hi).lower, atol=1e-12)


def test_bounds_are_differentiable_in_the_weights():
    net, shape = random_net("mlp", 0, None)
    ops = to_ops(net, shape)
    x = torch.rand(2, *shape, dtype=torch.float64)
    lo, hi = input_box(x, 0.05, (0.0, 1.0))
    crown(ops, lo, hi, intermediate="ibp", upper=False).lower.sum().backward()
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0


def test_margin_spec_rows_are_true_minus_other_class():
    C = margin_spec(torch.tensor([2, 0]), 3)
    assert C.tolist() == [[[-1, 0, 1], [0, -1, 1]], [[1, -1, 0], [1, 0, -1]]]


def test_input_box_is_clipped_to_the_pixel_range():
    lo, hi = input_box(torch.tensor([[0.02, 0.5, 0.99]]), 0.1, (0.0, 1.0))
    assert torch.allclose(lo, torch.tensor([[0.0, 0.4, 0.89]])) and torch.allclose(hi, torch.tensor([[0.12, 0.6, 1.0]]))


@pytest.mark.parametrize("name, layer", [("resnet20", "ResNet"), ("vit", "ViT")])
def test_an_unsupported_layer_is_named(name, layer):
    model = build_model(name, (1, 28, 28) if name == "vit" else (3, 32, 32), 10, seed=0)
    with pytest.raises(UserError, match=f"does not support layer .*{layer}"):
        to_ops(model, (1, 28, 28) if name == "vit" else (3, 32, 32))


@pytest.mark.parametrize(
    "name, shape",
    [
        ("lenet300", (1, 28, 28)),
        ("cnn-small", (1, 28, 28)),
        ("conv2", (1, 16, 16)),
        ("cnn1d", (1, 40)),
        ("conv2bn", (1, 16, 16)),
    ],
)
def test_the_registrys_feed_forward_models_convert_exactly(name, shape):
    model = build_model(name, shape, 10, seed=0).eval()
    ops = to_ops(model, shape)
    check_ops(ops, model, shape, None, None)
    x = torch.rand(2, *shape)
    assert torch.allclose(forward(ops, x), model(x), atol=1e-5)


def test_ibp_of_a_specification_after_a_last_layer_that_is_not_dense_is_c_applied_to_the_box():
    """A net ending in a convolution and Flatten: C cannot be folded into a Dense layer, so the bound is the
    interval of C @ outputs, m -+ |C| r, with m and r the outputs' box centre and radius."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 2, 2), nn.ReLU(), nn.Conv1d(2, 1, 2), nn.Flatten()).double()
    ops = to_ops(net, (1, 5))
    x = torch.rand(2, 1, 5, dtype=torch.float64)
    lo, hi = input_box(x, 0.2, None)
    out = ibp(ops, lo, hi)  # the outputs' own box (C = identity)
    C = torch.tensor([[[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]]], dtype=torch.float64).expand(2, 2, 3)
    b = ibp(ops, lo, hi, C)
    m, r = (out.upper + out.lower) / 2, (out.upper - out.lower) / 2
    want_m, want_r = torch.einsum("bsk,bk->bs", C, m), torch.einsum("bsk,bk->bs", C.abs(), r)
    assert torch.allclose(b.lower, want_m - want_r) and torch.allclose(b.upper, want_m + want_r)
    pts = lo + (hi - lo) * torch.rand(500, *lo.shape, dtype=torch.float64)
    with torch.no_grad():
        vals = torch.stack([torch.einsum("bsk,bk->bs", C, net(p)) for p in pts])
    assert (vals >= b.lower - 1e-12).all() and (vals <= b.upper + 1e-12).all()


# -- the pieces of the bounds, worked by hand ----------------------------------------------------------------------


def test_relu_relaxation_per_case_and_crowns_adaptive_lower_slope():
    lo = torch.tensor([[-2.0, -1.0, 1.0, -3.0, 0.0]], dtype=torch.float64)
    hi = torch.tensor([[1.0, 3.0, 2.0, -1.0, 0.0]], dtype=torch.float64)
    su, tu, sl, unstable = relu_relaxation(lo, hi)
    assert unstable.tolist() == [[True, True, False, False, False]]
    assert su.tolist() == [[1 / 3, 0.75, 1.0, 0.0, 1.0]]  # u / (u - l); active 1; dead 0; l = 0 counts active
    assert tu.tolist() == [[2 / 3, 0.75, 0.0, 0.0, 0.0]]  # -su * l
    assert sl.tolist() == [[0.0, 1.0, 1.0, 0.0, 1.0]]  # 1 where u >= -l, else 0
    su, tu, sl, _ = relu_relaxation(torch.tensor([[-2.0]]), torch.tensor([[2.0]]))
    assert sl.tolist() == [[1.0]]  # u = -l: slope 1


def test_grafted_neurons_are_their_own_line_above_and_below_and_never_unstable():
    d = dict(dtype=torch.float64)
    op = ReLU(
        (3,),
        torch.tensor([True, False, True]),
        torch.tensor([0.5, 1.0, -1.0], **d),
        torch.tensor([0.25, 0.0, 1.0], **d),
    )
    lo, hi = torch.tensor([[-1.0, -1.0, -1.0]], **d), torch.tensor([[1.0, 1.0, 1.0]], **d)
    su, tu, sl, unstable = relu_relaxation(lo, hi, op)
    assert unstable.tolist() == [[False, True, False]]
    assert su.tolist() == [[0.5, 0.5, -1.0]] and sl.tolist() == [[0.5, 1.0, -1.0]]
    assert tu.tolist() == [[0.25, 0.5, 1.0]]
    assert graft_intercept(op, lo).tolist() == [[0.25, 0.0, 1.0]] and graft_intercept(ReLU((3,)), lo) is None


def test_the_backward_bound_of_a_relu_uses_the_lower_line_for_positive_and_the_upper_for_negative_weights():
    """lam . relu(x) over x in [-1, 3] per coordinate, lam = (1, -1): the first neuron takes CROWN's lower
    line (slope 1 since u >= -l: x >= -1), the second the upper line (3/4 x + 3/4, whose minimum of -lam... is
    at x = 3: -(3/4 * 3 + 3/4) = -3)."""
    ops = [ReLU((2,))]
    lo, hi = torch.full((1, 2), -1.0, dtype=torch.float64), torch.full((1, 2), 3.0, dtype=torch.float64)
    pre = {0: (lo, hi)}
    lam = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    assert backward(ops, 1, lam, lo, hi, pre).item() == pytest.approx(-1.0 - 3.0)
    alphas = {0: torch.tensor([[[0.0, 0.0]]], dtype=torch.float64)}  # lower slope 0 on the first: bound 0 there
    assert backward(ops, 1, lam, lo, hi, pre, alphas).item() == pytest.approx(0.0 - 3.0)


def test_other_classes_lists_each_labels_others_in_order():
    assert other_classes(torch.tensor([0, 2, 1]), 3).tolist() == [[1, 2], [0, 1], [0, 2]]


def test_verified_needs_every_row_above_zero():
    b = Bounds(torch.tensor([[0.1, 0.2], [0.1, 0.0], [-1.0, 2.0]]), None)
    assert b.verified().tolist() == [True, False, False]


def test_stability_counts_each_kind_of_neuron_over_the_batch():
    ops = [ReLU((3,)), ReLU((2,), torch.tensor([True, False]), torch.ones(2), torch.zeros(2))]
    # an active neuron with u below 1 (0.25 <= x <= 0.5) counts as active like any other
    pre = {
        0: (torch.tensor([[-1.0, 0.0, -2.0], [0.25, -1.0, -1.0]]), torch.tensor([[1.0, 2.0, 0.0], [0.5, 1.0, -0.5]])),
        1: (torch.tensor([[-1.0, -1.0], [-1.0, -1.0]]), torch.tensor([[1.0, 1.0], [1.0, -1.0]])),
    }
    assert stability(ops, pre) == [
        {"layer": 0, "neurons": 3, "unstable": 2, "active": 2, "inactive": 2, "grafted": 0},
        {"layer": 1, "neurons": 2, "unstable": 1, "active": 0, "inactive": 1, "grafted": 2},
    ]


def test_intermediate_bounds_are_recomputed_only_for_neurons_ibp_leaves_unstable_and_in_chunks():
    from ticketlab.verify.bounds import _crown_layer
    from ticketlab.verify.bounds import pre_bounds as pb

    net, shape = random_net("mlp", 1, None)
    ops = to_ops(net, shape)
    x = torch.rand(3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    lo, hi = input_box(x, 0.1, (0.0, 1.0))
    with torch.no_grad():
        whole, _ = pb(ops, lo, hi, "crown", chunk=1024)
        small, _ = pb(ops, lo, hi, "crown", chunk=3)  # the same bounds, three neurons at a time
        ibp_pre, _ = pb(ops, lo, hi, "ibp")
    for i in whole:
        assert torch.allclose(whole[i][0], small[i][0], atol=1e-12) and torch.allclose(whole[i][1], small[i][1])
    # a neuron stable under IBP keeps IBP's bounds exactly; the others are never looser
    i = max(whole)
    l_i, u_i = ibp_pre[i]
    stable = ((l_i >= 0) | (u_i <= 0)).reshape(3, -1).all(0)
    assert stable.any() and (~stable).any()
    assert torch.equal(whole[i][0].reshape(3, -1)[:, stable], l_i.reshape(3, -1)[:, stable])
    no_box = _crown_layer(ops, i, lo, hi, whole, 1024, (l_i.abs() + 1, u_i.abs() + 1))  # nothing unstable
    assert torch.equal(no_box[0], l_i.abs() + 1)


def test_crown_lower_only_equals_the_lower_half_of_crown():
    net, shape = random_net("mlp", 2, None)
    ops = to_ops(net, shape)
    x = torch.rand(4, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    lo, hi = input_box(x, 0.05, (0.0, 1.0))
    C = margin_spec(net(x).argmax(1), 4).double()
    with torch.no_grad():
        both, low = crown(ops, lo, hi, C), crown(ops, lo, hi, C, upper=False)
    assert low.upper is None and torch.allclose(low.lower, both.lower)
    assert (both.upper >= both.lower).all()


def test_alpha_crown_with_no_steps_is_crown_and_more_steps_never_loosen():
    net, shape = random_net("mlp", 3, None)
    ops = to_ops(net, shape)
    x = torch.rand(4, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    lo, hi = input_box(x, 0.08, (0.0, 1.0))
    C = margin_spec(net(x).argmax(1), 4).double()
    with torch.no_grad():
        c = crown(ops, lo, hi, C, upper=False).lower
    a0 = alpha_crown(ops, lo, hi, C, steps=0).lower
    a5, a40 = alpha_crown(ops, lo, hi, C, steps=5).lower, alpha_crown(ops, lo, hi, C, steps=40).lower
    assert torch.allclose(a0, c) and (a5 >= c - 1e-12).all() and (a40 >= a5 - 1e-12).all()
    assert (a40 > c + 1e-6).any()  # the optimisation helps somewhere
    assert not a40.requires_grad
    relu_free = to_ops(nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double(), shape)
    with torch.no_grad():
        exact = crown(relu_free, lo, hi, C, upper=False).lower
    assert torch.allclose(alpha_crown(relu_free, lo, hi, C).lower, exact)  # no slopes to optimise


@pytest.mark.parametrize("steps", [0, 20])
def test_alpha_crown_hands_back_pre_activation_bounds_inside_crowns(steps):
    """Fixed intermediate bounds are CROWN's exactly; optimised ones are inside CROWN's (both sound: the
    sampling test checks them) and strictly tighter somewhere once optimised."""
    net, shape = random_net("mlp", 2, None)
    ops = to_ops(net, shape)
    x = torch.rand(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lo, hi = input_box(x, 0.05, (0.0, 1.0))
    with torch.no_grad():
        pre, _ = pre_bounds(ops, lo, hi, "crown")
    fixed = alpha_crown(ops, lo, hi, steps=steps, intermediate="fixed")
    assert sorted(fixed.pre) == sorted(pre)
    assert all(torch.equal(fixed.pre[i][0], pre[i][0]) and torch.equal(fixed.pre[i][1], pre[i][1]) for i in pre)
    opt = alpha_crown(ops, lo, hi, steps=steps)
    assert sorted(opt.pre) == sorted(pre)
    assert all((opt.pre[i][0] >= pre[i][0]).all() and (opt.pre[i][1] <= pre[i][1]).all() for i in pre)
    tighter = any((opt.pre[i][0] > pre[i][0] + 1e-9).any() or (opt.pre[i][1] < pre[i][1] - 1e-9).any() for i in pre)
    assert tighter == (steps > 0)
    assert (opt.lower >= fixed.lower - 1e-9).all() if steps else torch.equal(opt.lower, fixed.lower)


def test_a_conv_then_a_dense_layer_before_a_relu_get_crowns_bounds_not_ibps_box():
    """Two non-diagonal maps in a row: IBP's box of their composition is loose, so CROWN recomputes it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    ops = to_ops(net, (1, 6))
    x = torch.rand(3, 1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lo, hi = input_box(x, 0.1, (0.0, 1.0))
    with torch.no_grad():
        c, _ = pre_bounds(ops, lo, hi, "crown")
        i, _ = pre_bounds(ops, lo, hi, "ibp")
    (k,) = c
    assert (c[k][0] >= i[k][0] - 1e-12).all() and (c[k][0] > i[k][0] + 1e-6).any()


def test_grafting_a_relu_leaves_the_crown_bounds_of_its_other_neurons_as_they_were():
    """The bounds of a layer's input do not depend on that layer: the grafted net's ungrafted neurons get
    the plain net's CROWN bounds (tighter than IBP's box), the grafted ones are linear and need none."""
    from ticketlab.models.graft import GraftedReLU

    torch.manual_seed(0)
    g = GraftedReLU((8,), slope=0.5)
    g.graft[:4] = True
    grafted = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), g, nn.Linear(8, 2)).double()
    plain = nn.Sequential(*[m for m in grafted[:3]], nn.ReLU(), grafted[4]).double()
    x = torch.rand(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lo, hi = input_box(x, 0.3, (0.0, 1.0))
    with torch.no_grad():
        pg, _ = pre_bounds(to_ops(grafted, (3,)), lo, hi, "crown")
        pp, _ = pre_bounds(to_ops(plain, (3,)), lo, hi, "crown")
        pi, _ = pre_bounds(to_ops(plain, (3,)), lo, hi, "ibp")
    last = max(pp)
    for b in (0, 1):
        assert torch.allclose(pg[last][b][:, 4:], pp[last][b][:, 4:], atol=1e-12)
    assert (pp[last][1][:, 4:] < pi[last][1][:, 4:] - 1e-6).any()


def conv_bn_relu_conv(k1, s1, p1, k2, s2, p2):
    """ops, box and CROWN's pre-activation bounds of a standardised conv - BatchNorm - ReLU - conv net on 3
    random 2x11x11 images."""
    torch.manual_seed(k1 + 10 * s2)
    net = nn.Sequential(nn.Conv2d(2, 5, k1, s1, p1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 4, k2, s2, p2)).double()
    net.eval()
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2)
    mean, std = torch.tensor(0.3).view(1, 1, 1).double(), torch.tensor(0.2).view(1, 1, 1).double()
    ops = to_ops(net, (2, 11, 11), mean, std)
    x = torch.rand(3, 2, 11, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lo, hi = input_box(x, 0.05, (0.0, 1.0))
    pre, _ = pre_bounds(ops, lo, hi)
    return ops, lo, hi, pre


def every_neurons_dense_bounds(ops, lo, hi, pre):
    """(B, 2n): the dense backward pass's lower bounds of +y then -y for every neuron of the output."""
    shape = ops[-1].out_shape
    n, b = math.prod(shape), lo.shape[0]
    eye = torch.eye(n, dtype=torch.float64)
    with torch.no_grad():
        return backward(
            ops, len(ops), torch.cat([eye, -eye]).expand(b, 2 * n, n).reshape(b, 2 * n, *shape), lo, hi, pre
        )


@pytest.mark.parametrize(
    "k1, s1, p1, k2, s2, p2",
    [
        (4, 2, 1, 4, 2, 1),
        (3, 1, 1, 3, 2, 0),
        (5, 2, 2, 3, 1, 1),
        (3, 2, 0, 2, 2, 1),
        (3, 1, (2, 0), 3, 2, (0, 1)),
        (3, 1, (1, 2), 3, 2, (1, 2)),
    ],
)
def test_crown_on_convolutions_as_patches_equals_the_dense_backward_pass(k1, s1, p1, k2, s2, p2):
    """Every neuron of the second conv's output, both signs: the patches give the dense pass's bounds."""
    from ticketlab.verify.bounds import backward_patches, patches_apply

    ops, lo, hi, pre = conv_bn_relu_conv(k1, s1, p1, k2, s2, p2)
    end = len(ops)
    assert patches_apply(ops, end)
    shape = ops[-1].out_shape
    with torch.no_grad():
        r = backward_patches(ops, end, torch.arange(shape[1] * shape[2]), lo, hi, pre)  # (B, positions, 2 Co)
        got = torch.cat(
            [r[..., : shape[0]].transpose(1, 2).flatten(1), r[..., shape[0] :].transpose(1, 2).flatten(1)], 1
        )
    assert torch.allclose(got, every_neurons_dense_bounds(ops, lo, hi, pre), atol=1e-12, rtol=0)


def test_patches_need_square_kernels_and_one_stride_and_fall_back_to_the_dense_pass_otherwise():
    """Patches are square windows: a (3, 5) kernel or a (2, 1) stride would make them the wrong size (it crashed
    CROWN); any padding per axis is fine."""
    from ticketlab.verify.bounds import patches_apply

    def second_conv_patches(k, s, p):
        net = nn.Sequential(nn.Conv2d(1, 2, k, s, p), nn.ReLU(), nn.Conv2d(2, 2, 3, 1, 1)).double()
        return patches_apply(to_ops(net, (1, 9, 9)), 3)

    assert second_conv_patches(3, 1, (1, 0)) and second_conv_patches(3, 2, (0, 2))
    assert not second_conv_patches((3, 5), 1, 1)
    assert not second_conv_patches(3, (2, 1), 1)
    assert not second_conv_patches((1, 3), (1, 2), 0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, 1, 1), nn.ReLU(), nn.Conv2d(2, 2, (3, 1), 1, 1)).double()
    assert not patches_apply(to_ops(net, (1, 9, 9)), 3)


def test_each_samples_own_unstable_neurons_come_first_padded_with_distinct_stable_ones():
    from ticketlab.verify.bounds import _sample_rows

    ops = to_ops(hand_net(), (2,))  # ops[1] is the ReLU: the rows of ops[:1]'s output feed it
    # sample 0: neuron 1 unstable; sample 1: both; sample 2: none
    l = torch.tensor([[0.5, -1.0], [-1.0, -2.0], [1.0, -3.0]], dtype=torch.float64)
    u = torch.tensor([[2.0, 1.0], [1.0, 0.5], [2.0, -1.0]], dtype=torch.float64)
    idx, valid = _sample_rows(ops, 1, l, u)
    assert idx.tolist() == [[1, 0], [0, 1], [0, 1]]
    assert valid.tolist() == [[True, False], [True, True], [False, False]]
    idx, valid = _sample_rows(ops, 1, l.abs() + 1, u.abs() + 2)  # nothing unstable: no rows at all
    assert idx.shape == (3, 0) and valid.shape == (3, 0)
    idx, valid = _sample_rows(ops, 1, l[:0], u[:0])  # no samples
    assert idx.shape == (0, 0) and valid.shape == (0, 0)


def test_only_bounds_strictly_either_side_of_zero_make_a_neuron_unstable_and_never_a_grafted_one():
    """Unstable is l < 0 < u: a neuron with l = 0 (linear on its box) or u = 0 (dead) is stable; a grafted one
    is linear whatever its bounds. Per sample: R is the largest count of any one sample, not the batch's."""
    from ticketlab.verify.bounds import _sample_rows, _unstable_rows

    l = torch.tensor([[0.0, -1.0, -1.0, -2.0], [-1.0, -1.0, 0.0, -1.0]], dtype=torch.float64)
    u = torch.tensor([[1.0, 0.0, 2.0, -1.0], [0.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    plain = [None, ReLU((4,))]  # only ops[end], the ReLU fed, is read
    idx, valid = _sample_rows(plain, 1, l, u)
    assert idx.tolist() == [[2, 0], [1, 3]] and valid.tolist() == [[True, False], [True, True]]
    assert _unstable_rows(plain, 1, l, u).tolist() == [1, 2, 3]
    d = dict(dtype=torch.float64)
    grafted = [None, ReLU((4,), torch.tensor([False, False, False, True]), torch.ones(4, **d), torch.zeros(4, **d))]
    idx, valid = _sample_rows(grafted, 1, l, u)
    assert idx.tolist() == [[2], [1]] and valid.tolist() == [[True], [True]]
    assert _unstable_rows(grafted, 1, l, u).tolist() == [1, 2]


def test_each_samples_rows_keep_index_order_unstable_then_stable():
    """300 neurons: the unstable ones in increasing index, then the first stable ones in increasing index (an
    unstable sort would scramble them: the rows would differ between devices)."""
    from ticketlab.verify.bounds import _sample_rows

    g = torch.Generator().manual_seed(0)
    l = torch.where(torch.rand(3, 300, generator=g) < 0.3, -1.0, 1.0).double()
    u = torch.full_like(l, 2.0)
    idx, valid = _sample_rows([None, ReLU((300,))], 1, l, u)
    r = int((l < 0).sum(1).max())
    for k in range(3):
        unstable = [i for i in range(300) if l[k, i] < 0]
        stable = [i for i in range(300) if l[k, i] >= 0]
        assert idx[k].tolist() == (unstable + stable)[:r]
        assert valid[k].tolist() == [True] * len(unstable) + [False] * (r - len(unstable))


@pytest.mark.parametrize(
    "k1, s1, p1, k2, s2, p2", [(4, 2, 1, 4, 2, 1), (3, 1, 1, 3, 2, 0), (3, 2, (0, 1), 3, 1, (1, 0))]
)
def test_patches_of_one_neuron_per_anchor_per_sample_equal_the_dense_backward_pass(k1, s1, p1, k2, s2, p2):
    """Each sample bounding its own neurons (different ones, repeated anchors, one channel each) gets the dense
    pass's bounds of those neurons, not another sample's."""
    from ticketlab.verify.bounds import backward_patches

    ops, lo, hi, pre = conv_bn_relu_conv(k1, s1, p1, k2, s2, p2)
    shape = ops[-1].out_shape
    n, hw = shape[0] * shape[1] * shape[2], shape[1] * shape[2]
    g = torch.Generator().manual_seed(2)
    neurons = torch.stack([torch.randperm(n, generator=g)[:7] for _ in range(3)])  # (B, 7), distinct per sample
    with torch.no_grad():
        r = backward_patches(ops, len(ops), neurons % hw, lo, hi, pre, channels=neurons // hw)  # (B, 7, 2)
    want = every_neurons_dense_bounds(ops, lo, hi, pre)
    assert torch.allclose(r[..., 0], want.gather(1, neurons), atol=1e-12, rtol=0)
    assert torch.allclose(r[..., 1], want.gather(1, neurons + n), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["mlp", "cnn-plain"])
def test_alpha_crown_of_a_batch_is_alpha_crown_of_each_sample_alone(kind):
    """The slopes, Adam's moments and the refined neurons are each sample's own: a batch whose samples have
    different unstable neurons gives every sample the bounds it gets alone."""
    net, shape = random_net(kind, 4, None)
    ops = to_ops(net, shape)
    x = torch.rand(4, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    lo, hi = input_box(x, 0.06, (0.0, 1.0))
    C = margin_spec(net(x).argmax(1), 4).double()
    together = alpha_crown(ops, lo, hi, C, steps=8)
    unstable = [
        stability(ops, {i: (a[k : k + 1], c[k : k + 1]) for i, (a, c) in together.pre.items()}) for k in range(4)
    ]
    assert len({str(s) for s in unstable}) > 1  # the samples do differ
    for k in range(4):
        alone = alpha_crown(ops, lo[k : k + 1], hi[k : k + 1], C[k : k + 1], steps=8)
        assert torch.allclose(together.lower[k : k + 1], alone.lower, atol=1e-10, rtol=0)


def test_one_patches_call_takes_as_many_anchors_or_neurons_as_its_budget_allows():
    """Hand-worked: the output conv (2 -> 4 channels, 3x3 stride 2) and the first (1 -> 2, 3x3) make windows of
    3 then 5 pixels, the largest patch C x size x size = max(2 x 9, 1 x 25) = 25 per row, 2 x 4 rows per anchor:
    a budget of 2,000 elements is 10 anchors, or 40 neurons (one channel each, its two rows)."""
    from ticketlab.verify.bounds import patch_neurons, patch_positions

    net = nn.Sequential(nn.Conv2d(1, 2, 3, 1, 1), nn.ReLU(), nn.Conv2d(2, 4, 3, 2, 1), nn.ReLU()).double()
    ops = to_ops(net, (1, 5, 5))
    assert ops[1].out_shape == (2, 5, 5) and ops[2].out_shape == (4, 3, 3)
    assert patch_positions(ops, 3, budget=2000) == 10
    assert patch_neurons(ops, 3, budget=2000) == 40
    assert patch_neurons(ops, 3) == (2**24 // 200) * 4
    assert patch_positions(ops, 3, budget=10) == 1  # never none


@pytest.mark.parametrize("kind", ["mlp", "cnn", "cnn-plain"])
def test_an_empty_batch_has_empty_bounds(kind):
    """No sample left (say, none classified right): every method returns (0, specs), as IBP did, not a crash."""
    net, shape = random_net(kind, 0, None)
    ops = to_ops(net, shape)
    lo, hi = input_box(torch.rand(0, *shape, dtype=torch.float64), 0.1, (0.0, 1.0))
    C = margin_spec(torch.zeros(0, dtype=torch.long), 4).double()
    for method in (ibp, crown, alpha_crown):
        assert method(ops, lo, hi, C).lower.shape == (0, 3), method.__name__
