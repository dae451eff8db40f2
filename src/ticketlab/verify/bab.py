"""Branch and bound on ReLU splits with beta-CROWN bounds (Wang et al. 2021): one margin decided exactly.

A domain is the input box with some unstable ReLUs fixed, active (z >= 0) or inactive (z <= 0). Its lower bound
on the margin is alpha-CROWN's over the root's intermediate bounds with each split neuron's bounds cut at 0 (sound
on the domain: the root's bounds hold on the whole box) plus beta-CROWN's Lagrangian term -beta * sign * z per
split constraint (beta >= 0, optimised with the slopes; without it the bound would forget what a split says about
the layers before it). Each step takes the ``batch`` domains with the lowest bounds, splits each on the unstable
neuron whose upper line costs its bound most (the intercept term of BaBSR, Bunel et al. 2020), and bounds all the
children at once, warm-started from their parent's slopes and multipliers. Every bound also gives the box corner
that minimises its linear bound, which the model is run on: a counterexample found on the way is real. A domain
with no unstable ReLU left is a linear program on its region, solved exactly (HiGHS). The margin is verified
when no domain is left open.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linprog

from .bounds import backward_linear, minimise, relu_relaxation
from .graph import MaxPool, Op, ReLU


@dataclass
class Settings:
    """Branch and bound's settings: ``batch`` domains split per step (2 x batch bounded at once), ``steps``
    Adam steps per bound on the slopes (lr ``lr_alpha``) and multipliers (``lr_beta``), decayed by ``lr_decay``
    a step (alpha,beta-CROWN's values); ``root_steps`` for the first bound; at most ``max_domains`` open (memory);
    ``share`` of a margin's time limit before the MILP, the exact fallback, gets what is left (``Complete``)."""

    batch: int = 64
    steps: int = 20
    root_steps: int = 20
    lr_alpha: float = 0.1
    lr_beta: float = 0.05
    lr_decay: float = 0.98
    max_domains: int = 100_000
    share: float = 0.5


@dataclass
class Result:
    """``status`` verified, falsified (``point``: an input in the box the model does not classify as y, found while
    bounding this margin, so it may favour another class), timeout or unknown (a leaf's LP minimum sits on the
    decision boundary, ``point`` there; or a leaf no LP decides, a max-pool window left inexact: no point), with
    the number of domains bounded."""

    status: str
    point: torch.Tensor | None = None
    domains: int = 0
    lower: float = float("-inf")  # the lowest bound of a domain still open (the margin's proven lower bound)
    seconds: float = 0.0
    leaves: int = 0  # domains decided by their linear program


class _Domains:
    """Open domains as batched tensors: split signs (int8, +1 active, -1 inactive, 0 free), slopes, multipliers,
    branching scores and lower bounds, one row per domain."""

    def __init__(self, sign, alpha, beta, score, lower):
        self.sign, self.alpha, self.beta, self.score, self.lower = sign, alpha, beta, score, lower

    def __len__(self) -> int:
        return len(self.lower)

    def take(self, idx: torch.Tensor) -> _Domains:
        return _Domains(
            {i: v[idx] for i, v in self.sign.items()},
            {i: v[idx] for i, v in self.alpha.items()},
            {i: v[idx] for i, v in self.beta.items()},
            self.score[idx],
            self.lower[idx],
        )

    def pop(self, n: int) -> _Domains:
        """The ``n`` domains with the lowest bounds, removed from the store."""
        order = torch.argsort(self.lower)
        out, keep = self.take(order[:n]), self.take(order[n:])
        self.__dict__.update(keep.__dict__)
        return out

    def add(self, other: _Domains) -> None:
        self.sign = {i: torch.cat([v, other.sign[i]]) for i, v in self.sign.items()}
        self.alpha = {i: torch.cat([v, other.alpha[i]]) for i, v in self.alpha.items()}
        self.beta = {i: torch.cat([v, other.beta[i]]) for i, v in self.beta.items()}
        self.score = torch.cat([self.score, other.score])
        self.lower = torch.cat([self.lower, other.lower])


class BaB:
    """Branch and bound for the margins of one sample: ``ops`` (float64), ``model_fn`` (the network in pixel
    space, on which every candidate counterexample is run), the box [lo, hi] (1, *input shape) and ``pre``, the
    intermediate bounds on the whole box (alpha-CROWN's, from ``Bounds.pre``). ``margin(y, j, deadline)`` decides
    logit_y - logit_j > 0 over the box."""

    def __init__(self, ops: list[Op], model_fn, lo: torch.Tensor, hi: torch.Tensor, pre: dict, settings=None):
        self.ops, self.model_fn, self.lo, self.hi = ops, model_fn, lo, hi
        self.cfg = settings or Settings()
        self.relus = [i for i, op in enumerate(ops) if isinstance(op, ReLU)]
        self.pre = {i: (a.detach(), b.detach()) for i, (a, b) in pre.items()}
        self.sizes = [math.prod(ops[i].in_shape) for i in self.relus]
        self.offsets = np.cumsum([0] + self.sizes)

    # ---- the bound of a batch of domains ----
    def _domain_pre(self, sign: dict, d: int) -> dict:
        pre = {}
        for i, (l, u) in self.pre.items():
            l, u = l.expand(d, *l.shape[1:]), u.expand(d, *u.shape[1:])
            if i in sign:
                s = sign[i]
                l, u = torch.where(s > 0, l.clamp(min=0), l), torch.where(s < 0, u.clamp(max=0), u)
            pre[i] = (l, u)
        return pre

    def _bound(self, C: torch.Tensor, sign: dict, alpha: dict, beta: dict, steps: int, deadline=math.inf):
        """(lower bounds (D,), the minimising corners (D, n_in), branching scores (D, N), slopes, multipliers);
        the optimisation stops early at ``deadline`` (every bound on the way is sound)."""
        d = len(next(iter(sign.values()))) if sign else 1
        lo, hi = self.lo.expand(d, *self.lo.shape[1:]), self.hi.expand(d, *self.hi.shape[1:])
        Cd = C.expand(d, *C.shape[1:])
        pre = self._domain_pre(sign, d)
        a = {i: alpha[i].clone().requires_grad_(True) for i in self.relus}
        b = {i: beta[i].clone().requires_grad_(True) for i in self.relus}
        sf = {i: sign[i].to(lo.dtype) for i in self.relus}

        def once(record=None):
            betas = {i: -(b[i] * sf[i])[:, None] for i in self.relus}
            return backward_linear(self.ops, len(self.ops), Cd, pre, a, betas, record)

        best = None
        if steps > 0 and self.relus:
            opt = torch.optim.Adam(
                [
                    {"params": list(a.values()), "lr": self.cfg.lr_alpha},
                    {"params": list(b.values()), "lr": self.cfg.lr_beta},
                ]
            )
            decay = torch.optim.lr_scheduler.ExponentialLR(opt, self.cfg.lr_decay)
            params = list(a.values()) + list(b.values())
            with torch.enable_grad():
                for _ in range(steps):
                    if time.perf_counter() >= deadline:
                        break
                    bound = minimise(*once(), lo, hi)[:, 0]
                    best = bound.detach() if best is None else torch.maximum(best, bound.detach())
                    grads = torch.autograd.grad(-bound.sum(), params, allow_unused=True)
                    for p, g in zip(params, grads):
                        p.grad = g
                    opt.step()
                    decay.step()
                    with torch.no_grad():
                        for p in a.values():
                            p.clamp_(0, 1)
                        for p in b.values():
                            p.clamp_(min=0)
        with torch.no_grad():
            record: dict = {}
            bias, lam = once(record)
            bound = minimise(bias, lam, lo, hi)[:, 0]
            best = bound if best is None else torch.maximum(best, bound)
            corner = torch.where(lam[:, 0] > 0, lo.flatten(1), hi.flatten(1))
            scores = self._scores(record, pre, d)
        return best, corner, scores, {i: v.detach() for i, v in a.items()}, {i: v.detach() for i, v in b.items()}

    def _scores(self, record: dict, pre: dict, d: int) -> torch.Tensor:
        """(D, N) over every ReLU neuron: its relaxation's cost to the bound (``record``: the backward pass's, which
        reaches every ReLU) where any is > 0 in the domain, else its upper line's intercept (how loose it is); -1
        on neurons that are not unstable (never split). A net without ReLUs has N = 0: every domain is a leaf."""
        if not self.relus:
            return torch.zeros(d, 0, dtype=self.lo.dtype)
        cost, width, free = [], [], []
        for i in self.relus:
            _, tu, _, unstable = relu_relaxation(*pre[i], self.ops[i])
            cost.append(record[i][:, 0].reshape(d, -1))
            width.append(tu.reshape(d, -1))
            free.append(unstable.reshape(d, -1))
        cost, width, free = torch.cat(cost, 1), torch.cat(width, 1), torch.cat(free, 1)
        cost = torch.where(free, cost, torch.zeros_like(cost))
        score = torch.where((cost > 0).any(1, keepdim=True), cost, width)
        return torch.where(free, score, torch.full_like(score, -1.0))

    # ---- leaves: a linear program ----
    @torch.no_grad()
    def _leaf(self, C: torch.Tensor, sign: dict):
        """("verified" | "sat" | "unknown", point) for one domain with no unstable ReLU: the network is affine on
        its region {x in the box: sign * z(x) >= 0 for every split}, so the margin's minimum there is an LP."""
        pre = self._domain_pre(sign, 1)
        for i, op in enumerate(self.ops):
            if isinstance(op, MaxPool) and not bool(op.relaxation(*pre[i])[1].all()):
                return "unknown", None
        bias, a = backward_linear(self.ops, len(self.ops), C, pre)
        rows, rhs = [], []
        for i in self.relus:
            s = sign[i].reshape(-1)
            ks = s.nonzero().flatten()
            if len(ks) == 0:
                continue
            lam = torch.zeros(1, len(ks), self.sizes[self.relus.index(i)], dtype=C.dtype)
            lam[0, torch.arange(len(ks)), ks] = 1
            cb, cg = backward_linear(self.ops, i, lam.view(1, len(ks), *self.ops[i].in_shape), pre)
            sk = s[ks].to(C.dtype)
            rows.append((-sk[:, None] * cg[0]).numpy())  # sign * (cb + cg . x) >= 0
            rhs.append((sk * cb[0]).numpy())
        box = list(zip(self.lo.flatten().tolist(), self.hi.flatten().tolist()))
        res = linprog(
            a[0, 0].numpy(),
            A_ub=np.concatenate(rows) if rows else None,
            b_ub=np.concatenate(rhs) if rows else None,
            bounds=box,
            method="highs",
        )
        if res.status == 2:  # infeasible: the region is empty
            return "verified", None
        if res.status != 0:
            return "unknown", None
        if res.fun + float(bias[0, 0]) > 0:
            return "verified", None
        return "sat", torch.as_tensor(res.x, dtype=C.dtype)

    # ---- the search ----
    def _falsifies(self, points: torch.Tensor, y: int) -> int | None:
        """The index of the first point (a row of ``points``, flat) the model does not classify as ``y``."""
        with torch.no_grad():
            out = self.model_fn(points.view(len(points), *self.lo.shape[1:])).double()
        others = torch.cat([out[:, :y], out[:, y + 1 :]], 1)
        hit = ((others.max(1).values - out[:, y]) > 0).nonzero().flatten()
        return int(hit[0]) if len(hit) else None

    def margin(self, y: int, j: int, deadline: float) -> Result:
        """Decide logit_y - logit_j > 0 over the box by ``deadline`` (a ``time.perf_counter()`` value)."""
        t0, self.leaves = time.perf_counter(), 0
        r = self._search(y, j, deadline)
        r.seconds, r.leaves = time.perf_counter() - t0, self.leaves
        return r

    def _search(self, y: int, j: int, deadline: float) -> Result:
        k = self.ops[-1].out_shape[0]
        C = torch.zeros(1, 1, k, dtype=self.lo.dtype)
        C[0, 0, y], C[0, 0, j] = 1.0, -1.0
        sign = {i: torch.zeros(1, *self.ops[i].in_shape, dtype=torch.int8) for i in self.relus}
        alpha = {i: relu_relaxation(*self.pre[i], self.ops[i])[2][:, None].clone() for i in self.relus}
        beta = {i: torch.zeros(1, *self.ops[i].in_shape, dtype=self.lo.dtype) for i in self.relus}
        found, count = self._step(C, y, sign, alpha, beta, self.cfg.root_steps, deadline), 1
        open_ = None
        while not isinstance(found, Result):
            if open_ is None:
                open_ = found
            else:
                open_.add(found)
            if not len(open_):
                found = Result("verified", None, 0, 0.0)
                break
            if time.perf_counter() >= deadline or len(open_) > self.cfg.max_domains:
                found = Result("timeout", None, 0, float(open_.lower.min()))
                break
            parents = open_.pop(self.cfg.batch)
            n = len(parents)
            pick = parents.score.argmax(1)
            sign = {i: torch.cat([v, v]) for i, v in parents.sign.items()}
            for layer, i in enumerate(self.relus):
                start, stop = self.offsets[layer], self.offsets[layer + 1]
                rows = ((pick >= start) & (pick < stop)).nonzero().flatten()
                if len(rows):
                    flat = sign[i].view(2 * n, -1)
                    flat[rows, pick[rows] - start] = 1
                    flat[rows + n, pick[rows] - start] = -1
            alpha = {i: torch.cat([v, v]) for i, v in parents.alpha.items()}
            beta = {i: torch.cat([v, v]) for i, v in parents.beta.items()}
            found = self._step(C, y, sign, alpha, beta, self.cfg.steps, deadline)
            count += 2 * n
        found.domains = count
        return found

    def _step(self, C, y, sign, alpha, beta, steps, deadline):
        """Bound a batch of domains: a ``Result`` when one's corner falsifies the margin or a leaf ends the search,
        else those still open (``_settle``)."""
        lower, corner, score, alpha, beta = self._bound(C, sign, alpha, beta, steps, deadline)
        if (hit := self._falsifies(corner, y)) is not None:
            return Result("falsified", corner[hit].view(self.lo.shape[1:]), 0, float(lower.min()))
        return self._settle(_Domains(sign, alpha, beta, score, lower), C, y)

    def _settle(self, doms: _Domains, C: torch.Tensor, y: int):
        """The domains still open: those bounded <= 0 with an unstable ReLU left; each one without is solved as
        an LP here. A ``Result`` instead when a leaf falsifies the margin or cannot be decided."""
        open_ = doms.lower <= 0
        leaf = open_ & ~(doms.score >= 0).any(1)
        self.leaves += int(leaf.sum())
        for r in leaf.nonzero().flatten().tolist():
            status, point = self._leaf(C, {i: v[r : r + 1] for i, v in doms.sign.items()})
            if status == "unknown":
                return Result("unknown", None, 0, float(doms.lower[r]))
            if status == "sat":
                x = torch.minimum(torch.maximum(point, self.lo.flatten()), self.hi.flatten())
                if self._falsifies(x[None], y) is not None:
                    return Result("falsified", x.view(self.lo.shape[1:]), 0, float(doms.lower[r]))
                return Result("unknown", x.view(self.lo.shape[1:]), 0, float(doms.lower[r]))
        return doms.take((open_ & ~leaf).nonzero().flatten())
