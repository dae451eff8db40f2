"""Sound bounds on a network's outputs over an L-inf ball: IBP, CROWN and alpha-CROWN.

- IBP (Gowal et al. 2018): boxes pushed through every layer (centre and radius for affine layers).
- CROWN (Zhang et al. 2018): every output (or specification row) bounded by a linear function of the input,
  built backward through linear relaxations of the ReLUs - the upper line through (l, 0) and (u, u), the lower
  line alpha x with CROWN's adaptive alpha (1 where u > -l, else 0) - and minimised over the input box.
  Pre-activation bounds of every ReLU come from CROWN run to that layer (``intermediate="crown"``), each
  intersected with IBP's (both are sound, so their intersection is); ``intermediate="ibp"`` takes IBP's
  instead: CROWN-IBP (Zhang et al. 2020), the cheap variant certified training uses.
- alpha-CROWN (Xu et al. 2021): the lower slopes of every unstable ReLU as free parameters in [0, 1], one per
  specification row and neuron, raised by projected gradient ascent (Adam) on the bound from CROWN's choice;
  by default every intermediate bound has slopes of its own too and is recomputed each step (as auto_LiRPA
  does); every bound kept is the best seen, so never looser than CROWN.

Specifications are rows of a matrix C on the logits: ``margin_spec`` gives y_true - y_j for every j != y_true,
so a sample is verified when every lower bound is > 0. Everything is batched, runs on any device and is
differentiable in the model's parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .graph import Conv, Dense, MaxPool, Op, ReLU, Scale

METHODS = ("ibp", "crown", "alpha-crown")
# alpha-CROWN's settings by name: "optimized" (auto_LiRPA's: every intermediate bound's slopes optimised too, Adam
# at lr 0.5 decayed by 0.98 a step) and "last-layer" (ticketlab's before: only the final bound's slopes, lr 0.1;
# what the results folders made before it hold)
ALPHA = {
    "optimized": {"intermediate": "optimize", "lr": 0.5, "lr_decay": 0.98},
    "last-layer": {"intermediate": "fixed", "lr": 0.1, "lr_decay": 1.0},
}


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


def backward_linear(
    ops: list[Op],
    end: int,
    lam: torch.Tensor,
    pre: dict,
    alphas: dict[int, torch.Tensor] | None = None,
    betas: dict[int, torch.Tensor] | None = None,
    record: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN's linear lower bound of lam . f(x), f the output of ``ops[:end]``: (bias (B, S), coefficients on the
    input (B, S, n_in)), so that lam . f(x) >= bias + coefficients . x wherever ``pre`` holds. ``lam`` (B, S,
    *shape). ``alphas``: lower ReLU slopes per op index, (B, S, *shape) in [0, 1], instead of CROWN's choice.
    ``betas``: per ReLU op index, a (B, S, *shape) term added to the coefficients on that ReLU's input (beta-CROWN's
    -beta * sign for split constraints sign * z >= 0). ``record``: filled with each ReLU's relaxation cost per
    neuron, (B, S, *shape), what its upper line's intercept takes off the bound (branching scores)."""
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
            cost = neg * tu
            bias = bias + cost.flatten(2).sum(2)
            if record is not None:
                record[i] = -cost
            tl = graft_intercept(op, pl)
            if tl is not None:
                bias = bias + (pos * tl[:, None]).flatten(2).sum(2)
            if betas is not None and i in betas:
                new = new + betas[i]
            lam = new.reshape(b * s, *new.shape[2:])
        elif isinstance(op, MaxPool):
            idx, exact, umax = op.relaxation(pl, pu)
            to_in = pos + neg * exact[:, None].to(neg.dtype)
            bias = bias + (neg * (~exact[:, None]).to(neg.dtype) * umax[:, None]).flatten(2).sum(2)
            idx = idx[:, None].expand(b, s, *idx.shape[1:]).reshape(b * s, *idx.shape[1:])
            lam = op.scatter(to_in.reshape(b * s, *to_in.shape[2:]), idx)
        else:  # pragma: no cover - to_ops makes no other op
            raise TypeError(type(op).__name__)
    return bias, lam.reshape(b, s, math.prod(lam.shape[1:]))  # (not -1: a batch may be empty)


def minimise(bias: torch.Tensor, lam: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """min over the box [lo, hi] of bias + lam . x: (B, S) from bias (B, S) and lam (B, S, n_in)."""
    mid, rad = ((hi + lo) / 2).flatten(1)[:, None], ((hi - lo) / 2).flatten(1)[:, None]
    return bias + (lam * mid).sum(-1) - (lam.abs() * rad).sum(-1)


def backward(
    ops: list[Op],
    end: int,
    lam: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    pre: dict,
    alphas: dict[int, torch.Tensor] | None = None,
    betas: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Lower bound over the box [lo, hi] of lam . f(x), f the output of ``ops[:end]``; ``lam`` (B, S, *shape).
    ``alphas``, ``betas``: as ``backward_linear``'s."""
    return minimise(*backward_linear(ops, end, lam, pre, alphas, betas), lo, hi)


def _affine_prefix_exact(ops: list[Op], end: int) -> bool:
    """True when ops[:end] are affine with at most one non-diagonal map: then IBP's box is exact."""
    return all(op.affine for op in ops[:end]) and sum(type(op).__name__ in ("Dense", "Conv") for op in ops[:end]) <= 1


def _crown_layer(ops, end, lo, hi, pre, chunk: int, box: tuple[torch.Tensor, torch.Tensor]):
    """CROWN bounds of the output of ops[:end], intersected with ``box`` (IBP's). Only the neurons that ``box``
    leaves unstable in some sample of the batch are bounded again: a stable neuron's relaxation is exact
    whatever its bounds, so tighter ones would change nothing. That is what makes CROWN's cost follow the
    number of unstable neurons, which pruning and certified training cut. When ops[end - 1] is a Dense layer
    the backward pass starts from its weight rows instead of multiplying an identity by them; on a
    convolution's output it runs as patches."""
    l, u = box
    shape = ops[end - 1].out_shape
    b = lo.shape[0]
    unstable = _unstable_rows(ops, end, l, u)
    if len(unstable) == 0:
        return l, u
    l, u = l.flatten(1).clone(), u.flatten(1).clone()
    for rows in _row_chunks(ops, end, unstable, chunk):
        idx, rl, ru = _bound_rows(ops, end, rows, lo, hi, pre)
        l[:, idx] = torch.maximum(l[:, idx], rl)
        u[:, idx] = torch.minimum(u[:, idx], -ru)
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


def _split(ops: list[Op], end: int, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B, N): which neurons feeding ops[end] are unstable in each sample: the only ones whose tighter bounds
    change anything (a grafted neuron is linear, so never)."""
    split = (l < 0) & (u > 0)
    nxt = ops[end]
    if isinstance(nxt, ReLU) and nxt.graft is not None:
        split = split & ~nxt.graft
    return split.flatten(1)


def _unstable_rows(ops: list[Op], end: int, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Indices (flat) of the neurons feeding ops[end] that are unstable in some sample of the batch."""
    return _split(ops, end, l, u).any(0).nonzero().flatten()


def _sample_rows(ops: list[Op], end: int, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx, valid), both (B, R): per sample, the flat indices of the neurons feeding ops[end] that are unstable
    in that sample first, padded with distinct stable ones (valid False) to the largest count R of any sample.
    Against ``_unstable_rows`` (the union over the batch) a sample bounds only its own unstable neurons, often a
    fraction of the union, and the batch stays one tensor."""
    split = _split(ops, end, l, u)
    r = int(split.sum(1).max()) if split.numel() else 0
    idx = torch.argsort(~split, dim=1, stable=True)[:, :r]  # stable: each part in index order, on every device
    return idx, split.gather(1, idx)


def _rows(ops: list[Op], end: int, idx: torch.Tensor, b: int, like: torch.Tensor):
    """(lam, stop, bias) to bound neurons ``idx`` ((R,) for every sample, or (B, R) a set per sample) of the
    output of ops[:end] below and above (rows [e, -e]) with ``backward(ops, stop, lam, ...) + bias``: from a
    Dense layer's weight rows when ops[end - 1] is one."""
    last, c = ops[end - 1], idx.shape[-1]
    if isinstance(last, Dense):
        w = last.weight[idx]
        bias = None if last.bias is None else torch.cat([last.bias[idx], -last.bias[idx]], -1)
        return torch.cat([w, -w], -2).expand(b, 2 * c, w.shape[-1]), end - 1, bias
    shape = last.out_shape
    n = math.prod(shape)
    if idx.dim() == 2:
        eye = torch.zeros(b, c, n, dtype=like.dtype, device=like.device).scatter_(2, idx[..., None], 1.0)
        return torch.cat([eye, -eye], 1).view(b, 2 * c, *shape), end, None
    eye = torch.zeros(c, n, dtype=like.dtype, device=like.device)
    eye[torch.arange(c), idx] = 1
    return torch.cat([eye, -eye]).expand(b, 2 * c, n).reshape(b, 2 * c, *shape), end, None


def _row_chunks(ops: list[Op], end: int, unstable: torch.Tensor, chunk: int) -> list:
    """The unstable neurons of ops[end - 1]'s output cut into the pieces one backward pass bounds: (positions,
    neurons there) on a convolution's output (patches), else at most ``chunk`` neuron indices."""
    if patches_apply(ops, end):
        return list(patch_chunks(ops, end, unstable))
    return [unstable[k : k + chunk] for k in range(0, len(unstable), chunk)]


def _bound_rows(ops, end, rows, lo, hi, pre, alphas: dict | None = None):
    """(neuron indices, their lower bounds, minus their upper bounds) for one piece of ``_row_chunks`` or for
    neurons (B, R), a set per sample (``_sample_rows``), with CROWN's lower slopes or ``alphas`` (per the
    piece's rows)."""
    if isinstance(rows, tuple):
        pos, idx = rows
        r = backward_patches(ops, end, pos, lo, hi, pre, alphas)
        return (idx, *patch_rows(r, pos, ops[end - 1].out_shape, idx))
    if rows.dim() == 2 and patches_apply(ops, end):  # each neuron its own anchor, one channel's two rows
        hw = ops[end - 1].out_shape[1] * ops[end - 1].out_shape[2]
        r = backward_patches(ops, end, rows % hw, lo, hi, pre, alphas, channels=rows // hw)
        return rows, r[..., 0], r[..., 1]
    lam, stop, bias = _rows(ops, end, rows, lo.shape[0], lo)
    r = backward(ops, stop, lam, lo, hi, pre, alphas)
    if bias is not None:
        r = r + bias
    c = rows.shape[-1]
    return rows, r[:, :c], r[:, c:]


def alpha_crown(
    ops: list[Op],
    lo: torch.Tensor,
    hi: torch.Tensor,
    C: torch.Tensor | None = None,
    steps: int = 20,
    lr: float = 0.5,
    pre: dict | None = None,
    lr_decay: float = 0.98,
    intermediate: str = "optimize",
    chunk: int = 1024,
) -> Bounds:
    """alpha-CROWN lower bounds of C @ outputs: the lower slopes of every unstable ReLU optimised (Adam, lr 0.5
    decayed by 0.98 a step, 20 steps: auto_LiRPA's defaults) from CROWN's choice, a set per specification row.

    ``intermediate="optimize"`` (the default, as auto_LiRPA does when no intermediate bounds are given; Xu et al.
    2021): every intermediate bound CROWN refines has slopes of its own, a set per bounded neuron, and is
    recomputed each step from the current slopes alone, so the final bound's gradient also tightens the bounds
    it is built on; every bound kept is the best seen (intersected with CROWN's), and the result is never
    looser than CROWN's. ``"fixed"``: CROWN's intermediate bounds as they are, only the final bound's slopes
    optimised (cheaper, looser)."""
    if intermediate not in ("optimize", "fixed"):
        raise ValueError(f"intermediate is 'optimize' or 'fixed', got {intermediate!r}")
    if pre is None:
        pre, _ = pre_bounds(ops, lo, hi, "crown")
    C = _spec(C, ops, lo)
    b, s = lo.shape[0], C.shape[1]
    best_pre = {i: (a.detach(), c.detach()) for i, (a, c) in pre.items()}
    lo, hi, C = lo.detach(), hi.detach(), C.detach()

    def init(i: int, rows: int) -> torch.Tensor:
        sl = relu_relaxation(*best_pre[i], ops[i])[2].detach()
        return sl[:, None].expand(b, rows, *sl.shape[1:]).clone().requires_grad_(True)

    final = {i: init(i, s) for i, op in enumerate(ops) if isinstance(op, ReLU)}
    # layer i -> [(neurons (B, c) a set per sample, valid (B, c), their rows' slopes {relu j: (B, 2c, *shape_j)})]:
    # the refined bounds, of each sample's own unstable neurons (padded rows, valid False, keep CROWN's)
    layers: dict[int, list] = {}
    if intermediate == "optimize":
        for i, op in enumerate(ops):
            if op.affine or i not in best_pre or _affine_prefix_exact(ops, i):
                continue
            idx, valid = _sample_rows(ops, i, *best_pre[i])
            stop = i - 1 if isinstance(ops[i - 1], Dense) else i
            earlier = [j for j in final if j < stop]
            if idx.shape[1] and earlier:  # patches make their slopes (in the windows) on first use
                patches = patches_apply(ops, i)
                step = patch_neurons(ops, i) if patches else chunk
                layers[i] = []
                for k in range(0, idx.shape[1], step):
                    rows = idx[:, k : k + step]
                    slopes = {} if patches else {j: init(j, 2 * rows.shape[1]) for j in earlier}
                    layers[i].append((rows, valid[:, k : k + step], slopes))
    if not final or steps <= 0:
        with torch.no_grad():
            return Bounds(backward(ops, len(ops), C, lo, hi, best_pre), None, best_pre)

    crown_pre = dict(best_pre)

    def bound_once() -> torch.Tensor:
        """The final bound from intermediate bounds recomputed with the current slopes alone, as auto_LiRPA
        does: intersected with CROWN's (or the best so far), a neuron where that bound is the tighter would pass
        no gradient to its slopes, and the optimum reached was measured looser on some margins. Each is sound,
        so the best of every step is kept for the final pass."""
        cur = dict(crown_pre)
        for i in sorted(layers):
            bl, bu = crown_pre[i]
            l, u = bl.flatten(1), bu.flatten(1)
            for idx, valid, al in layers[i]:
                _, rl, ru = _bound_rows(ops, i, idx, lo, hi, cur, al)
                l = l.scatter(1, idx, torch.where(valid, rl, l.gather(1, idx)))
                u = u.scatter(1, idx, torch.where(valid, -ru, u.gather(1, idx)))
            cur[i] = (l.view_as(bl), u.view_as(bu))
            kl, ku = best_pre[i]  # both sound: keep the tighter
            best_pre[i] = (torch.maximum(kl, cur[i][0].detach()), torch.minimum(ku, cur[i][1].detach()))
        return backward(ops, len(ops), C, lo, hi, cur, final)

    best = None  # the slopes start at CROWN's choice (CROWN's own bound joins the max at the end)
    with torch.enable_grad():
        first = bound_once()  # (makes the patch-shaped slopes)
    params = list(final.values()) + [a for chunks in layers.values() for *_, al in chunks for a in al.values()]
    opt = torch.optim.Adam(params, lr=lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, lr_decay)
    with torch.enable_grad():
        for step in range(steps):
            bound = first if step == 0 else bound_once()
            best = bound.detach() if best is None else torch.maximum(best, bound.detach())
            grads = torch.autograd.grad(-bound.sum(), params, allow_unused=True)  # not into the model's weights
            for a, g in zip(params, grads):
                a.grad = g
            opt.step()
            decay.step()
            with torch.no_grad():
                for a in params:
                    a.clamp_(0, 1)
    with torch.no_grad():
        best = torch.maximum(best, bound_once())
        if layers:  # the final slopes over the best intermediate bounds of every step: sound, often tighter
            best = torch.maximum(best, backward(ops, len(ops), C, lo, hi, best_pre, final))
            # and CROWN's own bound (its slopes over its intermediate bounds, which IBP's intersect): the steps
            # above start from CROWN's slopes but not from IBP's intersection, so this keeps "never looser"
            best = torch.maximum(best, backward(ops, len(ops), C, lo, hi, crown_pre))
    return Bounds(best, None, best_pre)


# -- CROWN's intermediate bounds on convolutions as patches ------------------------------------------------------
# A neuron of a conv layer's output depends on a window of each earlier map only, so the linear coefficients
# of its bound are kept as a patch anchored at the neuron's position (auto_LiRPA's "patches" mode): the backward
# pass through a convolution is a transposed convolution of the patch (the window grows by the kernel), through
# a ReLU or a per-channel scale a product with that map's values in the window; the windows of every row are cut
# from the maps with one unfold (zero outside the map, where the padding's zeros make any coefficient void).


def patches_apply(ops: list[Op], end: int) -> bool:
    """Whether the bounds of ops[end - 1]'s output can go backward as patches: a 2-d convolution fed by 2-d
    convolutions, per-channel scales and ReLUs only (no pooling, dilation or groups), every kernel square with
    one stride for both axes (the windows are square; padding may differ per axis). Otherwise the dense pass."""

    def plain_conv(op) -> bool:
        if not (isinstance(op, Conv) and op.dim == 2 and op.groups == 1 and all(d == 1 for d in op.dilation)):
            return False
        return op.weight.shape[2] == op.weight.shape[3] and op.stride[0] == op.stride[1]

    if end < 1 or not plain_conv(ops[end - 1]):
        return False
    return all(plain_conv(op) or isinstance(op, (Scale, ReLU)) for op in ops[: end - 1])


def _windows(x: torch.Tensor, size: int, stride: int, start: tuple, grid: tuple, pos: torch.Tensor) -> torch.Tensor:
    """(B, P, 1, C, size, size): for each anchor ``pos[p]`` (a flat position (i, j) of the ``grid``; or
    ``pos[b, p]``, anchors per sample), the window of the map ``x`` (B or 1, C, H, W) starting at (i * stride -
    start[0], j * stride - start[1]); zero outside the map. The pads after the map only need to be large enough:
    the windows past the grid are dropped."""
    b, c, h, w = x.shape
    pad = [start[1], max(0, (grid[1] - 1) * stride - start[1] + size - w),
           start[0], max(0, (grid[0] - 1) * stride - start[0] + size - h)]  # fmt: skip
    xp = F.pad(x, pad)
    u = F.unfold(xp, size, stride=stride)  # (B, C*size*size, Lh*Lw)
    lh = (xp.shape[2] - size) // stride + 1
    lw = (xp.shape[3] - size) // stride + 1
    u = u.view(b, c * size * size, lh, lw)[:, :, : grid[0], : grid[1]].flatten(2)
    if pos.dim() == 2:  # (B, P, K) whatever x's batch (1 for a map shared by every sample): broadcast to pos
        return u[torch.arange(b, device=pos.device)[:, None], :, pos].reshape(*pos.shape, 1, c, size, size)
    # contiguous: a permuted view here would hand its strides to every product with the patches (the rows
    # times larger), and each later reshape of those would copy them
    return u[:, :, pos].permute(0, 2, 1).reshape(b, len(pos), 1, c, size, size).contiguous()


def backward_patches(
    ops, end, pos, lo, hi, pre, alphas: dict | None = None, channels: torch.Tensor | None = None
) -> torch.Tensor:
    """Lower bounds (B, P, 2 Co) of the rows [+y_c for every channel c, then -y_c] of ops[end - 1]'s output at
    the P flat positions ``pos``, over the box [lo, hi]: CROWN's backward pass as patches (``patches_apply``
    must hold). The same numbers as ``backward`` from identity rows, at the cost of the windows instead of the
    whole maps. With ``channels`` (B, P), ``pos`` is (B, P) too: one neuron per anchor, a set per sample, and
    the rows (B, P, 2) are [+y, -y] of that neuron only. ``alphas`` ({relu op index: (B, P, rows, C, size,
    size)}, in the windows): lower slopes of the unstable neurons instead of CROWN's; a missing entry is made
    from CROWN's choice (requiring grad) and put in the dict."""
    last = ops[end - 1]
    co, gh, gw = last.out_shape
    b = lo.shape[0]
    if channels is None:
        eye = torch.eye(co, dtype=lo.dtype, device=lo.device)
        A = torch.cat([eye, -eye]).view(1, 1, 2 * co, co, 1, 1)  # (batch, positions, rows, C, size, size)
    else:
        one = F.one_hot(channels, co).to(lo.dtype)
        A = torch.stack([one, -one], 2)[..., None, None]
    size, stride, start = 1, 1, (0, 0)  # the windows: square, one stride (``patches_apply``), padding per axis
    bias = lo.new_zeros(1, 1, A.shape[2])

    def win(m):
        return _windows(m, size, stride, start, (gh, gw), pos)

    for i in reversed(range(end)):
        op = ops[i]
        if isinstance(op, Conv):
            if i != end - 1:  # coefficients outside this conv's output map are of padding, not neurons: void
                A = A * win(torch.ones(1, *op.out_shape, dtype=lo.dtype, device=lo.device))
            if op.bias is not None:
                bias = bias + _dot(A, win(op.bias.expand(1, *op.out_shape).to(lo.dtype)))
            lead = A.shape[:3]
            A = F.conv_transpose2d(A.reshape(-1, *A.shape[3:]), op.weight, stride=op.stride)
            A = A.view(*lead, *A.shape[1:])
            size = (size - 1) * op.stride[0] + op.weight.shape[2]
            start = (start[0] * op.stride[0] + op.padding[0], start[1] * op.stride[0] + op.padding[1])
            stride = stride * op.stride[0]
            continue
        if isinstance(op, Scale):
            if op.bias is not None:
                bias = bias + _dot(A, win(op.bias.expand(1, *op.in_shape).to(lo.dtype)))
            A = A * win(op.s.expand(1, *op.in_shape).to(lo.dtype))
            continue
        pl, pu = pre[i]  # a ReLU
        su, tu, sl, unstable = relu_relaxation(pl, pu, op)
        sl = win(sl)
        if alphas is not None:
            if i not in alphas:
                full = (b, pos.shape[-1], A.shape[2], *sl.shape[3:])
                alphas[i] = sl.detach().expand(full).clone().requires_grad_(True)
            sl = torch.where(win(unstable.to(lo.dtype)) > 0, alphas[i], sl)
        bias = bias + _dot(A.clamp(max=0), win(tu))
        tl = graft_intercept(op, pl)
        if tl is not None:
            bias = bias + _dot(A.clamp(min=0), win(tl))
        A = torch.where(A >= 0, sl, win(su)) * A
    out = bias + _dot(A, win((hi + lo) / 2)) - _dot(A.abs(), win((hi - lo) / 2))
    return out.expand(b, pos.shape[-1], A.shape[2])


def _dot(A: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum over each row's window of A * w: (B, P, R, C, s, s) . (B, P, 1, C, s, s) -> (B, P, R), one matmul.
    While A is still the same for every sample and position (1, 1, R, ...), as it is until the first ReLU, that
    is one (B P, K) x (K, R) product: a batched one would first copy A out to every sample and position."""
    if A.shape[0] == 1 and A.shape[1] == 1 and (w.shape[0] > 1 or w.shape[1] > 1):
        return w.flatten(3)[:, :, 0] @ A.flatten(3)[0, 0].transpose(0, 1)
    return (A.flatten(3) @ w.flatten(3).transpose(-1, -2))[..., 0]


def patch_positions(ops: list[Op], end: int, budget: int = 2**24) -> int:
    """How many anchor positions one ``backward_patches`` call takes: its largest patch tensor (B x positions x
    rows x C x size x size) kept near ``budget`` elements per sample."""
    co = ops[end - 1].out_shape[0]
    size, worst = 1, 1
    for op in reversed(ops[:end]):
        if isinstance(op, Conv):
            size = (size - 1) * op.stride[0] + op.weight.shape[2]
            worst = max(worst, op.in_shape[0] * size * size)
    return max(1, budget // (2 * co * worst))


def patch_neurons(ops: list[Op], end: int, budget: int = 2**24) -> int:
    """How many neurons (anchors with one channel's two rows) one per-sample ``backward_patches`` call takes,
    on the same budget as ``patch_positions``."""
    return patch_positions(ops, end, budget) * ops[end - 1].out_shape[0]


def patch_chunks(ops: list[Op], end: int, unstable: torch.Tensor):
    """(positions, the unstable neurons there) per ``backward_patches`` call, for the flat neurons ``unstable``
    of ops[end - 1]'s output."""
    hw = ops[end - 1].out_shape[1] * ops[end - 1].out_shape[2]
    positions = torch.unique(unstable % hw)
    step = patch_positions(ops, end)
    for k in range(0, len(positions), step):
        pos = positions[k : k + step]
        yield pos, unstable[torch.isin(unstable % hw, pos)]


def patch_rows(r: torch.Tensor, pos: torch.Tensor, shape: tuple, idx: torch.Tensor):
    """``backward_patches``' (B, P, 2 Co) lower bounds at positions ``pos`` as (lower, -upper) of the flat
    neurons ``idx`` (each at one of those positions)."""
    co, gh, gw = shape
    where = torch.full((gh * gw,), -1, dtype=torch.long, device=r.device)
    where[pos] = torch.arange(len(pos), device=r.device)
    p, c = where[idx % (gh * gw)], idx // (gh * gw)
    return r[:, p, c], r[:, p, co + c]
