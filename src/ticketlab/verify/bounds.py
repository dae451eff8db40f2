"""Sound bounds on a network's outputs over an L-inf ball: IBP, CROWN and alpha-CROWN.

- IBP (Gowal et al. 2018): boxes pushed through every layer (centre and radius for affine layers).
- CROWN (Zhang et al. 2018): every output (or specification row) bounded by a linear function of the input,
  built backward through linear relaxations of the ReLUs - the upper line through (l, 0) and (u, u), the lower
  line alpha x with CROWN's adaptive alpha (1 where u > -l, else 0) - and minimised over the input box.
  Pre-activation bounds of every ReLU come from CROWN run to that layer (``intermediate="crown"``), each
  intersected with IBP's (both are sound, so their intersection is); ``intermediate="ibp"`` takes IBP's
  instead: CROWN-IBP (Zhang et al. 2020), the cheap variant certified training uses.
- alpha-CROWN (Xu et al. 2021): the lower slopes of the last bound as free parameters in [0, 1], one per
  specification row and neuron, raised by projected gradient ascent (Adam) on the bound from CROWN's choice;
  every bound is the best seen, so never looser than CROWN. Intermediate bounds are CROWN's (the full method
  also optimises slopes for every intermediate layer; not done here).

Specifications are rows of a matrix C on the logits: ``margin_spec`` gives y_true - y_j for every j != y_true,
so a sample is verified when every lower bound is > 0. Everything is batched, runs on any device and is
differentiable in the model's parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .graph import Dense, MaxPool, Op, ReLU

METHODS = ("ibp", "crown", "alpha-crown")


def input_box(
    x: torch.Tensor, eps: float, pixel_range: tuple[float, float] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The L-inf ball of radius ``eps`` around pixel-space ``x``, clipped to the valid pixel range."""
    lo, hi = x - eps, x + eps
    if pixel_range is not None:
        lo, hi = lo.clamp(*pixel_range), hi.clamp(*pixel_range)
    return lo, hi


def other_classes(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K-1): the classes j != y of each label, in order (the rows of ``margin_spec``)."""
    others = torch.arange(num_classes, device=y.device).expand(len(y), -1)
    return others[others != y[:, None]].view(len(y), num_classes - 1)


def margin_spec(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C (B, K-1, K): row j is e_y - e_j over the classes j != y, so C @ logits are the margins."""
    eye = torch.eye(num_classes, device=y.device)
    return eye[y][:, None, :] - eye[other_classes(y, num_classes)]


def _spec(C: torch.Tensor | None, ops: list[Op], lo: torch.Tensor) -> torch.Tensor:
    """``C`` in the bounds' dtype, or the identity on the outputs (each output bounded itself)."""
    if C is None:
        k = ops[-1].out_shape[0]
        C = torch.eye(k, dtype=lo.dtype, device=lo.device).expand(lo.shape[0], k, k)
    return C.to(lo.dtype)


@dataclass
class Bounds:
    """Bounds of a batch: ``lower`` (and ``upper``) per specification row, and ``pre``, every ReLU's and
    max-pool's input bounds by op index (what stability counts and complete verification reuses)."""

    lower: torch.Tensor  # (B, S) lower bounds on the specification rows (or outputs)
    upper: torch.Tensor | None  # (B, S); None where only lower bounds were computed
    pre: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # op index -> (l, u) of
    # the input of every ReLU and max-pool

    def verified(self) -> torch.Tensor:
        """(B,) True where every specification row is bounded above 0."""
        return (self.lower > 0).all(1)


def stability(ops: list[Op], pre: dict) -> list[dict]:
    """Per ReLU layer: unstable (l < 0 < u), stably active (l >= 0, u > 0) and stably inactive (u <= 0: a
    pruned neuron's l = u = 0 counts here) neurons, summed over the batch; grafted (linear) neurons are
    counted apart, as "grafted", and in none of the others."""
    out = []
    for i, op in enumerate(ops):
        if isinstance(op, ReLU):
            lo, hi = pre[i]
            live = torch.ones_like(lo, dtype=torch.bool) if op.graft is None else ~op.graft.expand_as(lo)
            out.append(
                {
                    "layer": i,
                    "neurons": math.prod(op.in_shape),
                    "unstable": int(((lo < 0) & (hi > 0) & live).sum()),
                    "active": int(((lo >= 0) & (hi > 0) & live).sum()),
                    "inactive": int(((hi <= 0) & live).sum()),
                    "grafted": int((~live).sum()),
                }
            )
    return out


# ---- IBP ----------------------------------------------------------------------------------------------


def _spec_interval(C: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    m = torch.einsum("bsk,bk->bs", C, mid.flatten(1))
    r = torch.einsum("bsk,bk->bs", C.abs(), rad.flatten(1))
    return m - r, m + r


def _spec_last(op: Dense, C: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """IBP of C (W h + b) with C folded into the last layer (tighter than bounding W h + b first)."""
    w = C @ op.weight  # (B, S, in)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    m = torch.einsum("bsi,bi->bs", w, mid)
    if op.bias is not None:
        m = m + C @ op.bias
    r = torch.einsum("bsi,bi->bs", w.abs(), rad)
    return m - r, m + r


def ibp(ops: list[Op], lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None) -> Bounds:
    """Interval bounds of the outputs (or of C @ outputs) over the box [lo, hi]."""
    pre = {}
    for i, op in enumerate(ops):
        if not op.affine:
            pre[i] = (lo, hi)
        if C is not None and i == len(ops) - 1 and isinstance(op, Dense):
            return Bounds(*_spec_last(op, C, lo, hi), pre)
        lo, hi = op.ibp(lo, hi)
    if C is not None:
        return Bounds(*_spec_interval(C, lo, hi), pre)
    return Bounds(lo.flatten(1), hi.flatten(1), pre)


# ---- CROWN --------------------------------------------------------------------------------------------


def relu_relaxation(lo: torch.Tensor, hi: torch.Tensor, op: ReLU | None = None):
    """(upper slope, upper intercept, CROWN's adaptive lower slope, unstable) of ReLU over [lo, hi]. A
    grafted neuron of ``op`` is its own line, upper and lower (``graft_line``), and never unstable."""
    active, unstable = lo >= 0, (lo < 0) & (hi > 0)
    if op is not None and op.graft is not None:
        unstable = unstable & ~op.graft
    denom = torch.where(unstable, hi - lo, torch.ones_like(hi))
    su = torch.where(unstable, hi / denom, active.to(hi.dtype))
    tu = torch.where(unstable, -su * lo, torch.zeros_like(lo))
    sl = torch.where(unstable, (hi >= -lo).to(hi.dtype), active.to(hi.dtype))
    if op is not None and op.graft is not None:
        su, sl = torch.where(op.graft, op.slope, su), torch.where(op.graft, op.slope, sl)
        tu = torch.where(op.graft, op.intercept, tu)
    return su, tu, sl, unstable


def graft_intercept(op: ReLU, like: torch.Tensor) -> torch.Tensor | None:
    """The lower line's intercept per neuron: a grafted neuron's own, 0 for a ReLU's lower line."""
    if op.graft is None:
        return None
    return torch.where(op.graft, op.intercept, torch.zeros_like(op.intercept)).expand_as(like)


def backward(
    ops: list[Op],
    end: int,
    lam: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    pre: dict,
    alphas: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Lower bound over the box [lo, hi] of lam . f(x), f the output of ``ops[:end]``; ``lam`` (B, S, *shape).
    ``alphas``: lower ReLU slopes per op index, (B, S, *shape) in [0, 1], instead of CROWN's choice."""
    b, s = lam.shape[:2]
    bias = lam.new_zeros(b, s)
    lam = lam.reshape(b * s, *lam.shape[2:])
    for i in reversed(range(end)):
        op = ops[i]
        if op.affine:
            bd = op.bias_dot(lam)
            if bd is not None:
                bias = bias + bd.view(b, s)
            lam = op.apply_t(lam)
            continue
        pl, pu = pre[i]
        lv = lam.view(b, s, *lam.shape[1:])
        pos, neg = lv.clamp(min=0), lv.clamp(max=0)
        if isinstance(op, ReLU):
            su, tu, sl, unstable = relu_relaxation(pl, pu, op)
            su, tu, sl = su[:, None], tu[:, None], sl[:, None]
            if alphas is not None and i in alphas:
                sl = torch.where(unstable[:, None], alphas[i], sl)
            new = pos * sl + neg * su
            bias = bias + (neg * tu).flatten(2).sum(2)
            tl = graft_intercept(op, pl)
            if tl is not None:
                bias = bias + (pos * tl[:, None]).flatten(2).sum(2)
            lam = new.reshape(b * s, *new.shape[2:])
        elif isinstance(op, MaxPool):
            idx, exact, umax = op.relaxation(pl, pu)
            to_in = pos + neg * exact[:, None].to(neg.dtype)
            bias = bias + (neg * (~exact[:, None]).to(neg.dtype) * umax[:, None]).flatten(2).sum(2)
            idx = idx[:, None].expand(b, s, *idx.shape[1:]).reshape(b * s, *idx.shape[1:])
            lam = op.scatter(to_in.reshape(b * s, *to_in.shape[2:]), idx)
        else:  # pragma: no cover - to_ops makes no other op
            raise TypeError(type(op).__name__)
    lam = lam.reshape(b, s, -1)
    mid, rad = ((hi + lo) / 2).flatten(1)[:, None], ((hi - lo) / 2).flatten(1)[:, None]
    return bias + (lam * mid).sum(-1) - (lam.abs() * rad).sum(-1)


def _affine_prefix_exact(ops: list[Op], end: int) -> bool:
    """True when ops[:end] are affine with at most one non-diagonal map: then IBP's box is exact."""
    return all(op.affine for op in ops[:end]) and sum(type(op).__name__ in ("Dense", "Conv") for op in ops[:end]) <= 1


def _crown_layer(ops, end, lo, hi, pre, chunk: int, box: tuple[torch.Tensor, torch.Tensor]):
    """CROWN bounds of the output of ops[:end], intersected with ``box`` (IBP's). Only the neurons that ``box``
    leaves unstable in some sample of the batch are bounded again: a stable neuron's relaxation is exact
    whatever its bounds, so tighter ones would change nothing. That is what makes CROWN's cost follow the
    number of unstable neurons, which pruning and certified training cut. When ops[end - 1] is a Dense layer
    the backward pass starts from its weight rows instead of multiplying an identity by them."""
    l, u = box
    shape = ops[end - 1].out_shape
    b = lo.shape[0]
    split = (l < 0) & (u > 0)
    nxt = ops[end]
    if isinstance(nxt, ReLU) and nxt.graft is not None:  # a grafted neuron is linear: its bounds change nothing
        split = split & ~nxt.graft
    unstable = split.reshape(b, -1).any(0).nonzero().flatten()
    if len(unstable) == 0:
        return l, u
    l, u = l.reshape(b, -1).clone(), u.reshape(b, -1).clone()
    last = ops[end - 1]
    for j in range(0, len(unstable), chunk):
        idx = unstable[j : j + chunk]
        c = len(idx)
        if isinstance(last, Dense):
            w = last.weight[idx]
            lam = torch.cat([w, -w]).expand(b, 2 * c, w.shape[1])
            r = backward(ops, end - 1, lam, lo, hi, pre)
            if last.bias is not None:
                r = r + torch.cat([last.bias[idx], -last.bias[idx]])
        else:
            n = l.shape[1]
            eye = torch.zeros(c, n, dtype=lo.dtype, device=lo.device)
            eye[torch.arange(c), idx] = 1
            lam = torch.cat([eye, -eye]).expand(b, 2 * c, n).reshape(b, 2 * c, *shape)
            r = backward(ops, end, lam, lo, hi, pre)
        l[:, idx] = torch.maximum(l[:, idx], r[:, :c])
        u[:, idx] = torch.minimum(u[:, idx], -r[:, c:])
    return l.view(b, *shape), u.view(b, *shape)


def pre_bounds(
    ops: list[Op], lo: torch.Tensor, hi: torch.Tensor, intermediate: str = "crown", chunk: int = 1024
) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
    """Bounds of the input of every nonlinear op ({op index: (l, u)}) and IBP's box of the output."""
    pre: dict = {}
    l, u = lo, hi
    for i, op in enumerate(ops):
        if not op.affine:
            if intermediate == "crown" and not _affine_prefix_exact(ops, i):
                l, u = _crown_layer(ops, i, lo, hi, pre, chunk, (l, u))
            pre[i] = (l, u)
        l, u = op.ibp(l, u)
    return pre, (l, u)


def crown(
    ops: list[Op],
    lo: torch.Tensor,
    hi: torch.Tensor,
    C: torch.Tensor | None = None,
    intermediate: str = "crown",
    upper: bool = True,
    pre: dict | None = None,
) -> Bounds:
    """CROWN bounds of C @ outputs (outputs when C is None) over [lo, hi]; ``pre`` reuses pre-activation
    bounds already computed by ``pre_bounds``."""
    if pre is None:
        pre, _ = pre_bounds(ops, lo, hi, intermediate)
    C = _spec(C, ops, lo)
    if not upper:
        return Bounds(backward(ops, len(ops), C, lo, hi, pre), None, pre)
    s = C.shape[1]
    r = backward(ops, len(ops), torch.cat([C, -C], 1), lo, hi, pre)
    return Bounds(r[:, :s], -r[:, s:], pre)


def alpha_crown(
    ops: list[Op],
    lo: torch.Tensor,
    hi: torch.Tensor,
    C: torch.Tensor | None = None,
    steps: int = 20,
    lr: float = 0.1,
    pre: dict | None = None,
) -> Bounds:
    """alpha-CROWN lower bounds of C @ outputs: CROWN's lower slopes of every ReLU optimised for each
    specification row, starting from CROWN's choice; the best bound of every row over the steps."""
    if pre is None:
        pre, _ = pre_bounds(ops, lo, hi, "crown")
    C = _spec(C, ops, lo)
    s = C.shape[1]
    alphas = {}
    for i, op in enumerate(ops):
        if isinstance(op, ReLU):
            sl = relu_relaxation(*pre[i], op)[2].detach()
            alphas[i] = sl[:, None].expand(lo.shape[0], s, *sl.shape[1:]).clone().requires_grad_(True)
    pre_d = {i: (a.detach(), b.detach()) for i, (a, b) in pre.items()}
    lo, hi, C = lo.detach(), hi.detach(), C.detach()
    if not alphas or steps <= 0:
        with torch.no_grad():
            return Bounds(backward(ops, len(ops), C, lo, hi, pre_d), None, pre)
    best = None  # the first step's bound is CROWN's: the slopes start at CROWN's choice
    opt = torch.optim.Adam(list(alphas.values()), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            bound = backward(ops, len(ops), C, lo, hi, pre_d, alphas)
            best = bound.detach() if best is None else torch.maximum(best, bound.detach())
            grads = torch.autograd.grad(-bound.sum(), list(alphas.values()))  # not into the model's weights
            for a, g in zip(alphas.values(), grads):
                a.grad = g
            opt.step()
            with torch.no_grad():
                for a in alphas.values():
                    a.clamp_(0, 1)
    with torch.no_grad():
        best = torch.maximum(best, backward(ops, len(ops), C, lo, hi, pre_d, alphas))
    return Bounds(best, None, pre)
