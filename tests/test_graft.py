"""Linearity grafting: a grafted neuron is its linear function everywhere - in the forward pass, in IBP,
CROWN and alpha-CROWN (no relaxation: its bound is the line's), in both complete solvers, and through a
weights file."""

import importlib.util
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

from ticketlab.io import save_tensors
from ticketlab.models.graft import GraftedReLU, graft_relus
from ticketlab.runs.models import load_weights
from ticketlab.verify.bounds import (
    alpha_crown,
    crown,
    ibp,
    input_box,
    pre_bounds,
    stability,
)
from ticketlab.verify.complete import Complete
from ticketlab.verify.graph import to_ops


def grafted_net(seed: int, hidden=(4, 4), n_in=3, k=3, fraction=0.5) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, d = [], n_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    net = nn.Sequential(*layers, nn.Linear(d, k)).double()
    graft_relus(net, (n_in,))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(generator=g)
        for m in net:
            if isinstance(m, GraftedReLU):
                m.graft.copy_(torch.rand(m.graft.shape, generator=g) < fraction)
    return net


def test_grafted_neurons_are_their_line_and_the_others_relu():
    m = GraftedReLU((3,)).double()
    with torch.no_grad():
        m.graft.copy_(torch.tensor([True, False, True]))
        m.slope.copy_(torch.tensor([-2.0, 5.0, 0.0]))
        m.intercept.copy_(torch.tensor([1.0, 5.0, 0.0]))
    x = torch.tensor([[-1.0, -1.0, 3.0], [2.0, 2.0, -3.0]], dtype=torch.float64)
    assert torch.equal(m(x), torch.tensor([[3.0, 0.0, 0.0], [-3.0, 2.0, 0.0]], dtype=torch.float64))


def test_a_grafted_neurons_bound_equals_its_linear_functions():
    """x in [-1, 2] -> z = x -> grafted a = -0.5, b = 0.3: the output lies in [-0.7, 0.8] exactly, for IBP,
    CROWN and alpha-CROWN alike (a ReLU there would give [0, 2], and CROWN's relaxation something looser)."""
    lin1, lin2 = nn.Linear(1, 1), nn.Linear(1, 1)
    net = nn.Sequential(lin1, GraftedReLU((1,)), lin2).double()
    with torch.no_grad():
        lin1.weight.fill_(1.0)
        lin1.bias.zero_()
        lin2.weight.fill_(1.0)
        lin2.bias.zero_()
        net[1].graft.fill_(True)
        net[1].slope.fill_(-0.5)
        net[1].intercept.fill_(0.3)
    ops = to_ops(net, (1,))
    lo, hi = torch.tensor([[-1.0]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64)
    for b in (ibp(ops, lo, hi), crown(ops, lo, hi)):
        assert b.lower.item() == pytest.approx(-0.7) and b.upper.item() == pytest.approx(0.8)
    assert alpha_crown(ops, lo, hi).lower.item() == pytest.approx(-0.7)
    pre, _ = pre_bounds(ops, lo, hi)
    assert stability(ops, pre)[0] | {"layer": 0} == {
        "layer": 0,
        "neurons": 1,
        "unstable": 0,
        "active": 0,
        "inactive": 0,
        "grafted": 1,
    }


def test_a_fully_grafted_network_is_linear_and_crown_is_exact():
    """Every neuron grafted: the net is affine, so CROWN's bounds are its exact extremes over the box."""
    net = grafted_net(0, fraction=1.1)
    ops = to_ops(net, (3,))
    x = torch.rand(1, 3, dtype=torch.float64)
    lo, hi = input_box(x, 0.3, None)
    b = crown(ops, lo, hi)
    corners = torch.tensor(list(itertools.product(*zip(lo[0].tolist(), hi[0].tolist()))), dtype=torch.float64)
    with torch.no_grad():
        out = net(corners)
    assert torch.allclose(b.lower[0], out.min(0).values) and torch.allclose(b.upper[0], out.max(0).values)


@pytest.mark.parametrize("seed", range(4))
def test_sampled_points_of_grafted_nets_never_leave_the_bounds(seed):
    net = grafted_net(seed, hidden=(6, 6), n_in=4, k=3)
    ops = to_ops(net, (4,))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 4, generator=g, dtype=torch.float64)
    lo, hi = input_box(x, 0.4, None)
    bounds = [ibp(ops, lo, hi), crown(ops, lo, hi), crown(ops, lo, hi, intermediate="ibp")]
    a = alpha_crown(ops, lo, hi, steps=10)
    pts = lo[:, None] + (hi - lo)[:, None] * torch.rand(2, 2000, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = net(pts.reshape(-1, 4)).reshape(2, 2000, 3)
    for b in bounds:
        assert (out >= b.lower[:, None] - 1e-9).all() and (out <= b.upper[:, None] + 1e-9).all()
    assert (out >= a.lower[:, None] - 1e-9).all()
    assert (a.lower >= bounds[1].lower - 1e-9).all()


def exhaustive_min_margin(net, lo, hi, y, j) -> float:
    """min of logit_y - logit_j over the box: one LP per activation pattern of the ungrafted ReLUs."""
    mods = list(net)
    best = np.inf
    relus = [m for m in mods if isinstance(m, GraftedReLU)]
    free = [int((~m.graft).sum()) for m in relus]
    for pattern in itertools.product([0, 1], repeat=sum(free)):
        A, c, rows, rhs, pos = np.eye(len(lo)), np.zeros(len(lo)), [], [], 0
        for m in mods:
            if isinstance(m, nn.Linear):
                W, b = m.weight.detach().numpy(), m.bias.detach().numpy()
                A, c = W @ A, W @ c + b
                continue
            g = m.graft.numpy()
            a, t = m.slope.detach().numpy(), m.intercept.detach().numpy()
            scale, shift = np.zeros(len(g)), np.zeros(len(g))
            for i in range(len(g)):
                if g[i]:
                    scale[i], shift[i] = a[i], t[i]
                    continue
                on = pattern[pos]
                pos += 1
                sign = -1.0 if on else 1.0
                rows.append(sign * A[i])
                rhs.append(-sign * c[i])
                scale[i] = float(on)
            A, c = A * scale[:, None], c * scale + shift
        obj = A[y] - A[j]
        res = linprog(
            obj,
            A_ub=np.array(rows) if rows else None,
            b_ub=np.array(rhs) if rows else None,
            bounds=list(zip(lo, hi)),
            method="highs",
        )
        if res.status == 0:
            best = min(best, res.fun + c[y] - c[j])
    return best


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["milp", "marabou"])
def test_complete_verdicts_on_grafted_nets_agree_with_exhaustive_search(solver):
    if solver == "marabou" and importlib.util.find_spec("maraboupy") is None:
        pytest.skip("maraboupy is not installed")
    seen = set()
    for seed in range(5):
        net = grafted_net(seed)
        ops = to_ops(net, (3,))
        g = torch.Generator().manual_seed(seed)
        for eps in (0.2, 0.6, 1.2):
            x = torch.randn(3, generator=g, dtype=torch.float64)
            with torch.no_grad():
                y = int(net(x[None]).argmax())
            lo, hi = input_box(x[None], eps, None)
            exact = min(exhaustive_min_margin(net, lo[0].numpy(), hi[0].numpy(), y, j) for j in range(3) if j != y)
            v = Complete(ops, net, 3, eps, None, solver, attack_steps=0, shortcut=False)(x, y)
            if abs(exact) > 1e-7:
                assert v.verdict == ("verified" if exact > 0 else "falsified"), (seed, eps, exact, v)
                seen.add(v.verdict)
                if v.verdict == "falsified" and v.by == solver:
                    with torch.no_grad():
                        assert int(net(v.counterexample[None]).argmax()) != y
    assert seen == {"verified", "falsified"}


def test_a_grafted_weights_file_rebuilds_the_grafted_model(tmp_path):
    net = grafted_net(3).float()
    save_tensors(tmp_path / "w.safetensors", net.state_dict())
    plain = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    load_weights(plain, tmp_path / "w.safetensors", "tiny")
    assert isinstance(plain[1], GraftedReLU) and torch.equal(plain[1].graft, net[1].graft)
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.equal(plain(x), net(x))


@pytest.mark.parametrize("constant", [False, True])
def test_marabou_answers_a_grafted_margin_in_process_as_exhaustive_search_does_with_every_variable_bounded(
    constant,
):
    """The Marabou query of a grafted net, built and solved in this process: each grafted line's output is
    a variable pinned by its equation and bounded by the line over its input's interval (every variable,
    the logits too, has a finite range), and sat/unsat agree with exhaustive search. ``constant``: the first
    layer's first two neurons have no weights left and are grafted, so their lines are constants."""
    pytest.importorskip("maraboupy")
    from ticketlab.verify.complete import _marabou_solve

    seen = set()
    for seed in (0, 1, 2):
        net = grafted_net(seed)
        if constant:
            with torch.no_grad():
                net[0].weight[:2] = 0.0
                net[1].graft[:2] = True
        ops = to_ops(net, (3,))
        x = torch.randn(3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        with torch.no_grad():
            y = int(net(x[None]).argmax())
        lo, hi = input_box(x[None], 0.6, None)
        with torch.no_grad():
            pre, _ = pre_bounds(ops, lo, hi, "crown")
        bounds = {i: (a[0].numpy(), b[0].numpy()) for i, (a, b) in pre.items()}
        c = Complete(ops, net, 3, 0.6, None, "marabou", attack_steps=0, shortcut=False)
        for j in (j for j in range(3) if j != y):
            q, logits, inputs = c._marabou_query(lo[0], hi[0], bounds)
            big = 1e6 * logits[2]  # the query's scale
            every = range(q.getNumberOfVariables())
            assert all(abs(q.getLowerBound(v)) < big and abs(q.getUpperBound(v)) < big for v in every)
            status, point = _marabou_solve(q, logits, inputs, y, j, 10)
            exact = exhaustive_min_margin(net, lo[0].numpy(), hi[0].numpy(), y, j)
            if abs(exact) > 1e-7:
                assert status == ("unsat" if exact > 0 else "sat"), (seed, j, exact)
                seen.add(status)
    assert seen == {"sat", "unsat"}
