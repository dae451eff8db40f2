"""Branch and bound with beta-CROWN: its verdicts are exhaustive search's and the MILP's, its domain bounds hold
on the domain and beta tightens them where a split constraint matters, its leaves are exact LPs, its
counterexamples are real, and it stops at its deadline."""

import functools
import time

import pytest
import torch
from test_verify_complete import exhaustive_min_margin, tiny
from torch import nn

from ticketlab.verify.bab import BaB, Result, Settings
from ticketlab.verify.bounds import input_box, pre_bounds
from ticketlab.verify.complete import Complete
from ticketlab.verify.graph import forward, to_ops


def normal_net(seed, **kw):
    net = tiny(seed, **kw)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    return net


@functools.cache
def exact_margin(seed: int, eps: float, j: int) -> float:
    net, x, y = case(seed, eps)
    lo, hi = input_box(x[None], eps, None)
    return exhaustive_min_margin(net, lo[0].numpy(), hi[0].numpy(), y, j)


@functools.cache
def case(seed: int, eps: float):
    net = normal_net(seed, hidden=(3, 3))
    g = torch.Generator().manual_seed(seed * 10 + int(eps * 10))
    x = torch.randn(3, generator=g, dtype=torch.float64)
    return net, x, int(net(x[None]).argmax())


@pytest.mark.parametrize("steps", [20, 0])
def test_bab_verdicts_are_exhaustive_searchs_on_every_margin(steps):
    """steps=0 (CROWN's slopes, no beta) leaves the bounds loose, so the search goes down to its LP leaves."""
    seen, leaves = set(), 0
    for seed in range(6):
        for eps in (0.2, 0.5, 1.0):
            net, x, y = case(seed, eps)
            ops = to_ops(net, (3,))
            lo, hi = input_box(x[None], eps, None)
            search = BaB(ops, net, lo, hi, pre_bounds(ops, lo, hi)[0], Settings(steps=steps, root_steps=steps))
            for j in (k for k in range(3) if k != y):
                r = search.margin(y, j, time.perf_counter() + 30)
                leaves += r.leaves
                if r.status == "falsified":  # a point the model misclassifies (maybe as another class than j)
                    assert ((r.point - x).abs() <= eps + 1e-12).all()
                    assert int(net(r.point[None]).argmax()) != y
                    seen.add("falsified")
                    continue
                assert r.status == "verified", (seed, eps, j, r)
                assert exact_margin(seed, eps, j) > -1e-9, (seed, eps, j)
                seen.add("verified")
    assert seen == {"verified", "falsified"}
    if steps == 0:
        assert leaves > 0


@pytest.mark.parametrize(
    "hidden, seeds, least", [((10, 10), 2, 5), pytest.param((16, 16, 16), 4, 10, marks=pytest.mark.slow)]
)
def test_bab_and_the_milp_agree_where_both_decide(hidden, seeds, least):
    pairs = 0
    for seed in range(seeds):
        net = tiny(seed, hidden=hidden, n_in=8, k=4)
        ops = to_ops(net, (8,))
        g = torch.Generator().manual_seed(seed)
        for eps in (0.1, 0.3, 0.6):
            x = torch.rand(8, generator=g, dtype=torch.float64)
            y = int(net(x[None]).argmax())
            a = Complete(ops, net, 4, eps, (0.0, 1.0), "milp", attack_steps=0, timeout=30, shortcut=False)(x, y)
            b = Complete(ops, net, 4, eps, (0.0, 1.0), "bab", attack_steps=0, timeout=30, shortcut=False)(x, y)
            assert b.by == "bab"
            if "timeout" not in (a.verdict, b.verdict):
                assert a.verdict == b.verdict, (seed, eps, a, b)
                pairs += 1
    assert pairs >= least


def test_bab_and_the_milp_agree_on_a_conv_net():
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(27, 8), nn.ReLU(), nn.Linear(8, 3)
    ).double()
    ops = to_ops(net, (1, 6, 6))
    g = torch.Generator().manual_seed(0)
    verdicts = set()
    for eps in (0.05, 0.2, 0.4):
        for _ in range(3):
            x = torch.rand(1, 6, 6, generator=g, dtype=torch.float64)
            y = int(net(x[None]).argmax())
            a = Complete(ops, net, 3, eps, (0.0, 1.0), "milp", attack_steps=0, timeout=30, shortcut=False)(x, y)
            b = Complete(ops, net, 3, eps, (0.0, 1.0), "bab", attack_steps=0, timeout=30, shortcut=False)(x, y)
            assert a.verdict == b.verdict, (eps, a, b)
            verdicts.add(a.verdict)
    assert verdicts == {"verified", "falsified"}


def hand_net():
    """o = -relu(-x) on x in [-1, 1], a first neuron z1 = x beside it: split z1 >= 0, the true minimum is 0;
    the split neuron alone (no beta) leaves CROWN's -1 (the upper line of relu(-x) over [-1, 1], minimised at
    x = -1, outside the split's region); with beta the bound is that line's minimum over x >= 0: -1/2."""
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[0.0, -1.0]]))
        net[2].bias.zero_()
    return net


def test_beta_brings_a_split_domains_bound_from_minus_one_to_minus_a_half():
    net = hand_net()
    ops = to_ops(net, (1,))
    lo, hi = torch.tensor([[-1.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    C = torch.ones(1, 1, 1, dtype=torch.float64)
    sign = {1: torch.tensor([[1, 0]], dtype=torch.int8)}
    alpha = {1: torch.zeros(1, 1, 2, dtype=torch.float64)}
    beta = {1: torch.zeros(1, 2, dtype=torch.float64)}
    for lr_beta, want in ((0.0, -1.0), (0.05, -0.5)):
        search = BaB(ops, net, lo, hi, pre_bounds(ops, lo, hi)[0], Settings(lr_beta=lr_beta, steps=200))
        lower, *_, b = search._bound(C, sign, alpha, beta, 200)
        assert float(lower[0]) == pytest.approx(want, abs=1e-3)
        assert float(b[1][0, 1]) == 0.0  # an unsplit neuron's multiplier stays 0 (its sign is 0)


def test_a_domains_bound_holds_at_every_sampled_point_of_its_region():
    for seed in range(5):
        net = normal_net(seed, hidden=(6, 6), n_in=4, k=3)
        ops = to_ops(net, (4,))
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(4, generator=g, dtype=torch.float64)
        lo, hi = input_box(x[None], 0.8, None)
        search = BaB(ops, net, lo, hi, pre_bounds(ops, lo, hi)[0])
        pts = lo + (hi - lo) * torch.rand(20000, 4, generator=g, dtype=torch.float64)
        z1 = pts @ net[0].weight.T + net[0].bias  # the first layer's pre-activations
        free = ((search.pre[1][0] < 0) & (search.pre[1][1] > 0))[0].nonzero().flatten()
        k = int(free[0])
        for s in (1, -1):
            sign = {i: torch.zeros(1, *ops[i].in_shape, dtype=torch.int8) for i in search.relus}
            sign[1][0, k] = s
            alpha = {i: torch.full((1, 1, *ops[i].in_shape), 0.5, dtype=torch.float64) for i in search.relus}
            beta = {i: torch.zeros(1, *ops[i].in_shape, dtype=torch.float64) for i in search.relus}
            C = torch.tensor([[[1.0, -1.0, 0.0]]], dtype=torch.float64)
            lower = search._bound(C, sign, alpha, beta, 30)[0]
            inside = pts[s * z1[:, k] >= 0]
            with torch.no_grad():
                margins = (forward(ops, inside) @ C[0].T)[:, 0]
            assert len(inside) > 100 and float(lower[0]) <= float(margins.min()) + 1e-9


@torch.no_grad()
def test_a_leafs_lp_is_the_exact_minimum_over_its_activation_region():
    """Every unstable neuron fixed by its phase at x (a region holding x): the LP's answer against 50,000
    samples of the region, on margins where it is sat and where it is verified."""
    statuses = set()
    g = torch.Generator().manual_seed(0)
    for seed in range(4):
        net = normal_net(seed)
        ops = to_ops(net, (3,))
        x = torch.randn(3, generator=g, dtype=torch.float64)
        lo, hi = input_box(x[None], 1.0, None)
        search = BaB(ops, net, lo, hi, pre_bounds(ops, lo, hi)[0])
        y = int(net(x[None]).argmax())
        sign = {i: torch.zeros(1, *ops[i].in_shape, dtype=torch.int8) for i in search.relus}
        for i in search.relus:
            l, u = search.pre[i]
            free = (l < 0) & (u > 0)
            sign[i][free] = torch.where(forward(ops[:i], x[None]) > 0, 1, -1)[free].to(torch.int8)
        pts = lo + (hi - lo) * torch.rand(50000, 3, generator=g, dtype=torch.float64)
        inside = torch.ones(len(pts), dtype=torch.bool)
        for i in search.relus:
            s = sign[i].expand(len(pts), -1)
            inside &= ((s == 0) | (s * forward(ops[:i], pts) >= 0)).all(1)
        for j in (k for k in range(3) if k != y):
            C = torch.zeros(1, 1, 3, dtype=torch.float64)
            C[0, 0, y], C[0, 0, j] = 1.0, -1.0
            status, point = search._leaf(C, sign)
            sampled = float((forward(ops, pts[inside]) @ C[0].T).min())
            statuses.add(status)
            if status == "sat":  # the minimiser is in the region, no higher than any sample there, and <= 0
                m = float((forward(ops, point[None]) @ C[0].T)[0, 0])
                assert m <= sampled + 1e-9 and m <= 1e-9
                for i in search.relus:
                    s = sign[i][0]
                    assert ((s == 0) | (s * forward(ops[:i], point[None])[0] >= -1e-9)).all()
            else:
                assert status == "verified" and sampled > 0
    assert statuses == {"sat", "verified"}


def test_a_deadline_already_past_is_a_timeout_with_the_open_bound():
    net = tiny(0, hidden=(16, 16, 16), n_in=8, k=4)
    ops = to_ops(net, (8,))
    x = torch.full((8,), 0.5, dtype=torch.float64)
    y = int(net(x[None]).argmax())
    lo, hi = input_box(x[None], 0.6, (0.0, 1.0))
    search = BaB(ops, net, lo, hi, pre_bounds(ops, lo, hi)[0])
    j = (y + 1) % 4
    r = search.margin(y, j, time.perf_counter() - 1)
    if r.status != "falsified":  # the root's corner may already misclassify
        assert r.status == "timeout" and r.domains == 1 and r.lower <= 0


def test_a_leaf_beyond_its_lp_sends_the_margin_to_the_milp(monkeypatch):
    net = tiny(1, hidden=(8, 8), n_in=6, k=4)
    ops = to_ops(net, (6,))
    x = torch.full((6,), 0.5, dtype=torch.float64)
    y = int(net(x[None]).argmax())
    monkeypatch.setattr(BaB, "margin", lambda self, y, j, deadline: Result("unknown", None, 7, -1.0, 0.1))
    asked = []
    real = Complete._milp

    def milp(self, lo, hi, bounds):
        solve = real(self, lo, hi, bounds)
        return lambda y, j, t: asked.append(j) or solve(y, j, t)

    monkeypatch.setattr(Complete, "_milp", milp)
    c = Complete(ops, net, 4, 0.3, (0.0, 1.0), "bab", attack_steps=0, shortcut=False)
    want = Complete(ops, net, 4, 0.3, (0.0, 1.0), "milp", attack_steps=0, shortcut=False)(x, y)
    asked.clear()
    v = c(x, y)
    assert asked and v.verdict == want.verdict and c.domains >= 7


@pytest.mark.parametrize("share", [0.25, 0.5])
def test_a_margin_branch_and_bound_leaves_open_in_its_share_of_the_time_goes_to_the_milp(monkeypatch, share):
    """Branch and bound gets ``share`` of the margin's time; on a timeout the MILP decides with what is left."""
    net = tiny(1, hidden=(8, 8), n_in=6, k=4)
    ops = to_ops(net, (6,))
    x = torch.full((6,), 0.5, dtype=torch.float64)
    y = int(net(x[None]).argmax())
    deadlines, searched, asked = [], [], []

    def margin(self, y, j, deadline):
        deadlines.append(deadline - time.perf_counter())
        searched.append((y, j))
        time.sleep(0.2)
        return Result("timeout", None, 3, -1.0, 0.2)

    monkeypatch.setattr(BaB, "margin", margin)
    real = Complete._milp

    def milp(self, lo, hi, bounds):
        solve = real(self, lo, hi, bounds)
        return lambda y, j, t: asked.append((y, j, t)) or solve(y, j, t)

    monkeypatch.setattr(Complete, "_milp", milp)
    c = Complete(ops, net, 4, 0.3, (0.0, 1.0), "bab", 100.0, attack_steps=0, shortcut=False, bab=Settings(share=share))
    want = Complete(ops, net, 4, 0.3, (0.0, 1.0), "milp", attack_steps=0, shortcut=False)(x, y)
    asked.clear()
    v = c(x, y)
    assert v.verdict == want.verdict and c.domains == 3 * len(deadlines)
    assert 100 * share - 1 < deadlines[0] <= 100 * share  # its share of the first margin's time
    assert 100 - 1 < asked[0][2] <= 100 - 0.2  # the MILP: what the search (0.2 s) left, on the same margins
    assert [a[:2] for a in asked] == searched and all(y_ == y for y_, _ in searched)


def test_the_milp_gets_no_time_a_search_has_used_up(monkeypatch):
    net = tiny(1, hidden=(8, 8), n_in=6, k=4)
    ops = to_ops(net, (6,))
    x = torch.full((6,), 0.5, dtype=torch.float64)
    y = int(net(x[None]).argmax())
    monkeypatch.setattr(BaB, "margin", lambda self, y, j, d: time.sleep(0.3) or Result("timeout", None, 1, -1.0, 0.3))
    asked = []
    monkeypatch.setattr(Complete, "_milp", lambda self, lo, hi, b: lambda y, j, t: asked.append(t) or ("timeout", None))
    c = Complete(ops, net, 4, 0.3, (0.0, 1.0), "bab", 0.2, attack_steps=0, shortcut=False, bab=Settings(share=1.0))
    assert c(x, y).verdict == "timeout" and asked == [0.0]


def test_a_margin_branch_and_bound_verifies_is_not_asked_again_and_it_runs_with_completes_settings(monkeypatch):
    net = tiny(1, hidden=(8, 8), n_in=6, k=4)
    ops = to_ops(net, (6,))
    x = torch.full((6,), 0.5, dtype=torch.float64)
    y = int(net(x[None]).argmax())
    cfgs, asked = [], []
    monkeypatch.setattr(BaB, "margin", lambda self, y, j, d: cfgs.append(self.cfg) or Result("verified", None, 5, 1.0))
    monkeypatch.setattr(Complete, "_milp", lambda self, lo, hi, b: lambda y, j, t: asked.append(j) or ("sat", None))
    settings = Settings(batch=3)
    c = Complete(ops, net, 4, 0.3, (0.0, 1.0), "bab", attack_steps=0, shortcut=False, bab=settings)
    v = c(x, y)
    assert (v.verdict, v.by) == ("verified", "bab") and not asked and len(cfgs) == 3
    assert all(cfg is settings for cfg in cfgs) and c.domains == 15


def test_a_search_reports_its_domains_leaves_bound_and_seconds_and_stops_at_its_domain_cap():
    """A margin (seed 11, eps 0.8, 2 over 1; exact minimum 0.044) whose root bound is open: past its deadline
    the search is a timeout at the root with the root's open bound; with time it is verified after 7
    domains and no LP leaf (no point, no open bound: 0); with at most 1 domain open it still is (never more
    than 1 is open at a check); with at most 0 it stops at the root."""
    net, x, y = case(11, 0.8)
    assert (y, exact_margin(11, 0.8, 2) > 0) == (1, True)
    ops = to_ops(net, (3,))
    lo, hi = input_box(x[None], 0.8, None)
    pre = pre_bounds(ops, lo, hi)[0]

    def run(deadline, **kw):
        t = time.perf_counter()
        r = BaB(ops, net, lo, hi, pre, Settings(**kw)).margin(1, 2, t + deadline)
        assert 0 <= r.seconds <= time.perf_counter() - t
        return r

    r = run(-1.0)
    assert (r.status, r.point, r.domains, r.leaves) == ("timeout", None, 1, 0) and r.lower < 0
    search = BaB(ops, net, lo, hi, pre)  # the root's bound unoptimised: the deadline stops its Adam steps
    C = torch.tensor([[[0.0, 1.0, -1.0]]], dtype=torch.float64)
    assert r.lower == float(search._bound(C, *_root(search, C), 0)[0][0])
    for kw in ({}, {"max_domains": 1}):
        r = run(30.0, **kw)
        assert (r.status, r.point, r.domains, r.leaves, r.lower) == ("verified", None, 7, 0, 0.0)
        assert type(r.domains) is int
    r = run(30.0, max_domains=0)
    assert (r.status, r.domains) == ("timeout", 1) and r.lower < 0


def test_a_point_falsifies_only_where_another_class_is_strictly_above_the_true_one():
    """Logits = the point itself: (0, 1, -1) is class 1 (the middle class, label 0); (1, 1, 0) a tie (not a
    counterexample); with label 1, (0, 0, 1) is class 2, the class after it."""
    lo = torch.zeros(1, 3, dtype=torch.float64)
    search = BaB([], lambda p: p, lo, lo, {})
    pts = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    assert search._falsifies(pts, 0) == 1
    assert search._falsifies(pts[:1], 0) is None
    assert search._falsifies(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), 1) == 0
    assert search._falsifies(torch.tensor([[2.0, 0.0, 1.0]], dtype=torch.float64), 1) == 0


def test_a_counterexample_found_after_splitting_comes_with_the_batchs_lowest_bound():
    """Seed 8, eps 0.8, margin 0 over 1 (exact minimum -0.103): falsified by a child's corner after one split
    (3 domains), the point in the box and misclassified, its bound the children's lowest (finite, below 0)."""
    net, x, y = case(8, 0.8)
    ops = to_ops(net, (3,))
    lo, hi = input_box(x[None], 0.8, None)
    r = BaB(ops, net, lo, hi, pre_bounds(ops, lo, hi)[0]).margin(0, 1, time.perf_counter() + 30)
    assert (y, r.status, r.domains) == (0, "falsified", 3)
    assert -1 < r.lower < 0 and ((r.point >= lo[0]) & (r.point <= hi[0])).all()
    assert int(net(r.point[None]).argmax()) != 0


def _identity_search():
    """A search whose model's logits are its input, over [-1, 1]^3 (domains and leaves are set by hand)."""
    lo, hi = -torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    return BaB([], lambda p: p, lo, hi, {})


def _doms(lower, score):
    from ticketlab.verify.bab import _Domains

    return _Domains({}, {}, {}, torch.tensor(score, dtype=torch.float64), torch.tensor(lower, dtype=torch.float64))


def test_settle_keeps_domains_bounded_at_or_below_0_with_a_neuron_to_split_and_solves_the_rest_as_lps():
    """Bounds (0, 0.5, -0.2, -0.3) and scores: row 0's one unstable neuron scores exactly 0, row 3 has none
    (a leaf). A bound of 0 proves nothing (kept); 0.5 is proven; the leaf goes to its LP (verified here)."""
    search, asked = _identity_search(), []
    search._leaf = lambda C, sign: asked.append(sign) or ("verified", None)
    search.leaves = 5
    doms = _doms([0.0, 0.5, -0.2, -0.3], [[0.0, -1.0], [0.3, -1.0], [0.1, 0.2], [-1.0, -1.0]])
    kept = search._settle(doms, None, 0)
    assert kept.lower.tolist() == [0.0, -0.2] and len(asked) == 1 and search.leaves == 6


@pytest.mark.parametrize(
    "leaf, want",
    [
        (("unknown", None), ("unknown", None)),
        (("sat", torch.tensor([0.0, 0.5, 3.0], dtype=torch.float64)), ("falsified", [0.0, 0.5, 1.0])),
        (("sat", torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)), ("unknown", [0.5, 0.5, 0.0])),
    ],
)
def test_a_leafs_answer_ends_the_search_with_its_domains_bound(leaf, want):
    """A leaf no LP decides is unknown; an LP minimiser is clipped to the box and run through the model: a
    counterexample where another logit is strictly above the label's, else unknown at that point (a tie)."""
    search = _identity_search()
    search._leaf, search.leaves = (lambda C, sign: leaf), 0
    search._bound = lambda C, sign, alpha, beta, steps, deadline: (
        torch.tensor([-0.25], dtype=torch.float64),
        torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64),  # the corner is class 0: no counterexample
        torch.tensor([[-1.0]], dtype=torch.float64),  # no unstable neuron: a leaf
        {},
        {},
    )
    r = search._step(None, 0, {}, {}, {}, 0, 0.0)
    assert (r.status, r.lower) == (want[0], -0.25)
    assert (r.point is None) if want[1] is None else r.point.tolist() == want[1]


def _root(search, C):
    """The root domain of ``search``: no split, CROWN's slopes, multipliers 0 (what ``_search`` starts from)."""
    from ticketlab.verify.bounds import relu_relaxation

    alpha = {i: relu_relaxation(*search.pre[i], search.ops[i])[2][:, None] for i in search.relus}
    zeros = {i: torch.zeros(1, *search.ops[i].in_shape, dtype=C.dtype) for i in search.relus}
    return {i: z.to(torch.int8) for i, z in zeros.items()}, alpha, zeros


def test_a_net_without_relus_is_one_leaf_bounded_exactly_and_decided_by_its_lp():
    """An affine net's margin: one domain, bounded to its exact minimum (w.mid - |w|.rad + c) at the corner
    that takes each pixel's lower end where its coefficient is > 0 and its upper end elsewhere (pixel 2 has
    no weight: its upper end); no neuron to branch on, the margin decided at its one domain either way."""
    net = nn.Sequential(nn.Linear(3, 3)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]))
        net[0].bias.copy_(torch.tensor([0.625, 0.0, 0.0]))
    ops = to_ops(net, (3,))
    lo, hi = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64), torch.tensor([[0.5, 0.25, 1.0]], dtype=torch.float64)
    search = BaB(ops, net, lo, hi, pre_bounds(ops, lo, hi)[0])
    C = torch.tensor([[[1.0, -1.0, 0.0]]], dtype=torch.float64)  # margin 0.625 + x0 - 3 x1: min -0.125
    lower, corner, score, _, _ = search._bound(C, {}, {}, {}, 20)
    assert lower.tolist() == [-0.125] and corner.tolist() == [[0.0, 0.25, 1.0]] and score.shape == (1, 0)
    for top, want in ((0.25, "falsified"), (0.125, "verified")):  # at x1 <= 1/8 the margin is >= 1/4
        box = hi.clone()
        box[0, 1] = top
        r = BaB(ops, net, lo, box, pre_bounds(ops, lo, box)[0]).margin(0, 1, time.perf_counter() + 30)
        assert (r.status, r.domains) == (want, 1)


def test_a_domains_bound_is_the_best_over_its_adam_steps_not_the_last():
    """Seed 11, eps 0.8, margin 1 over 2 at the root: one Adam step already lifts the bound (-1.69 -> -1.58),
    the later steps overshoot below it; the bound returned after k steps is the best of the k + 1 bounds met,
    so it never falls as k grows, while the slopes it hands back may bound lower."""
    net, x, _ = case(11, 0.8)
    ops = to_ops(net, (3,))
    lo, hi = input_box(x[None], 0.8, None)
    search = BaB(ops, net, lo, hi, pre_bounds(ops, lo, hi)[0])
    C = torch.tensor([[[0.0, 1.0, -1.0]]], dtype=torch.float64)
    sign, alpha, beta = _root(search, C)
    best, last = [], []
    for k in range(6):
        lower, _, _, a, b = search._bound(C, sign, alpha, beta, k)
        best.append(float(lower[0]))
        last.append(float(search._bound(C, sign, a, b, 0)[0][0]))
    assert best[1] > best[0] + 0.1
    assert all(b1 >= b0 for b0, b1 in zip(best, best[1:])) and all(b >= t for b, t in zip(best, last))
    assert min(t - b for b, t in zip(best, last)) < -1e-3  # where the last step alone would have been lower


def test_a_grafted_neuron_is_never_split_even_where_its_bounds_straddle_0():
    """Two neurons on x in [-1, 1], both unstable as ReLUs; the second grafted (its own line 0.5 x): its score
    is -1 (never branched on), the first's its relaxation's cost, > 0."""
    from ticketlab.verify.graph import Dense, ReLU

    w = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    ops = [
        Dense(w, torch.zeros(2, dtype=torch.float64), False),
        ReLU(
            (2,),
            torch.tensor([False, True]),
            torch.full((2,), 0.5, dtype=torch.float64),
            torch.zeros(2, dtype=torch.float64),
        ),
        Dense(torch.tensor([[-1.0, -1.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), False),
    ]
    lo, hi = -torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    search = BaB(ops, lambda p: p, lo, hi, pre_bounds(ops, lo, hi)[0])
    assert [bool(v) for v in ((search.pre[1][0] < 0) & (search.pre[1][1] > 0))[0]] == [True, True]
    C = torch.ones(1, 1, 1, dtype=torch.float64)
    sign, alpha, beta = _root(search, C)
    score = search._bound(C, sign, alpha, beta, 0)[2]
    assert score[0, 1] == -1.0 and score[0, 0] > 0


def _three_relus(l, u):
    """A search over one layer of 3 ReLUs whose input bounds on the box are set by hand, (1, 3) each."""
    from ticketlab.verify.graph import Dense, ReLU

    f = torch.float64
    ops = [Dense(torch.ones(3, 1, dtype=f), None, False), ReLU((3,)), Dense(torch.ones(1, 3, dtype=f), None, False)]
    box = torch.zeros(1, 1, dtype=f)
    return BaB(ops, lambda p: p, box, box, {1: (torch.tensor([l], dtype=f), torch.tensor([u], dtype=f))})


def test_a_split_sets_its_neurons_bound_to_0_on_its_side_and_leaves_the_others():
    """Bounds (-2, 3), (0.5, 3), (-2, -1): split active (+1) a neuron's lower bound becomes max(l, 0) and split
    inactive (-1) its upper bound min(u, 0); an unsplit one (0) keeps both; each domain its own."""
    search = _three_relus([-2.0, 0.5, -2.0], [3.0, 3.0, -1.0])
    sign = {1: torch.tensor([[1, 1, -1], [-1, 0, 0]], dtype=torch.int8)}
    l, u = search._domain_pre(sign, 2)[1]
    assert l.tolist() == [[0.0, 0.5, -2.0], [-2.0, 0.5, -2.0]]
    assert u.tolist() == [[3.0, 3.0, -1.0], [0.0, 3.0, -1.0]]


def test_a_domains_scores_are_its_relaxation_costs_where_one_is_positive_else_its_upper_lines_intercepts():
    """Neurons on (-1, 1), (-2, 2), (1, 3) (the last stable: -1, never split). Domain 0's backward pass costs
    0.5 on neuron 0: its scores are the costs; domain 1's costs nothing: its scores are the upper lines'
    intercepts -u l / (u - l) (0.5 and 1), each domain deciding for itself."""
    search = _three_relus([-1.0, -2.0, 1.0], [1.0, 2.0, 3.0])
    pre = search._domain_pre({1: torch.zeros(2, 3, dtype=torch.int8)}, 2)
    record = {1: torch.tensor([[[0.5, 0.0, 0.7]], [[0.0, 0.0, 0.0]]], dtype=torch.float64)}
    assert search._scores(record, pre, 2).tolist() == [[0.5, 0.0, -1.0], [0.5, 1.0, -1.0]]
