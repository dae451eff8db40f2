"""Complete verification: MILP and Marabou verdicts agree with each other and with exhaustive search over
activation patterns on tiny networks; every counterexample really flips the prediction."""

import copy
import importlib.util
import itertools
import os
import time

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

from ticketlab.errors import UserError
from ticketlab.verify.bounds import input_box
from ticketlab.verify.complete import SOLVERS, Complete, lower
from ticketlab.verify.graph import to_ops


def timed(c, x, y):
    """``c(x, y)``, checking the verdict's seconds are the time the call took (never more, never negative)."""
    t = time.perf_counter()
    v = c(x, y)
    wall = time.perf_counter() - t
    assert isinstance(v.seconds, float) and 0 <= v.seconds <= wall
    return v


def flat_bounds(pre: dict) -> dict:
    """``pre_bounds``' intermediate bounds of one sample as the solvers take them: flat numpy arrays."""
    return {i: (a[0].reshape(-1).numpy(), b[0].reshape(-1).numpy()) for i, (a, b) in pre.items()}


def tiny(seed: int, hidden=(4, 4), n_in=3, k=3):
    torch.manual_seed(seed)
    layers, d = [], n_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, k)).double()


def exhaustive_min_margin(net, lo, hi, y, j) -> float:
    """min over the box of logit_y - logit_j: one LP per activation pattern of the ReLUs (its linear region)."""
    lin = [m for m in net if isinstance(m, nn.Linear)]
    Ws = [m.weight.detach().numpy() for m in lin]
    bs = [m.bias.detach().numpy() for m in lin]
    sizes = [W.shape[0] for W in Ws[:-1]]
    best = np.inf
    for pattern in itertools.product([0, 1], repeat=sum(sizes)):
        A, c = np.eye(len(lo)), np.zeros(len(lo))  # the current layer input as A x + c
        rows, rhs, start = [], [], 0
        for W, b, n in zip(Ws[:-1], bs[:-1], sizes):
            za, zc = W @ A, W @ c + b
            p = np.array(pattern[start : start + n])
            start += n
            for i in range(n):  # active: z >= 0 (-z <= 0); inactive: z <= 0
                sign = -1.0 if p[i] else 1.0
                rows.append(sign * za[i])
                rhs.append(-sign * zc[i])
            A, c = za * p[:, None], zc * p
        oa, oc = Ws[-1] @ A, Ws[-1] @ c + bs[-1]
        obj = oa[y] - oa[j]
        res = linprog(obj, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=list(zip(lo, hi)), method="highs")
        if res.status == 0:
            best = min(best, res.fun + oc[y] - oc[j])
    return best


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["milp", "marabou"])
def test_solver_verdicts_agree_with_exhaustive_search(solver):
    """No bounds shortcut and no attack: the solver decides every margin; unbounded inputs and N(0, 1)
    weights so that both verdicts occur."""
    if solver == "marabou":
        pytest.importorskip("maraboupy")
    seen = set()
    for seed in range(6):
        net = tiny(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.normal_()
        ops = to_ops(net, (3,))
        g = torch.Generator().manual_seed(seed)
        for eps in (0.2, 0.5, 1.0):
            x = torch.randn(3, generator=g, dtype=torch.float64)
            y = int(net(x[None]).argmax())
            lo, hi = input_box(x[None], eps, None)
            exact = min(exhaustive_min_margin(net, lo[0].numpy(), hi[0].numpy(), y, j) for j in range(3) if j != y)
            v = Complete(ops, net, 3, eps, None, solver, attack_steps=0, shortcut=False)(x, y)
            assert v.by == solver
            if abs(exact) > 1e-7:
                assert v.verdict == ("verified" if exact > 0 else "falsified"), (seed, eps, exact, v)
                seen.add(v.verdict)
    assert seen == {"verified", "falsified"}


@pytest.mark.parametrize("seed", range(4))
def test_marabou_and_milp_agree(seed):
    pytest.importorskip("maraboupy")
    net = tiny(seed, hidden=(8, 8), n_in=6, k=4)
    ops = to_ops(net, (6,))
    g = torch.Generator().manual_seed(seed)
    decided = 0
    for eps in (0.05, 0.15, 0.3):
        x = torch.rand(6, generator=g, dtype=torch.float64)
        y = int(net(x[None]).argmax())
        a = Complete(ops, net, 4, eps, (0.0, 1.0), "milp", attack_steps=0, timeout=30, shortcut=False)(x, y)
        b = Complete(ops, net, 4, eps, (0.0, 1.0), "marabou", attack_steps=0, timeout=30, shortcut=False)(x, y)
        if "timeout" not in (a.verdict, b.verdict):
            assert a.verdict == b.verdict, (eps, a, b)
            decided += 1
    assert decided >= 2


@pytest.mark.parametrize("solver", ["milp", "marabou"])
def test_every_counterexample_flips_the_prediction_inside_the_ball(solver):
    if solver == "marabou":
        pytest.importorskip("maraboupy")
    net = tiny(1, hidden=(8, 8), n_in=6, k=4)
    ops = to_ops(net, (6,))
    g = torch.Generator().manual_seed(5)
    found = 0
    for _ in range(12):
        x = torch.rand(6, generator=g, dtype=torch.float64)
        y = int(net(x[None]).argmax())
        eps = 0.4
        v = Complete(ops, net, 4, eps, (0.0, 1.0), solver, attack_steps=0, shortcut=False)(x, y)
        if v.verdict == "falsified" and v.by == solver:
            found += 1
            cex = v.counterexample
            assert ((cex - x).abs() <= eps + 1e-12).all() and (cex >= 0).all() and (cex <= 1).all()
            out = net(cex[None])[0]
            assert int(out.argmax()) != y and v.margin > 0
    assert found >= 1


def test_a_misclassified_sample_is_falsified_by_itself():
    net = tiny(0)
    x = torch.rand(3, dtype=torch.float64)
    wrong = (int(net(x[None]).argmax()) + 1) % 3
    v = timed(Complete(to_ops(net, (3,)), net, 3, 0.1, (0.0, 1.0), "milp"), x, wrong)
    assert v.verdict == "falsified" and v.by == "clean"


@pytest.mark.slow
def test_max_pool_networks_get_the_same_verdicts_from_both_solvers():
    """A max-pool layer (Tjeng et al.'s encoding in the MILP, Marabou's max constraint): the solvers agree,
    every counterexample flips the prediction, a flip found by sampling is never called verified."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 3, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    ops = to_ops(net, (1, 5, 5))
    assert [layer.kind for layer in lower(ops)] == ["affine", "relu", "max", "affine"]
    solvers = ["milp"] + (["marabou"] if importlib.util.find_spec("maraboupy") else [])
    g = torch.Generator().manual_seed(0)
    seen = set()
    for eps in (0.1, 0.3, 0.6, 1.0, 1.5):
        x = torch.randn(1, 5, 5, generator=g, dtype=torch.float64)
        y = int(net(x[None]).argmax())
        verdicts = [Complete(ops, net, 3, eps, None, s, attack_steps=0, shortcut=False)(x, y) for s in solvers]
        assert verdicts[0].verdict in ("verified", "falsified")  # the MILP decides each
        assert len({v.verdict for v in verdicts} - {"timeout", "unknown"}) == 1  # agreement where both finish
        lo, hi = input_box(x[None], eps, None)
        pts = lo + (hi - lo) * torch.rand(20000, 1, 5, 5, generator=g, dtype=torch.float64)
        if bool((net(pts).argmax(1) != y).any()):
            assert verdicts[0].verdict == "falsified"
        for v in verdicts:
            if v.verdict == "falsified":  # (a Marabou 2.0 run on this net ends in an error: "unknown")
                assert int(net(v.counterexample[None]).argmax()) != y
        seen.add(verdicts[0].verdict)
    assert seen == {"verified", "falsified"}


def test_an_unknown_solver_is_a_user_error():
    with pytest.raises(UserError, match="unknown --solver 'z3'"):
        Complete([], None, 3, 0.1, None, "z3")


# -- each path to a verdict, and the lowering, on tiny nets -------------------------------------------------------


def test_marabou_answers_a_margin_in_process_as_exhaustive_search_does():
    pytest.importorskip("maraboupy")
    from ticketlab.verify.bounds import pre_bounds
    from ticketlab.verify.complete import _marabou_solve

    seen = set()
    for seed in (0, 1):
        net = tiny(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.normal_()
        ops = to_ops(net, (3,))
        x = torch.randn(3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        y = int(net(x[None]).argmax())
        lo, hi = input_box(x[None], 0.6, None)
        with torch.no_grad():
            pre, _ = pre_bounds(ops, lo, hi, "crown")
        bounds = flat_bounds(pre)
        c = Complete(ops, net, 3, 0.6, None, "marabou", attack_steps=0, shortcut=False)
        for j in (j for j in range(3) if j != y):
            q, logits, inputs = c._marabou_query(lo[0], hi[0], bounds)  # a fresh query per margin
            status, point = _marabou_solve(q, logits, inputs, y, j, 10)
            exact = exhaustive_min_margin(net, lo[0].numpy(), hi[0].numpy(), y, j)
            if abs(exact) > 1e-7:
                assert status == ("unsat" if exact > 0 else "sat"), (seed, j, exact)
                seen.add(status)
            if status == "sat":
                p = torch.as_tensor(point)
                out = net(p[None])[0].detach()
                assert ((p >= lo[0] - 1e-6) & (p <= hi[0] + 1e-6)).all() and float(out[j] - out[y]) > -1e-6
    assert seen == {"sat", "unsat"}


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 3)).double()


def test_a_tiny_ball_is_verified_by_the_bounds_and_a_huge_one_falsified_by_the_attack():
    net = small_net()
    x = torch.rand(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = int(net(x[None]).argmax())
    v = timed(Complete(to_ops(net, (3,)), net, 3, 1e-4, None, "milp"), x, y)
    assert (v.verdict, v.by, v.margin, v.counterexample) == ("verified", "bounds", None, None)
    v = timed(Complete(to_ops(net, (3,)), net, 3, 50.0, None, "milp"), x, y)
    assert (v.verdict, v.by) == ("falsified", "attack") and v.margin > 0
    assert (v.counterexample - x).abs().max() <= 50.0 and int(net(v.counterexample[None]).argmax()) != y


def fake_solver(monkeypatch, answers, seen=None):
    """Replace the MILP by one that answers each margin from ``answers`` (a list, in the order asked)."""

    def make(self, lo, hi, bounds):
        def solve(y, j, timeout):
            if seen is not None:
                seen.append((j, timeout))
            return answers.pop(0)

        return solve

    monkeypatch.setattr(Complete, "_milp", make)


def sample():
    net = small_net()
    x = torch.rand(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return net, x, int(net(x[None]).argmax())


def test_every_open_margin_is_asked_until_one_is_sat_most_likely_first(monkeypatch):
    net, x, y = sample()
    seen = []
    fake_solver(monkeypatch, [("unsat", None), ("unsat", None)], seen)
    c = Complete(to_ops(net, (3,)), net, 3, 3.0, None, "milp", attack_steps=0, timeout=30)
    from ticketlab.verify.bounds import alpha_crown, margin_spec, pre_bounds

    lo, hi = input_box(x[None], 3.0, None)
    pre, _ = pre_bounds(c.ops, lo, hi, "crown")
    lb = alpha_crown(c.ops, lo, hi, margin_spec(torch.tensor([y]), 3).double(), pre=pre).lower[0]
    others = [j for j in range(3) if j != y]
    assert (lb <= 0).all(), "the example needs both margins open"
    v = timed(c, x, y)
    assert (v.verdict, v.by) == ("verified", "milp")
    assert [j for j, _ in seen] == [others[i] for i in torch.argsort(lb).tolist()]  # lowest bound first
    assert 0 < seen[0][1] <= 30 and seen[1][1] <= seen[0][1]  # each gets the time left


@pytest.mark.parametrize("answer", ["timeout", "unknown"])
def test_a_solver_that_gives_up_ends_the_sample_with_its_answer(monkeypatch, answer):
    net, x, y = sample()
    fake_solver(monkeypatch, [(answer, None)])
    v = timed(Complete(to_ops(net, (3,)), net, 3, 0.3, None, "milp", attack_steps=0, shortcut=False), x, y)
    assert (v.verdict, v.by) == (answer, "milp")


def test_no_time_left_is_a_timeout_before_the_solver_is_asked(monkeypatch):
    net, x, y = sample()
    seen = []
    fake_solver(monkeypatch, [], seen)
    c = Complete(to_ops(net, (3,)), net, 3, 0.3, None, "milp", attack_steps=0, timeout=0.0, shortcut=False)
    v = timed(c, x, y)
    assert (v.verdict, v.by) == ("timeout", "milp") and seen == []


def test_a_solver_point_is_clipped_into_the_box_and_rechecked_by_the_model(monkeypatch):
    net, x, y = sample()
    lo, hi = input_box(x[None], 0.3, None)
    # a point far outside the box: clipped to a corner of it; the model decides whether it flips
    far = (x + 100).numpy()
    fake_solver(monkeypatch, [("sat", far)])
    v = Complete(to_ops(net, (3,)), net, 3, 0.3, None, "milp", attack_steps=0, shortcut=False)(x, y)
    corner = hi[0]
    from ticketlab.verify.complete import _margin, _pgd_push

    m = _margin(net, corner, y)
    if m <= 0:
        _, m = _pgd_push(net, corner, y, lo[0], hi[0])
    assert v.verdict == ("falsified" if m > 0 else "unknown") and v.by == "milp"
    assert isinstance(v.seconds, float) and 0 <= v.seconds < 60  # seconds spent on the sample
    if v.verdict == "falsified":
        assert ((v.counterexample >= lo[0]) & (v.counterexample <= hi[0])).all() and v.margin == pytest.approx(m)


def test_a_solver_point_that_flips_nothing_even_after_pgd_is_unknown_not_falsified(monkeypatch):
    net, x, y = sample()
    fake_solver(monkeypatch, [("sat", x.numpy())])  # the clean point: correctly classified, far from flipping
    v = Complete(to_ops(net, (3,)), net, 3, 1e-6, None, "milp", attack_steps=0, shortcut=False)(x, y)
    assert (v.verdict, v.by, v.counterexample) == ("unknown", "milp", None)


def line_net(*rows):
    """logit_k = a_k * x + b_k of one input x, from rows (a_k, b_k)."""
    net = nn.Sequential(nn.Linear(1, len(rows))).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[a] for a, _ in rows]))
        net[0].bias.copy_(torch.tensor([b for _, b in rows]))
    return net


def test_a_tie_between_logits_is_never_a_counterexample():
    """Every logit 0 everywhere: no point is misclassified and none classified, so neither the clean point,
    the attack nor the solver's minimiser (margin 0) falsifies it, and the bounds (margin 0) do not verify it."""
    net = line_net((0.0, 0.0), (0.0, 0.0))
    x = torch.tensor([0.3], dtype=torch.float64)
    v = timed(Complete(to_ops(net, (1,)), net, 2, 0.5, None, "milp"), x, 0)
    assert (v.verdict, v.by, v.counterexample) == ("unknown", "milp", None)


def test_the_attack_falsifies_with_any_positive_margin_however_small():
    """logits (x, -x) at x = 0.3, label 0, eps 0.5: the margin -2x is largest, 0.4, at x = -0.2."""
    net = line_net((1.0, 0.0), (-1.0, 0.0))
    x = torch.tensor([0.3], dtype=torch.float64)
    v = timed(Complete(to_ops(net, (1,)), net, 2, 0.5, None, "milp"), x, 0)
    assert (v.verdict, v.by) == ("falsified", "attack") and v.margin == pytest.approx(0.4)
    assert float(v.counterexample) == pytest.approx(-0.2)


def test_a_margin_the_bounds_prove_is_not_sent_to_the_solver(monkeypatch):
    """logits (x, -x, -0.5) at x = 0.3, label 0, eps 0.5 (x in [-0.2, 0.8], bounds exact on a linear net): the
    margin over class 2, x + 0.5 >= 0.3, is proven (by less than 1); only class 1's, 2x >= -0.4, is asked."""
    net = line_net((1.0, 0.0), (-1.0, 0.0), (0.0, -0.5))
    x = torch.tensor([0.3], dtype=torch.float64)
    seen = []
    fake_solver(monkeypatch, [("unsat", None)], seen)
    v = timed(Complete(to_ops(net, (1,)), net, 3, 0.5, None, "milp", attack_steps=0), x, 0)
    assert (v.verdict, v.by) == ("verified", "milp") and [j for j, _ in seen] == [1]


def test_the_exact_solver_starts_from_crowns_intermediate_bounds(monkeypatch):
    """The bounds handed to the solver are CROWN's (tighter than IBP's on this two-hidden-layer net)."""
    from ticketlab.verify.bounds import pre_bounds

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.rand(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y, got = int(net(x[None]).argmax()), []

    def make(self, lo, hi, bounds):
        got.append(bounds)
        return lambda y, j, timeout: ("unsat", None)

    monkeypatch.setattr(Complete, "_milp", make)
    c = Complete(to_ops(net, (3,)), net, 3, 0.5, None, "milp", attack_steps=0, shortcut=False)
    timed(c, x, y)
    lo, hi = input_box(x[None], 0.5, None)
    with torch.no_grad():
        want = {m: pre_bounds(c.ops, lo, hi, m)[0] for m in ("crown", "ibp")}
    assert len(got) == 1 and sorted(got[0]) == sorted(want["crown"])
    for i, (a, b) in want["crown"].items():
        assert np.array_equal(got[0][i][0], a[0].reshape(-1).numpy())
        assert np.array_equal(got[0][i][1], b[0].reshape(-1).numpy())
    assert any(not torch.equal(want["crown"][i][1], want["ibp"][i][1]) for i in want["crown"]), "CROWN = IBP here"


@pytest.mark.parametrize("alpha", ["optimized", "last-layer"])
def test_the_shortcut_runs_alpha_crown_with_the_chosen_settings(monkeypatch, alpha):
    import ticketlab.verify.complete as complete
    from ticketlab.verify.bounds import ALPHA

    net, x, y = sample()
    real, got = complete.alpha_crown, []

    def spy(*args, **kwargs):
        got.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(complete, "alpha_crown", spy)
    fake_solver(monkeypatch, [("unsat", None)] * 2)
    timed(Complete(to_ops(net, (3,)), net, 3, 3.0, None, "milp", attack_steps=0, alpha=alpha), x, y)
    assert len(got) == 1 and {k: got[0][k] for k in ALPHA[alpha]} == ALPHA[alpha]


def test_margin_is_the_largest_other_logit_minus_the_true_one():
    from ticketlab.verify.complete import _margin

    net = nn.Sequential(nn.Identity())
    assert _margin(net, torch.tensor([1.0, 3.0, 2.5], dtype=torch.float64), 1) == -0.5
    assert _margin(net, torch.tensor([1.0, 3.0, 2.5], dtype=torch.float64), 0) == 2.0


def test_pgd_push_climbs_the_margin_inside_the_box_and_keeps_the_best_point():
    from ticketlab.verify.complete import _margin, _pgd_push

    net = nn.Sequential(nn.Identity())  # logits = x: the margin for y = 0 is max(x1, x2) - x0
    x0 = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    lo, hi = x0 - 0.3, x0 + 0.3
    best, m = _pgd_push(net, x0, 0, lo, hi, steps=10)
    assert ((best >= lo) & (best <= hi)).all() and m == pytest.approx(_margin(net, best, 0))
    assert m == pytest.approx(0.3 - 0.2)  # x0 down to 0.2, one of the others up to 0.3
    same, m0 = _pgd_push(net, x0, 0, x0, x0, steps=3)  # a box of one point: nothing to climb
    assert torch.equal(same, x0) and m0 == -0.5


def test_lowering_composes_consecutive_affine_ops_and_keeps_nonlinear_layers_apart():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    mean, std = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64)
    layers = lower(to_ops(net, (3,), mean, std))
    assert [la.kind for la in layers] == ["affine", "relu", "affine"] and layers[1].op == 3
    x = torch.rand(5, 3, dtype=torch.float64)
    with torch.no_grad():
        z = net[1](net[0]((x - 0.5) / 0.25))
    assert np.allclose(x.numpy() @ layers[0].A.toarray().T + layers[0].b, z.numpy())
    assert np.allclose(layers[2].A.toarray(), net[3].weight.detach().numpy()) and layers[1].graft is None


def test_lowering_keeps_grafted_neurons_and_max_windows():
    from ticketlab.models.graft import GraftedReLU

    g = GraftedReLU((2, 4), slope=0.3, intercept=0.1)
    g.graft[0, 1] = True
    net = nn.Sequential(nn.Conv1d(1, 2, 1), g, nn.MaxPool1d(2), nn.Flatten(), nn.Linear(4, 2)).double()
    layers = lower(to_ops(net, (1, 4)))
    assert [la.kind for la in layers] == ["affine", "relu", "max", "affine"]
    assert layers[1].graft.tolist() == [False, True, False, False, False, False, False, False]
    assert layers[1].slope[1] == pytest.approx(0.3) and layers[1].intercept[1] == pytest.approx(0.1)
    assert layers[2].windows.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    pool2 = lower(to_ops(nn.Sequential(nn.MaxPool2d(2)).double(), (1, 2, 4)))
    assert pool2[0].windows.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7]]


def _grafted_net(seed):
    from ticketlab.models.graft import GraftedReLU

    torch.manual_seed(seed)
    g = GraftedReLU((6,), slope=0.3, intercept=0.1)
    g.graft[:2] = True
    return nn.Sequential(nn.Linear(2, 6), g, nn.Linear(6, 3)).double(), (2,)


def _pooled_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(1, 2, 2), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(2, 3)).double(), (1, 3)


@pytest.mark.parametrize("make", [_grafted_net, _pooled_net])
@pytest.mark.parametrize("seed", range(3))
def test_the_milps_optimum_is_the_networks_margin_at_its_minimiser_and_below_every_sample(make, seed):
    """The MILP is exact, not a relaxation: its minimum of logit_y - logit_j is what the network gives at the
    minimiser (a relaxation's optimum sits where its variables are not the network's activations), and no
    sampled point of the box has a lower margin (soundness)."""
    from scipy.optimize import milp

    from ticketlab.verify.bounds import pre_bounds

    net, shape = make(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 0 and p.dtype == torch.float64 and p.requires_grad:
                p.normal_()
    ops = to_ops(net, shape)
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = int(net(x).argmax())
    lo, hi = input_box(x, 0.5, None)
    with torch.no_grad():
        pre, _ = pre_bounds(ops, lo, hi, "crown")
    bounds = flat_bounds(pre)
    box, cons, integrality, logits, n0 = Complete(
        ops, net, 3, 0.5, None, "milp", attack_steps=0, shortcut=False
    )._milp_program(lo[0], hi[0], bounds)
    g = torch.Generator().manual_seed(9)
    samples = lo + (hi - lo) * torch.rand(20000, *shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = net(samples)
    for j in (j for j in range(3) if j != y):
        c = np.zeros(len(integrality))
        c[logits[y]], c[logits[j]] = 1.0, -1.0
        res = milp(c, integrality=integrality, bounds=box, constraints=cons)
        assert res.status == 0
        point = torch.as_tensor(res.x[:n0]).view(1, *shape)
        with torch.no_grad():
            at = net(point)[0]
        assert float(at[y] - at[j]) == pytest.approx(res.fun, abs=1e-6)
        assert res.fun <= float((out[:, y] - out[:, j]).min()) + 1e-9


def test_a_solver_counterexample_that_flips_the_prediction_is_falsified_with_its_margin_and_time(monkeypatch):
    net, x, y = sample()
    eps = 3.0
    lo, hi = input_box(x[None], eps, None)
    pts = lo + (hi - lo) * torch.rand(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        flips = pts[net(pts).argmax(1) != y]
    assert len(flips) > 0
    fake_solver(monkeypatch, [("sat", flips[0].numpy())] * 2)
    v = Complete(to_ops(net, (3,)), net, 3, eps, None, "milp", attack_steps=0, shortcut=False)(x, y)
    from ticketlab.verify.complete import _margin

    assert (v.verdict, v.by) == ("falsified", "milp") and torch.equal(v.counterexample, flips[0])
    assert v.margin == pytest.approx(_margin(net, flips[0], y)) and v.margin > 0
    assert isinstance(v.seconds, float) and 0 <= v.seconds < 60


def test_marabou_answers_a_max_pool_margin_in_process_as_the_milp_does():
    """Marabou's max constraint, built and solved in this process on a conv + max-pool net: each margin's
    sat/unsat is the MILP's verdict for it, and a sat point flips the margin when the network is run."""
    pytest.importorskip("maraboupy")
    from ticketlab.verify.bounds import pre_bounds
    from ticketlab.verify.complete import _marabou_solve

    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    ops = to_ops(net, (1, 3, 3))
    assert "max" in [layer.kind for layer in lower(ops)]
    g, seen = torch.Generator().manual_seed(0), set()
    for eps in (0.05, 0.5, 2.0, 4.0):
        x = torch.randn(1, 3, 3, generator=g, dtype=torch.float64)
        y = int(net(x[None]).argmax())
        lo, hi = input_box(x[None], eps, None)
        with torch.no_grad():
            pre, _ = pre_bounds(ops, lo, hi, "crown")
        bounds = flat_bounds(pre)
        c = Complete(ops, net, 3, eps, None, "marabou", attack_steps=0, shortcut=False)
        milp = Complete(ops, net, 3, eps, None, "milp", attack_steps=0, shortcut=False)(x, y)
        statuses = []
        for j in (j for j in range(3) if j != y):
            q, logits, inputs = c._marabou_query(lo[0], hi[0], bounds)
            status, point = _marabou_solve(q, logits, inputs, y, j, 10)
            statuses.append(status)
            if status == "sat":
                out = net(torch.as_tensor(point).reshape(1, 1, 3, 3))[0].detach()
                assert float(out[j] - out[y]) > -1e-6
        assert milp.verdict == ("falsified" if "sat" in statuses else "verified"), (eps, statuses, milp)
        seen.add(milp.verdict)
    assert seen == {"verified", "falsified"}


def test_float32_ops_and_model_get_the_verdicts_of_their_float64_copies():
    """The library recipe (to_ops of a float32 model, then Complete) works: Complete solves in float64 copies of
    the ops and re-checks counterexamples on a float64 copy of the model, leaving the caller's model as it was."""
    seen = set()
    for seed in range(4):
        net32 = tiny(seed).float()
        with torch.no_grad():
            for p in net32.parameters():
                p.normal_()
        net64 = copy.deepcopy(net32).double()
        c32 = Complete(to_ops(net32, (3,)), net32, 3, 0.5, None, "milp", attack_steps=0, shortcut=False)
        c64 = Complete(to_ops(net64, (3,)), net64, 3, 0.5, None, "milp", attack_steps=0, shortcut=False)
        g = torch.Generator().manual_seed(seed)
        for _ in range(3):
            x = torch.randn(3, generator=g)
            y = int(net32(x[None]).argmax())
            a, b = c32(x, y), c64(x.double(), y)
            assert a.verdict == b.verdict and a.by == b.by == "milp", (seed, a, b)
            seen.add(a.verdict)
        assert all(p.dtype == torch.float32 for p in net32.parameters())
    assert seen == {"verified", "falsified"}


# -- Marabou's query: no variable Marabou would pin, constants folded out ------------------------------------------


def narrow_net(w=1e-6):
    """h1 = 0.5 + w x and h2 = 0.5 - w x (ranges w wide over x in [0, 1]), h3 = relu(x); logits
    (h1 + h2, 2 h3) = (1, 2x): class 0 at x = 0.25, class 1 for x > 0.5 (margin 1 at x = 1)."""
    net = nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[w], [-w], [1.0]]))
        net[0].bias.copy_(torch.tensor([0.5, 0.5, 0.0]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
        net[2].bias.zero_()
    return net


@pytest.mark.parametrize("solver", ["milp", "marabou"])
def test_neurons_narrower_than_marabous_fixing_threshold_do_not_make_a_falsifiable_sample_verified(solver):
    """Marabou 2.0 fixes a variable whose range is under 1e-5 wide at its lower bound: h1 pinned forces x = 0,
    h2 pinned forces x = 1, and the feasible query became unsat ("verified" with a margin-1 counterexample).
    The query is scaled so that no range is that narrow; both solvers find the flip."""
    if solver == "marabou":
        pytest.importorskip("maraboupy")
    net = narrow_net()
    x = torch.tensor([0.25], dtype=torch.float64)
    v = Complete(to_ops(net, (1,)), net, 2, 0.75, (0.0, 1.0), solver, attack_steps=0, shortcut=False)(x, 0)
    assert v.verdict == "falsified" and v.margin > 0.5
    assert int(net(v.counterexample[None]).argmax()) == 1


def test_marabous_unsat_is_not_trusted_where_a_range_stays_too_narrow_beyond_the_scales_cap():
    """x in [0, 0.4]: 2x < 1 everywhere, so the margin is unsat. With ranges 1e-6 wide the query is scaled
    and Marabou's unsat is "verified"; with ranges 1e-12 wide they stay 1e-7 wide at the cap (1e6), where
    Marabou could have fixed them, so its unsat is "unknown"."""
    pytest.importorskip("maraboupy")
    x = torch.tensor([0.2], dtype=torch.float64)
    verdicts = []
    for w in (1e-6, 1e-12):
        net = narrow_net(w)
        c = Complete(to_ops(net, (1,)), net, 2, 0.2, (0.0, 1.0), "marabou", attack_steps=0, shortcut=False)
        verdicts.append(c(x, 0).verdict)
    assert verdicts == ["verified", "unknown"]


def test_the_query_scale_makes_the_narrowest_range_a_thousandth_wide_within_its_cap():
    from ticketlab.verify.complete import _scale

    assert _scale(np.array([1e-6, 2.0, np.inf, 0.0])) == pytest.approx(1e3)  # zero and infinite widths ignored
    assert _scale(np.array([5e-4, 0.1])) == pytest.approx(2.0)
    assert _scale(np.array([0.5, 3.0])) == 1.0  # never below 1
    assert _scale(np.array([1e-12])) == 1e6  # capped
    assert _scale(np.array([0.0, np.inf])) == 1.0


def constants_net():
    """A 3-input net with a constant active neuron (zero weights, bias 0.7), a dead one (bias -0.3) and two
    live ones; the third input fixed by the box."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
        net[0].weight[:2] = 0.0
        net[0].bias[:2] = torch.tensor([0.7, -0.3])
    return net


def test_marabous_query_holds_no_variable_with_equal_bounds_and_answers_as_exhaustive_search():
    """Fixed inputs, zero-weight neurons and dead ReLUs are folded into the equations' scalars (Marabou 2.0
    mishandles variables with equal bounds); every margin's sat/unsat is exhaustive search's, over boxes whose
    third input has lo == hi, and a sat point lies in the box with that input at its value."""
    pytest.importorskip("maraboupy")
    from ticketlab.verify.bounds import pre_bounds
    from ticketlab.verify.complete import _marabou_solve

    net = constants_net()
    ops = to_ops(net, (3,))
    g, seen = torch.Generator().manual_seed(0), set()
    for _ in range(6):
        x = torch.randn(3, generator=g, dtype=torch.float64)
        y = int(net(x[None]).argmax())
        lo, hi = input_box(x[None], 0.8, None)
        lo[0, 2] = hi[0, 2] = x[2]
        with torch.no_grad():
            pre, _ = pre_bounds(ops, lo, hi, "crown")
        bounds = flat_bounds(pre)
        c = Complete(ops, net, 3, 0.8, None, "marabou", attack_steps=0, shortcut=False)
        for j in (j for j in range(3) if j != y):
            q, logits, inputs = c._marabou_query(lo[0], hi[0], bounds)
            n = q.getNumberOfVariables()
            assert all(q.getLowerBound(v) < q.getUpperBound(v) for v in range(n))
            assert list(inputs[0] >= 0) == [True, True, False] and inputs[1][2] == x[2]
            status, point = _marabou_solve(q, logits, inputs, y, j, 10)
            exact = exhaustive_min_margin(net, lo[0].numpy(), hi[0].numpy(), y, j)
            if abs(exact) > 1e-7:
                assert status == ("unsat" if exact > 0 else "sat"), (j, exact)
                seen.add(status)
            if status == "sat":
                p = torch.as_tensor(point)
                assert p[2] == x[2] and ((p >= lo[0] - 1e-9) & (p <= hi[0] + 1e-9)).all()
                out = net(p[None])[0].detach()
                assert float(out[j] - out[y]) > -1e-6
    assert seen == {"sat", "unsat"}


def test_a_margin_whose_logits_the_box_fixes_is_answered_without_solving():
    """Every input fixed: both logits are constants and the margin is decided from them, with the input as the
    point when it is sat."""
    pytest.importorskip("maraboupy")
    from ticketlab.verify.bounds import pre_bounds
    from ticketlab.verify.complete import _marabou_solve

    net = constants_net()
    ops = to_ops(net, (3,))
    x = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64)
    out = net(x[None])[0].detach()
    lo = hi = x[None].clone()
    with torch.no_grad():
        pre, _ = pre_bounds(ops, lo, hi, "crown")
    bounds = flat_bounds(pre)
    c = Complete(ops, net, 3, 0.0, None, "marabou", attack_steps=0, shortcut=False)
    for y in range(3):
        for j in (j for j in range(3) if j != y):
            q, logits, inputs = c._marabou_query(lo[0], hi[0], bounds)
            assert q.getNumberOfVariables() == 0
            status, point = _marabou_solve(q, logits, inputs, y, j, 10)
            assert status == ("sat" if out[j] >= out[y] else "unsat")
            if status == "sat":
                assert torch.equal(torch.as_tensor(point), x)


def test_a_max_pool_window_mixing_constants_and_variables_gets_the_milps_answer():
    """Pixels the box fixes make some conv outputs of a pool window constants (conv -> max-pool, no ReLU, so
    a variable can sit below a constant): the window's max is c + relu(max(variables) - c) for its largest
    constant c (no variable fixed at c). Marabou decides every margin, each as the MILP does, every sat point
    inside the box with the fixed pixels at their values."""
    pytest.importorskip("maraboupy")
    from ticketlab.verify.bounds import pre_bounds

    seen = []
    for seed, eps in itertools.product((0, 2), (0.2, 0.6, 1.0, 1.5, 2.5)):
        if eps == 0.2:
            torch.manual_seed(seed)
            net = nn.Sequential(nn.Conv2d(1, 1, 2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 3)).double()
            with torch.no_grad():
                for p in net.parameters():
                    p.normal_()
            ops = to_ops(net, (1, 5, 5))
            g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 5, 5, generator=g, dtype=torch.float64)
        y = int(net(x[None]).argmax())
        lo, hi = input_box(x[None], eps, None)
        lo[0, 0, :2], hi[0, 0, :2] = x[0, :2], x[0, :2]  # rows 0-1 fixed: conv row 0 is constant
        with torch.no_grad():
            pre, _ = pre_bounds(ops, lo, hi, "crown")
        bounds = flat_bounds(pre)
        c = Complete(ops, net, 3, eps, None, "marabou", attack_steps=0, shortcut=False)
        milp, marabou = c._milp(lo[0], hi[0], bounds), c._marabou(lo[0], hi[0], bounds)
        for j in (j for j in range(3) if j != y):
            status, point = marabou(y, j, 10)
            assert status == milp(y, j, 10)[0], (eps, j, status)
            seen.append(status)
            if status == "sat":
                p = torch.as_tensor(point).reshape(1, 5, 5)
                assert torch.equal(p[0, :2], x[0, :2]) and ((p >= lo[0] - 1e-9) & (p <= hi[0] + 1e-9)).all()
                out = net(p[None])[0].detach()
                assert float(out[j] - out[y]) > -1e-6
    assert seen.count("sat") >= 3 and seen.count("unsat") >= 3


def test_marabous_exit_codes_become_statuses_with_unsat_trusted_only_where_no_range_is_narrow():
    from ticketlab.verify.complete import _status

    assert [_status(c, 1.0) for c in ("sat", "unsat", "TIMEOUT", "timeout", "ERROR", "")] == [
        "sat",
        "unsat",
        "timeout",
        "timeout",
        "unknown",
        "unknown",
    ]
    assert (_status("unsat", 1e-4), _status("unsat", 9.9e-5), _status("sat", 1e-9)) == ("unsat", "unknown", "sat")


def test_a_scaled_query_keeps_a_constant_logit_scaled_and_gives_its_point_in_the_inputs_units():
    """logit0 = 1 (a constant), logit1 = 2 relu(x) + (h1 - h2) with h1, h2 ranges 1e-6 wide, so the query is
    scaled by about 1e3: over x in [0, 1] the margin is sat at a point in the box where logit1 >= logit0; over
    [0, 0.4] (2x + 2e-6 x < 1) it is unsat."""
    pytest.importorskip("maraboupy")
    from ticketlab.verify.bounds import pre_bounds
    from ticketlab.verify.complete import _marabou_solve

    net = narrow_net()
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]]))
        net[2].bias.copy_(torch.tensor([1.0, 0.0]))
    ops = to_ops(net, (1,))
    c = Complete(ops, net, 2, 0.5, None, "marabou", attack_steps=0, shortcut=False)
    statuses = []
    for hi_ in (1.0, 0.4):
        lo, hi = torch.tensor([[0.0]], dtype=torch.float64), torch.tensor([[hi_]], dtype=torch.float64)
        with torch.no_grad():
            pre, _ = pre_bounds(ops, lo, hi, "crown")
        bounds = flat_bounds(pre)
        q, logits, inputs = c._marabou_query(lo[0], hi[0], bounds)
        assert logits[0][0] == -1 and logits[1][0] == 1.0 and logits[2] > 100
        status, point = _marabou_solve(q, logits, inputs, 0, 1, 10)
        statuses.append(status)
        if status == "sat":
            p = torch.as_tensor(point)
            out = net(p[None])[0].detach()
            assert 0.0 <= float(p[0]) <= hi_ and float(out[1] - out[0]) > -1e-6
    assert statuses == ["sat", "unsat"]


def test_constant_logits_over_a_box_of_free_inputs_are_decided_with_the_boxs_corner_as_the_point():
    """A first layer of zero weights makes every logit a constant although the inputs vary: a tie
    (logit_j == logit_y) is sat, with the box's lower corner as the point; a strict loss is unsat."""
    pytest.importorskip("maraboupy")
    from ticketlab.verify.bounds import pre_bounds
    from ticketlab.verify.complete import _marabou_solve

    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3)).double()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([0.5, -0.2]))
        net[2].weight.copy_(torch.tensor([[1.0, 3.0], [1.0, 3.0], [-1.0, 0.0]]))
        net[2].bias.copy_(torch.tensor([0.1, 0.1, 0.0]))  # logits (0.6, 0.6, -0.5)
    ops = to_ops(net, (2,))
    lo = torch.tensor([[-1.0, 0.5]], dtype=torch.float64)
    hi = lo + 1e-4  # ranges 1e-4 wide: the query is scaled by 10
    with torch.no_grad():
        pre, _ = pre_bounds(ops, lo, hi, "crown")
    bounds = flat_bounds(pre)
    c = Complete(ops, net, 3, 0.5, None, "marabou", attack_steps=0, shortcut=False)
    answers = {}
    for y, j in ((0, 1), (1, 0), (0, 2), (2, 0)):
        q, logits, inputs = c._marabou_query(lo[0], hi[0], bounds)
        assert list(inputs[0] >= 0) == [True, True] and (logits[0] < 0).all() and logits[2] == pytest.approx(10)
        answers[y, j] = _marabou_solve(q, logits, inputs, y, j, 10)
    assert [answers[k][0] for k in ((0, 1), (1, 0), (0, 2), (2, 0))] == ["sat", "sat", "unsat", "sat"]
    assert np.allclose(answers[0, 1][1], lo[0].numpy(), rtol=0, atol=1e-12)


def _equations(q, capfd) -> set:
    """The query's equations, each as (frozenset of (variable, coefficient), scalar), read from Marabou's dump."""
    capfd.readouterr()
    q.dump()
    text = capfd.readouterr().out.split("Equations:")[1]
    eqs = set()
    for line in filter(None, (s.strip() for s in text.splitlines())):
        lhs, rhs = line.split("=")
        terms = frozenset((int(v), float(c)) for c, v in (t.split("x") for t in lhs.split()))
        eqs.add((terms, float(rhs)))
    return eqs


def _ranges(q) -> list:
    return [(q.getLowerBound(v), q.getUpperBound(v)) for v in range(q.getNumberOfVariables())]


def test_marabous_query_of_a_grafted_mlp_is_the_hand_worked_one(capfd):
    """x0 in [0, 1], x1 fixed at 0.5: z0 = x0 - 1 (dead at its upper bound 0: folded to 0), z1 = x0 (active at
    its lower bound 0: passes through; its given bounds [-0.5, 1.5] are looser than the box's and not used),
    z2 = x0 - 0.5 (unstable: a ReLU, with the given bounds [-0.4, 0.45] that are tighter), z3 = 2 x1 = 1
    (constant; grafted 3 z - 1 = 2), z4 = z5 = 2 x0 grafted with slopes 0.5 and -0.5 (ranges [0.5, 1.5] and
    [-0.5, 0.5]; z5's given bounds [0, 1.8], after a constant neuron, make it [-0.4, 0.5]), z6 = 5 + 1e-17 x0
    (a range below 5's rounding: the constant 5). Every range is the interval through the equations, clipped
    to the given bounds."""
    pytest.importorskip("maraboupy")
    from ticketlab.models.graft import GraftedReLU

    g = GraftedReLU((7,))
    g.graft[3:6] = True
    net = nn.Sequential(nn.Linear(2, 7), g, nn.Linear(7, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1], [1, 0], [1, -1], [0, 2], [2, 0], [2, 0], [1e-17, 0]]))
        net[0].bias.copy_(torch.tensor([-1.5, 0, 0, 0, 0, 0, 5]))
        g.slope.copy_(torch.tensor([0.4, 0.4, 0.4, 3.0, 0.5, -0.5, 0.4]))
        g.intercept.copy_(torch.tensor([0.0, 0, 0, -1, 0.5, 0.5, 0]))
        net[2].weight.copy_(torch.tensor([[1.0, 1, 1, 1, 1, 1, 1], [0, 1, -1, 0, 1, -1, 0]]))
        net[2].bias.copy_(torch.tensor([0.0, 0.25]))
    ops = to_ops(net, (2,))
    bounds = {1: (np.array([-1.0, -0.5, -0.4, 1, 0, 0, 5]), np.array([0.0, 1.5, 0.45, 1, 2, 1.8, 5]))}
    c = Complete(ops, net, 2, 0.5, None, "marabou", attack_steps=0, shortcut=False)
    lo, hi = torch.tensor([0.0, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.5], dtype=torch.float64)
    q, logits, inputs = c._marabou_query(lo, hi, bounds)
    want = [(0, 1), (-1, 0), (0, 1), (-0.4, 0.45), (0, 2), (0, 1.8), (0, 0.45), (0.5, 1.5), (-0.4, 0.5)]
    want += [(7.1, 10.45), (-0.2, 3.15)]
    assert _ranges(q) == [pytest.approx(w, abs=1e-12) for w in want]
    assert _equations(q, capfd) == {
        (frozenset({(1, 1.0), (0, -1.0)}), -1.0),
        (frozenset({(2, 1.0), (0, -1.0)}), 0.0),
        (frozenset({(3, 1.0), (0, -1.0)}), -0.5),
        (frozenset({(4, 1.0), (0, -2.0)}), 0.0),
        (frozenset({(5, 1.0), (0, -2.0)}), 0.0),
        (frozenset({(7, 1.0), (4, -0.5)}), 0.5),  # the grafted 0.5 z4 + 0.5
        (frozenset({(8, 1.0), (5, 0.5)}), 0.5),  # the grafted -0.5 z5 + 0.5
        (frozenset({(9, 1.0), (2, -1.0), (6, -1.0), (7, -1.0), (8, -1.0)}), 7.0),  # the constants 2 and 5
        (frozenset({(10, 1.0), (2, -1.0), (6, 1.0), (7, -1.0), (8, 1.0)}), 0.25),
    }
    assert logits[0].tolist() == [9, 10] and logits[2] == 1.0 and logits[3] == pytest.approx(0.45)
    assert inputs[0].tolist() == [0, -1] and inputs[1].tolist() == [0.0, 0.5]


def test_a_given_bound_that_would_empty_a_variables_range_is_not_applied():
    """Bounds disjoint from a variable's interval range, or touching it in one point (as rounding can make two
    sound bounds of a nearly fixed neuron), would make the query infeasible or fix a variable: the interval
    range is kept. The first neuron, 5 + 1e-17 x, is the constant 5 (the neurons after it still variables)."""
    pytest.importorskip("maraboupy")
    net = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1e-17], [1.0], [1.0], [1.0]]))
        net[0].bias.copy_(torch.tensor([5.0, -0.5, 0.0, 0.0]))
        net[2].weight.copy_(torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]]))
        net[2].bias.zero_()
    ops = to_ops(net, (1,))
    # z1 = x - 0.5 in [-0.5, 0.5] given [0.6, 0.7]; z2 = x given [0.2, 0.9]; z3 = x given [1, 2]
    bounds = {1: (np.array([5.0, 0.6, 0.2, 1.0]), np.array([5.0, 0.7, 0.9, 2.0]))}
    c = Complete(ops, net, 2, 0.5, None, "marabou", attack_steps=0, shortcut=False)
    q, _, _ = c._marabou_query(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), bounds)
    assert _ranges(q) == [(0, 1), (-0.5, 0.5), (0.2, 0.9), (0, 1), (0, 0.5), (5, 5.5), (0.2, 1.9)]


def test_a_nonlinear_layer_straight_on_the_inputs_keeps_input_variable_0_a_variable():
    """A ReLU, a grafted ReLU and a max-pool applied to the inputs themselves: input 0 (variable 0) in [-1, 1]
    is an unstable ReLU's input, a grafted neuron's (slope -2; input 1's slope 0 makes it the constant 0.3) and
    a pool window's with input 1 in [0.2, 0.6], and again with input 1 in [-0.6, -0.2]."""
    pytest.importorskip("maraboupy")
    from ticketlab.models.graft import GraftedReLU

    g = GraftedReLU((2,))
    g.graft[:] = True
    with torch.no_grad():
        g.slope.copy_(torch.tensor([-2.0, 0.0]))
        g.intercept.copy_(torch.tensor([0.5, 0.3]))
    nets = {
        "relu": (nn.Sequential(nn.ReLU(), nn.Linear(2, 2)), (2,), (0.2, 0.6)),
        "graft": (nn.Sequential(g, nn.Linear(2, 2)), (2,), (0.2, 0.6)),
        "max": (nn.Sequential(nn.MaxPool1d(2), nn.Flatten(), nn.Linear(1, 2)), (1, 2), (0.2, 0.6)),
        # both inputs can be below 0: no constant 0 joins the window
        "max-": (nn.Sequential(nn.MaxPool1d(2), nn.Flatten(), nn.Linear(1, 2)), (1, 2), (-0.6, -0.2)),
    }
    got = {}
    for name, (net, shape, (lo1, hi1)) in nets.items():  # input 0 in [-1, 1], input 1 in [lo1, hi1]
        lo = torch.tensor([-1.0, lo1], dtype=torch.float64)
        hi = torch.tensor([1.0, hi1], dtype=torch.float64)
        net = net.double()
        with torch.no_grad():
            net[-1].weight.fill_(1.0)
            net[-1].bias.zero_()
        ops = to_ops(net, shape)
        c = Complete(ops, net, 2, 0.5, None, "marabou", attack_steps=0, shortcut=False)
        q, _, _ = c._marabou_query(lo.reshape(shape), hi.reshape(shape), {0: (lo.numpy(), hi.numpy())})
        got[name] = _ranges(q)
    out = (0.2, 1.6)  # relu(x0) + x1
    assert got["relu"] == [(-1, 1), (0.2, 0.6), (0, 1), pytest.approx(out), pytest.approx(out)]
    assert got["graft"] == [(-1, 1), (0.2, 0.6), (-1.5, 2.5)] + [pytest.approx((-1.2, 2.8))] * 2
    assert got["max"] == [(-1, 1), (0.2, 0.6), (0.2, 1), (0.2, 1), (0.2, 1)]
    assert got["max-"] == [(-1, 1), (-0.6, -0.2), (-0.6, 1), (-0.6, 1), (-0.6, 1)]


def test_marabous_query_of_max_windows_is_the_hand_worked_one(capfd):
    """An identity 1x1 conv and a 2x2 max-pool over a 2x6 image. Window A: the constant 0.5 and variables in
    [0, 1], [0.2, 0.9] and [-1, 0.3] (below 0.5: never the max, left out): g = max of the two in [0.2, 1],
    the output 0.5 + relu(g - 0.5) in [0.5, 1]. Window B: the constant 0.4, one variable in [0.4, 0.8] that
    is never below it, and a constant 0.3 and a variable in [0, 0.35] that cannot be the max: the output is
    that one variable, no new one. Window C: the constant 0.5 and a variable in [0, 0.5] that can tie it but
    never exceed it: the constant 0.5."""
    pytest.importorskip("maraboupy")
    net = nn.Sequential(nn.Conv2d(1, 1, 1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[3].weight.copy_(torch.tensor([[1.0, 1, 1], [-2, 1, 2]]))
        net[3].bias.copy_(torch.tensor([0.0, 1]))
    ops = to_ops(net, (1, 2, 6))
    lo = torch.tensor([[[0.5, 0, 0.4, 0.4, 0.5, 0], [0.2, -1, 0.3, 0, -1, 0.1]]], dtype=torch.float64)
    hi = torch.tensor([[[0.5, 1, 0.4, 0.8, 0.5, 0.5], [0.9, 0.3, 0.3, 0.35, 0.2, 0.1]]], dtype=torch.float64)
    bounds = {1: (lo.reshape(-1).numpy(), hi.reshape(-1).numpy())}
    c = Complete(ops, net, 2, 0.5, None, "marabou", attack_steps=0, shortcut=False)
    q, logits, inputs = c._marabou_query(lo, hi, bounds)
    free = [(0, 1), (0.4, 0.8), (0, 0.5), (0.2, 0.9), (-1, 0.3), (0, 0.35), (-1, 0.2)]
    want = free + free + [(0.2, 1), (-0.3, 0.5), (0, 0.5), (0.5, 1), (1.4, 2.3), (0.4, 1.8)]
    assert _ranges(q) == [pytest.approx(w, abs=1e-12) for w in want]
    eqs = {(frozenset({(v + 7, 1.0), (v, -1.0)}), 0.0) for v in range(7)}
    eqs |= {
        (frozenset({(15, 1.0), (14, -1.0)}), -0.5),  # h = g - 0.5
        (frozenset({(17, 1.0), (16, -1.0)}), 0.5),  # out = relu(h) + 0.5
        (frozenset({(18, 1.0), (17, -1.0), (8, -1.0)}), 0.5),  # window C's constant 0.5 moved right
        (frozenset({(19, 1.0), (17, 2.0), (8, -1.0)}), 2.0),
    }
    assert _equations(q, capfd) == eqs
    assert inputs[0].tolist() == [-1, 0, -1, 1, -1, 2, 3, 4, -1, 5, 6, -1]
    assert inputs[1][[0, 2, 4, 8, 11]].tolist() == [0.5, 0.4, 0.5, 0.3, 0.1]
    assert logits[0].tolist() == [18, 19] and logits[3] == pytest.approx(0.35)


def test_lowering_windows_of_a_non_square_max_pool_and_chains_in_the_ops_dtype():
    """A 2x3 max-pool over a 2x6 image: windows of 6 cells. A float32 net lowers (its chains computed in
    float32, the ops' dtype) to its float64 copy's layers; a chain of a Flatten alone is the identity."""
    pool = lower(to_ops(nn.Sequential(nn.MaxPool2d((2, 3))).double(), (1, 2, 6)))
    assert pool[0].windows.tolist() == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11]]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))
    got, want = lower(to_ops(net, (3,))), lower(to_ops(copy.deepcopy(net).double(), (3,)))
    assert [la.kind for la in got] == ["affine", "relu", "affine"]
    for a, b in zip(got, want):
        if a.kind == "affine":
            assert np.allclose(a.A.toarray(), b.A.toarray(), atol=1e-6) and np.allclose(a.b, b.b, atol=1e-6)
    flat = lower(to_ops(nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(4, 2)).double(), (2, 2)))
    assert np.array_equal(flat[0].A.toarray(), np.eye(4)) and np.array_equal(flat[0].b, np.zeros(4))


def test_pgd_push_steps_an_eighth_of_the_box_keeps_still_inputs_and_earlier_ties():
    """Logits (0, x0), label 0: the margin is x0 (input 1 unused, its gradient 0). Box
    [0, 1]^2 from (0.5, 0.5): one step moves x0 by 1/8 and leaves x1; a constant model never replaces the start;
    the default is 20 steps (one model call per step for the gradient, one for the margin, one at the start)."""
    from ticketlab.verify.complete import _pgd_push

    lin = nn.Sequential(nn.Linear(2, 2)).double()
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        lin[0].bias.zero_()
    lo, hi = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    x0 = torch.tensor([0.5, 0.5], dtype=torch.float64)
    best, m = _pgd_push(lin, x0, 0, lo, hi, steps=1)
    assert best[0] == pytest.approx(0.625, abs=1e-9) and best[1] == 0.5 and m == pytest.approx(0.625, abs=1e-9)
    flat = nn.Sequential(nn.Linear(2, 2)).double()
    with torch.no_grad():
        flat[0].weight.zero_()
        flat[0].bias.zero_()
    best, m = _pgd_push(flat, x0, 0, lo, hi, steps=3)
    assert best is x0 and m == 0.0
    calls = []

    def counted(x):
        calls.append(1)
        return lin(x)

    _pgd_push(counted, x0, 0, lo, hi)
    assert len(calls) == 1 + 2 * 20


def test_the_attack_is_pgd_from_a_seeded_random_point_of_the_box_for_the_set_number_of_steps():
    from ticketlab.verify.complete import _pgd_push

    net, x, y = sample()
    lo, hi = input_box(x[None], 0.3, None)
    start = lo[0] + (hi[0] - lo[0]) * torch.rand(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for steps in (1, 3):
        c = Complete(to_ops(net, (3,)), net, 3, 0.3, None, "milp", attack_steps=steps)
        got, m = c._attack(x, y, lo[0], hi[0])
        want, wm = _pgd_push(c.model_fn, start, y, lo[0], hi[0], steps=steps)
        assert torch.equal(got, want) and m == wm and not torch.equal(got, x)
    c = Complete(to_ops(net, (3,)), net, 3, 0.3, None, "milp", attack_steps=0)
    got, m = c._attack(x, y, lo[0], hi[0])  # no attack: the clean point and its margin
    from ticketlab.verify.complete import _margin

    assert got is x and m == _margin(net, x, y)


def test_completes_defaults_and_refusals(monkeypatch):
    import sys

    net, x, y = sample()
    ops = to_ops(net, (3,))
    c = Complete(ops, net, 3, 0.3, None)
    assert (c.solver, c.timeout, c.attack_steps, c.alpha, c.shortcut) == ("milp", 60.0, 50, "optimized", True)
    with pytest.raises(UserError) as e:
        Complete(ops, net, 3, 0.3, None, alpha="tight")
    assert str(e.value) == "unknown alpha-CROWN setting 'tight'; choose one of: optimized, last-layer"
    with pytest.raises(UserError) as e:
        Complete(ops, net, 3, 0.3, None, solver="gurobi")
    assert str(e.value) == "unknown --solver 'gurobi'; choose one of: " + ", ".join(SOLVERS)
    monkeypatch.setitem(sys.modules, "maraboupy", None)  # not installed
    Complete(ops, net, 3, 0.3, None, solver="milp")
    Complete(ops, net, 3, 0.3, None, solver="bab")
    with pytest.raises(UserError) as e:
        Complete(ops, net, 3, 0.3, None, solver="marabou")
    assert str(e.value) == "--solver marabou needs maraboupy: pip install 'ticketlab[verify]' (or use --solver milp)"


class _Res:
    def __init__(self, **kw):
        self.x, self.fun, self.status = None, None, 1
        self.__dict__.update(kw)


@pytest.mark.parametrize(
    "res, want",
    [
        (_Res(mip_dual_bound=0.5), "unsat"),  # HiGHS's dual bound proves the margin at the time limit
        (_Res(mip_dual_bound=0.0), "timeout"),  # a bound of 0 proves nothing (verified needs > 0)
        (_Res(mip_dual_bound=-1.0), "timeout"),
        (_Res(mip_dual_bound=float("nan")), "timeout"),
        (_Res(mip_dual_bound=float("inf")), "timeout"),
        (_Res(), "timeout"),  # no dual bound reported
        (_Res(status=0, x=np.array([0.1, 0.2, 0.3]), fun=0.2), "unsat"),
        (_Res(status=1, x=np.array([0.1, 0.2, 0.3]), fun=-0.2), "sat"),
    ],
)
def test_the_milps_answer_at_its_time_limit_is_decided_by_its_dual_bound(monkeypatch, res, want):
    import ticketlab.verify.complete as complete

    net, x, y = sample()
    seen = []

    def fake(c, **kw):
        seen.append(kw["options"])
        return res

    monkeypatch.setattr(complete, "milp", fake)
    c = Complete(to_ops(net, (3,)), net, 3, 0.3, None, "milp")
    lo, hi = input_box(x[None], 0.3, None)
    with torch.no_grad():
        pre, _ = complete.pre_bounds(c.ops, lo, hi, "crown")
    bounds = flat_bounds(pre)
    solve = c._milp(lo[0], hi[0], bounds)
    j = (y + 1) % 3
    status, point = solve(y, j, 2.5)
    assert status == want and (point is None) == (want != "sat")
    solve(y, j, -1.0)
    assert seen == [{"time_limit": 2.5, "disp": False}, {"time_limit": 0.01, "disp": False}]


def _fake_child(kind):
    def child(send, *args):
        if kind == "late":
            time.sleep(1.0)
            send.send(("unsat", None))
        elif kind == "silent":
            time.sleep(30)
        os._exit(0)  # "dies": exits without an answer

    return child


@pytest.mark.parametrize("kind, want", [("late", "unsat"), ("dies", "unknown"), ("silent", "timeout")])
def test_marabous_child_is_waited_for_five_seconds_past_its_limit_then_killed(monkeypatch, kind, want):
    """A child that answers 1 s after a 0.1 s limit is heard (Marabou overruns its own timeout); one that
    exits without answering is unknown; one that never answers is a timeout after limit + 5 s, and is killed."""
    import multiprocessing as mp

    import ticketlab.verify.complete as complete

    pytest.importorskip("maraboupy")
    net, x, y = sample()
    monkeypatch.setattr(complete, "_marabou_child", _fake_child(kind))
    monkeypatch.setattr(Complete, "_marabou_query", lambda self, lo, hi, bounds: (None, None, None))
    solve = Complete(to_ops(net, (3,)), net, 3, 0.3, None, "marabou")._marabou(None, None, None)
    t = time.perf_counter()
    assert solve(y, (y + 1) % 3, 0.1) == (want, None)
    assert time.perf_counter() - t < 8 and not mp.active_children()


def test_a_relu_whose_upper_bound_is_exactly_0_is_dead_in_the_milp():
    """z = x over x in [-1, 0], logits (relu(z), -0.5), label 0: the margin relu(z) + 0.5 is 0.5 everywhere.
    A neuron with u = 0 is the constant 0; passed on as z (as if active) it would reach -0.5, a false "sat"."""
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 2)).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0], [0.0]]))
        net[2].bias.copy_(torch.tensor([0.0, -0.5]))
    c = Complete(to_ops(net, (1,)), net, 2, 0.5, None, "milp")
    lo, hi = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)
    relu = next(la.op for la in c.layers if la.kind == "relu")
    solve = c._milp(lo, hi, {relu: (np.array([-1.0]), np.array([0.0]))})
    assert solve(0, 1, 10.0) == ("unsat", None)
