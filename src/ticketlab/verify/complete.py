"""Complete verification: the exact answer to "does any input in the ball change the prediction?".

A network (ops from ``graph.to_ops``) is lowered to affine maps (scipy sparse matrices: consecutive affine ops
composed, pruned weights absent), ReLUs and max-pool windows. Each sample is decided by:

1. the clean prediction (a misclassified sample is falsified by itself);
2. alpha-CROWN bounds: the margins already proven (lower bound > 0) are not asked again;
3. a PGD attack: a counterexample found cheaply;
4. for every margin y_true - y_j still open, an exact solver: Marabou (Katz et al. 2019, through ``maraboupy``;
   the query "y_j - y_true >= 0 for some input in the box" with CROWN's pre-activation bounds given), or the
   MILP of Tjeng et al. 2019 (big-M with CROWN's bounds; the minimum of the margin) solved by HiGHS through
   ``scipy.optimize.milp``, or branch and bound with beta-CROWN (``bab``; from alpha-CROWN's intermediate
   bounds, the MILP as its fallback where a leaf is beyond a linear program).

A counterexample from a solver is clipped into the box and re-run through the model: it counts only if the
model's margin for some other class is > 0 there; one that sits on the decision boundary gets 20 PGD steps
from where it lies, and is "unknown" if they do not push it over (as is a solver error). Verdicts: verified,
falsified, timeout, unknown.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds as Box
from scipy.optimize import LinearConstraint, milp

from ..errors import UserError
from .bab import BaB, Settings
from .bounds import ALPHA, alpha_crown, input_box, margin_spec, other_classes, pre_bounds
from .graph import MaxPool, Op, ReLU, as_float64

SOLVERS = ("marabou", "milp", "bab")


@dataclass
class Layer:
    kind: str  # "affine", "relu" or "max"
    A: object = None  # scipy.sparse csr (n_out, n_in) for affine
    b: np.ndarray | None = None
    windows: np.ndarray | None = None  # (n_out, k) input indices of each max window
    op: int = -1  # index of the op in ``ops`` (nonlinear layers: its pre-activation bounds)
    graft: np.ndarray | None = None  # relu layers: True where the neuron is grafted, slope * z + intercept
    slope: np.ndarray | None = None
    intercept: np.ndarray | None = None


def lower(ops: list[Op]) -> list[Layer]:
    """``ops`` as alternating composed affine maps and nonlinear layers (float64)."""
    layers: list[Layer] = []
    chain: list[Op] = []

    def flush():
        if not chain:
            return
        shape = chain[0].in_shape
        n = int(np.prod(shape))
        dtype, device = _dtype(chain)
        with torch.no_grad():  # A from the linear parts alone (no bias rounding), b from the chain at 0
            e = torch.eye(n, dtype=dtype, device=device).reshape(n, *shape)
            z = torch.zeros(1, *shape, dtype=dtype, device=device)
            for op in chain:
                e, z = op.apply(e), op.forward(z)
        layers.append(
            Layer(
                "affine",
                sp.csr_matrix(e.reshape(n, -1).t().double().cpu().numpy()),
                z.reshape(-1).double().cpu().numpy(),
            )
        )
        chain.clear()

    for i, op in enumerate(ops):
        if op.affine:
            chain.append(op)
            continue
        flush()
        if isinstance(op, ReLU):
            layer = Layer("relu", op=i)
            if op.graft is not None:
                with torch.no_grad():
                    layer.graft = op.graft.reshape(-1).cpu().numpy().astype(bool)
                    layer.slope = op.slope.detach().reshape(-1).double().cpu().numpy()
                    layer.intercept = op.intercept.detach().reshape(-1).double().cpu().numpy()
            layers.append(layer)
        elif isinstance(op, MaxPool):
            n = int(np.prod(op.in_shape))
            idx = torch.arange(n, dtype=torch.float64).reshape(1, *op.in_shape)
            if op.dim == 2:
                w = torch.nn.functional.unfold(idx, op.kernel, stride=op.kernel)  # (1, C*k*k, L)
                c, kk = op.in_shape[0], op.kernel[0] * op.kernel[1]
                w = w.view(c, kk, -1).permute(0, 2, 1).reshape(-1, kk)
            else:
                c, k = op.in_shape[0], op.kernel[0]
                w = idx[0].unfold(1, k, k).reshape(-1, k)
            layers.append(Layer("max", windows=w.long().numpy(), op=i))
    flush()
    return layers


def _dtype(chain):
    for op in chain:
        for name in ("weight", "s"):
            t = getattr(op, name, None)
            if isinstance(t, torch.Tensor):
                return t.dtype, t.device
    return torch.float64, torch.device("cpu")


@dataclass
class Verdict:
    """One sample's outcome: ``verdict`` (verified, falsified, timeout, unknown), the seconds it took, what
    decided it (``by``), and for a falsified sample the counterexample and its margin, re-checked on the model."""

    verdict: str  # verified | falsified | timeout | unknown
    seconds: float
    by: str  # clean | bounds | attack | marabou | milp
    margin: float | None = None  # the counterexample's margin (> 0) when falsified
    counterexample: torch.Tensor | None = None


def _margin(model_fn, x: torch.Tensor, y: int) -> float:
    """max_j logit_j - logit_y of the model at pixel-space ``x`` (one sample)."""
    with torch.no_grad():
        out = model_fn(x[None]).double()[0]
    others = torch.cat([out[:y], out[y + 1 :]])
    return float(others.max() - out[y])


def _pgd_push(model_fn, x0, y, lo, hi, steps=20):
    """Gradient steps on the margin from ``x0`` inside [lo, hi]; the best point."""
    x = x0.clone()
    best, best_m = x0, _margin(model_fn, x0, y)
    step = float((hi - lo).max()) / 8 + 1e-12
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        out = model_fn(x[None])[0]
        m = torch.cat([out[:y], out[y + 1 :]]).max() - out[y]
        (g,) = torch.autograd.grad(m, x)
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x + step * g.sign(), lo), hi)
        m_now = _margin(model_fn, x, y)
        if m_now > best_m:
            best, best_m = x.detach(), m_now
    return best, best_m


class Complete:
    """Complete verification of one network at one eps (``solver`` marabou or milp).

    ``ops`` are ``to_ops`` of the network (any dtype: they are copied to float64, which the bounds seeding the
    solver and the solver work in); ``model_fn`` the network in pixel space (``PixelSpace(model, mean, std)``),
    on which attacks run and every counterexample is re-checked (a float64 copy of it when it is a module of
    another dtype). Call it on one pixel-space sample and its label for a ``Verdict``."""

    def __init__(
        self,
        ops: list[Op],
        model_fn,
        num_classes: int,
        eps: float,
        pixel_range,
        solver: str = "milp",
        timeout: float = 60.0,
        attack_steps: int = 50,
        shortcut: bool = True,
        alpha: str = "optimized",
        bab: Settings | None = None,
    ):
        if alpha not in ALPHA:
            raise UserError(f"unknown alpha-CROWN setting {alpha!r}; choose one of: {', '.join(ALPHA)}")
        if solver not in SOLVERS:
            raise UserError(f"unknown --solver {solver!r}; choose one of: {', '.join(SOLVERS)}")
        if solver == "marabou":
            try:
                from maraboupy import MarabouCore  # noqa: F401  (optional: the verify extra)
            except ImportError:
                raise UserError(
                    "--solver marabou needs maraboupy: pip install 'ticketlab[verify]' (or use --solver milp)"
                ) from None
        ops = as_float64(ops)  # the bounds that seed the solver, and the solver, work in float64
        if isinstance(model_fn, torch.nn.Module) and any(p.dtype != torch.float64 for p in model_fn.parameters()):
            model_fn = copy.deepcopy(model_fn).double().eval()  # counterexamples are re-checked in float64
        self.ops, self.model_fn, self.k, self.eps, self.range = ops, model_fn, num_classes, eps, pixel_range
        self.solver, self.timeout, self.attack_steps = solver, timeout, attack_steps
        self.alpha = alpha  # alpha-CROWN's settings (bounds.ALPHA), for the margins it proves before the solver
        self.bab = bab or Settings()  # branch and bound's settings (solver "bab")
        self.domains = 0  # domains branch and bound has bounded, over every call
        self.shortcut = shortcut  # False: every margin goes to the solver (tests, solver timings)
        self.layers = lower(ops)

    def __call__(self, x: torch.Tensor, y: int) -> Verdict:
        t0 = time.perf_counter()
        x = x.double()
        m = _margin(self.model_fn, x, y)
        if m > 0:
            return Verdict("falsified", time.perf_counter() - t0, "clean", m, x)
        lo, hi = input_box(x[None], self.eps, self.range)
        C = margin_spec(torch.tensor([y]), self.k).double()
        with torch.no_grad():
            pre, _ = pre_bounds(self.ops, lo, hi, "crown")
        if self.shortcut:
            ab = alpha_crown(self.ops, lo, hi, C, pre=pre, **ALPHA[self.alpha])
            lb, root = ab.lower[0], ab.pre  # alpha-CROWN's intermediate bounds seed branch and bound
        else:
            lb, root = torch.zeros(self.k - 1), pre
        if bool((lb > 0).all()):
            return Verdict("verified", time.perf_counter() - t0, "bounds")
        adv, m = self._attack(x, y, lo[0], hi[0])
        if m > 0:
            return Verdict("falsified", time.perf_counter() - t0, "attack", m, adv)
        others = other_classes(torch.tensor([y]), self.k)[0].tolist()
        open_ = sorted((float(lb[r]), others[r]) for r in range(len(others)) if lb[r] <= 0)
        bounds = {
            i: (a[0].reshape(-1).double().cpu().numpy(), b[0].reshape(-1).double().cpu().numpy())
            for i, (a, b) in pre.items()
        }
        # the sample's program (MILP) or query (Marabou) is built once, for its first open margin
        if self.solver == "bab":
            solve = self._bab(lo, hi, root, bounds)
        else:
            solve = (self._marabou if self.solver == "marabou" else self._milp)(lo[0], hi[0], bounds)
        for _, j in open_:
            left = self.timeout - (time.perf_counter() - t0)
            if left <= 0:
                return Verdict("timeout", time.perf_counter() - t0, self.solver)
            status, point = solve(y, j, left)
            if status not in ("sat", "unsat"):  # timeout, or unknown: the solver failed (only unsat verifies)
                return Verdict("timeout" if status == "timeout" else "unknown", time.perf_counter() - t0, self.solver)
            if status == "sat":
                cex = torch.minimum(torch.maximum(torch.as_tensor(point, dtype=torch.float64).view_as(x), lo[0]), hi[0])
                m = _margin(self.model_fn, cex, y)
                if m <= 0:
                    cex, m = _pgd_push(self.model_fn, cex, y, lo[0], hi[0])
                if m > 0:
                    return Verdict("falsified", time.perf_counter() - t0, self.solver, m, cex)
                return Verdict("unknown", time.perf_counter() - t0, self.solver)
        return Verdict("verified", time.perf_counter() - t0, self.solver)

    def _attack(self, x, y, lo, hi):
        if self.attack_steps < 1:
            return x, _margin(self.model_fn, x, y)
        g = torch.Generator().manual_seed(0)
        start = lo + (hi - lo) * torch.rand(x.shape, generator=g, dtype=torch.float64)
        return _pgd_push(self.model_fn, start, y, lo, hi, steps=self.attack_steps)

    # ---- branch and bound (beta-CROWN) ----
    def _bab(self, lo, hi, root: dict, bounds):
        """``solve(y, j, timeout)`` by branch and bound (``bab.BaB``) over the box, from ``root`` (alpha-CROWN's
        intermediate bounds): "unsat" when verified, "sat" with a point the model misclassifies (or one on the
        boundary, which the caller pushes with PGD); where it has not decided the margin in its share of the
        time (``Settings.share``) or a leaf is beyond its LPs (an inexact max-pool window), the MILP decides it
        with the time left. (Branch and bound finds a counterexample only at a domain's corner: on cnn-small
        CROWN-IBP tickets the MILP finds some within a second that it does not find in 10 s.)"""
        search = BaB(self.ops, self.model_fn, lo, hi, root, self.bab)
        exact = self._milp(lo[0], hi[0], bounds)  # builds its program only if it is asked

        def solve(y, j, timeout):
            start = time.perf_counter()
            r = search.margin(y, j, start + self.bab.share * timeout)
            self.domains += r.domains
            if r.status == "verified":
                return "unsat", None
            if r.point is not None:
                return "sat", r.point.reshape(-1).numpy()
            return exact(y, j, max(timeout - (time.perf_counter() - start), 0.0))

        return solve

    # ---- MILP (Tjeng et al. 2019) through HiGHS ----
    def _milp(self, lo, hi, bounds):
        """``solve(y, j, timeout)`` for one sample: min logit_y - logit_j over the box, "sat" with the minimiser
        if <= 0, "unsat" if > 0 (or HiGHS's dual bound is > 0 at the time limit), else "timeout". The program
        is built on the first call and shared by the sample's margins (only the objective changes)."""
        program = []

        def solve(y, j, timeout):
            if not program:
                program.extend(self._milp_program(lo, hi, bounds))
            box, cons, integrality, logits, n0 = program
            c = np.zeros(len(integrality))
            c[logits[y]], c[logits[j]] = 1.0, -1.0
            res = milp(
                c,
                integrality=integrality,
                bounds=box,
                constraints=cons,
                options={"time_limit": max(timeout, 0.01), "disp": False},
            )
            if res.x is not None and res.fun is not None and res.fun <= 0:
                return "sat", res.x[:n0]
            if res.status == 0:
                return "unsat", None
            dual = getattr(res, "mip_dual_bound", None)
            if dual is not None and np.isfinite(dual) and dual > 0:
                return "unsat", None
            return "timeout", None

        return solve

    def _milp_program(self, lo, hi, bounds):
        """Variables: the input, then per layer its outputs (and binaries); constraints as sparse blocks."""
        n0 = lo.numel()
        vlo = [lo.reshape(-1).cpu().numpy()]
        vhi = [hi.reshape(-1).cpu().numpy()]
        vint = [np.zeros(n0)]
        nvars = n0
        blocks = []  # (rows, cols, vals, row_lo, row_hi)
        nrows = 0

        def new(lo_, hi_, integer=False):
            nonlocal nvars
            lo_, hi_ = np.asarray(lo_, dtype=float), np.asarray(hi_, dtype=float)
            idx = np.arange(nvars, nvars + len(lo_))
            vlo.append(lo_)
            vhi.append(hi_)
            vint.append(np.full(len(lo_), 1.0 if integer else 0.0))
            nvars += len(lo_)
            return idx

        def rows(cols, vals, rlo, rhi):
            """Constraints rlo <= sum_k vals[:, k] x[cols[:, k]] <= rhi, one per row of the (m, width) arrays."""
            nonlocal nrows
            cols, vals = np.atleast_2d(cols), np.broadcast_to(np.atleast_2d(vals), np.atleast_2d(cols).shape)
            m, width = cols.shape
            blocks.append(
                (
                    np.repeat(np.arange(nrows, nrows + m), width),
                    cols.reshape(-1),
                    vals.reshape(-1),
                    np.asarray(rlo, float).reshape(-1),
                    np.asarray(rhi, float).reshape(-1),
                )
            )
            nrows += m

        prev = np.arange(n0)
        for layer in self.layers:
            if layer.kind == "affine":  # z - A prev = b
                A = layer.A.tocsr()
                z = new(np.full(A.shape[0], -np.inf), np.full(A.shape[0], np.inf))
                counts = np.diff(A.indptr)
                r = np.repeat(np.arange(nrows, nrows + A.shape[0]), counts + 1)
                cols = np.empty(len(r), dtype=np.int64)
                vals = np.empty(len(r))
                starts = A.indptr[:-1] + np.arange(A.shape[0])  # each row: z first, then -A's entries
                cols[starts], vals[starts] = z, 1.0
                mask = np.ones(len(r), bool)
                mask[starts] = False
                cols[mask], vals[mask] = prev[A.indices], -A.data
                blocks.append((r, cols, vals, layer.b, layer.b))
                nrows += A.shape[0]
                prev = z
                continue
            pl, pu = bounds[layer.op]
            z = prev  # tighten the inputs' bounds with the layer's pre-activation bounds
            flat_lo, flat_hi = np.concatenate(vlo), np.concatenate(vhi)
            flat_lo[z], flat_hi[z] = np.maximum(flat_lo[z], pl), np.minimum(flat_hi[z], pu)
            vlo[:], vhi[:] = [flat_lo], [flat_hi]
            vint[:] = [np.concatenate(vint)]
            if layer.kind == "relu":
                out = z.copy()
                dead, unstable = pu <= 0, (pl < 0) & (pu > 0)
                if layer.graft is not None:  # grafted: out = slope * z + intercept, one equality, no binary
                    g = layer.graft
                    dead, unstable = dead & ~g, unstable & ~g
                    a, c = layer.slope[g], layer.intercept[g]
                    ends = np.stack([a * pl[g] + c, a * pu[g] + c])
                    out[g] = new(ends.min(0), ends.max(0))
                    k = int(g.sum())
                    rows(np.stack([out[g], z[g]], 1), np.stack([np.ones(k), -a], 1), c, c)
                if dead.any():
                    out[dead] = new(np.zeros(dead.sum()), np.zeros(dead.sum()))
                if unstable.any():
                    zu, lu, uu = z[unstable], pl[unstable], pu[unstable]
                    a = new(np.zeros(len(zu)), uu)
                    d = new(np.zeros(len(zu)), np.ones(len(zu)), integer=True)
                    out[unstable] = a
                    k, one = len(zu), np.ones(len(zu))
                    rows(np.stack([a, zu], 1), [1.0, -1.0], np.zeros(k), np.full(k, np.inf))  # a >= z
                    rows(np.stack([a, d], 1), np.stack([one, -uu], 1), np.full(k, -np.inf), np.zeros(k))  # a <= u d
                    rows(np.stack([a, zu, d], 1), np.stack([one, -one, -lu], 1), np.full(k, -np.inf), -lu)
                prev = out  # a <= z - l (1 - d)
            else:  # max over windows (Tjeng et al.'s encoding; inputs that cannot be the max left out)
                out = []
                for w in layer.windows:
                    ls, us = pl[w], pu[w]
                    cand = [i for i in range(len(w)) if us[i] >= ls.max()]
                    if len(cand) == 1:
                        out.append(z[w[cand[0]]])
                        continue
                    umax = us[cand].max()
                    (a,) = new([ls.max()], [umax])
                    ds = new(np.zeros(len(cand)), np.ones(len(cand)), integer=True)
                    rows(ds[None], 1.0, [1.0], [1.0])  # one of them
                    v, gap = z[w[cand]], umax - ls[cand]
                    k = len(cand)
                    rows(np.stack([np.full(k, a), v], 1), [1.0, -1.0], np.zeros(k), np.full(k, np.inf))  # a >= z_i
                    rows(
                        np.stack([np.full(k, a), v, ds], 1),
                        np.stack([np.ones(k), -np.ones(k), gap], 1),
                        np.full(k, -np.inf),
                        gap,
                    )  # a <= z_i + gap (1 - d_i)
                    out.append(a)
                prev = np.array(out)
        r = np.concatenate([b[0] for b in blocks])
        cidx = np.concatenate([b[1] for b in blocks])
        vals = np.concatenate([b[2] for b in blocks])
        A = sp.csr_matrix((vals, (r, cidx)), shape=(nrows, nvars))
        cons = LinearConstraint(A, np.concatenate([b[3] for b in blocks]), np.concatenate([b[4] for b in blocks]))
        box = Box(np.concatenate(vlo), np.concatenate(vhi))
        return box, cons, np.concatenate(vint), prev, n0

    # ---- Marabou ----
    def _marabou(self, lo, hi, bounds):
        """``solve(y, j, timeout)`` for one sample: is logit_j - logit_y >= 0 anywhere in the box? The sample's
        query (network and bounds) is built on the first call, here; each margin adds its property and solves
        in a forked child that is killed at the deadline: Marabou 2.0's local search can loop past its own
        timeout and it traps SIGINT/SIGTERM, so only a child process can be stopped reliably. ``_marabou_solve``
        runs it in a temporary folder (Marabou writes failedMarabouQuery.ipq into the working folder on an error)."""

        query = []

        def solve(y, j, timeout):
            if not query:
                query.extend(self._marabou_query(lo, hi, bounds))
            ctx = mp.get_context("fork")
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_marabou_child, args=(send, *query, y, j, timeout), daemon=True)
            proc.start()
            send.close()
            try:
                if recv.poll(timeout + 5):
                    return recv.recv()
                return "timeout", None
            except EOFError:  # the child died
                return "unknown", None
            finally:
                if proc.is_alive():
                    proc.kill()
                proc.join()
                recv.close()

        return solve

    def _marabou_query(self, lo, hi, bounds):
        """(the InputQuery of the network over the box, the logits, the inputs), logits and inputs as (variable
        per entry, -1 where the entry is a constant; the constants; the query's scale ``_scale``; logits also the
        narrowest range once scaled, below which Marabou's unsat is not trusted). Every quantity
        the box fixes (an input with lo == hi, an affine output all of whose inputs are constant or whose range
        is below its scalar's rounding, a dead ReLU's zero, a max window no variable of which exceeds its largest
        constant) is folded into the equations' scalars rather than made a variable with equal bounds, and
        stable active ReLUs pass their input on (its bounds, >= 0, make it exact): a smaller query, none of whose
        variables Marabou's preprocessor would fix. Every variable has a finite range (interval arithmetic
        through the equations, intersected with the given bounds where that leaves it non-empty), which sets
        the scale and decides which ReLUs are stable."""
        from maraboupy import MarabouCore  # optional: the verify extra

        q = MarabouCore.InputQuery()
        lo_np, hi_np = lo.reshape(-1).cpu().numpy(), hi.reshape(-1).cpu().numpy()
        var_lo, var_hi = [], []

        def new_var(a, b):
            var_lo.append(float(a))
            var_hi.append(float(b))
            return len(var_lo) - 1

        fixed = lo_np >= hi_np
        pvar = np.array([-1 if f else new_var(a, b) for f, a, b in zip(fixed, lo_np, hi_np)], dtype=np.int64)
        pval = np.where(fixed, lo_np, 0.0)
        inputs = (pvar.copy(), pval.copy())
        equations, relus, maxes = [], [], []
        for layer in self.layers:
            if layer.kind == "affine":
                A = layer.A.tocsr()
                zvar, zval = np.full(A.shape[0], -1, dtype=np.int64), np.zeros(A.shape[0])
                for o in range(A.shape[0]):
                    s, e = A.indptr[o], A.indptr[o + 1]
                    cols, vals = A.indices[s:e], A.data[s:e]
                    live = pvar[cols] >= 0
                    scalar = float(layer.b[o]) + float(np.dot(vals[~live], pval[cols[~live]]))
                    if not live.any():
                        zval[o] = scalar
                        continue
                    lv, vv = pvar[cols[live]], vals[live]  # interval bounds: every variable gets a finite range
                    vlo, vhi = np.array([var_lo[v] for v in lv]), np.array([var_hi[v] for v in lv])
                    zlo = scalar + float(np.minimum(vv * vlo, vv * vhi).sum())
                    zhi = scalar + float(np.maximum(vv * vlo, vv * vhi).sum())
                    if zlo >= zhi:  # a range below the scalar's rounding: the constant it is
                        zval[o] = zlo
                        continue
                    zvar[o] = new_var(zlo, zhi)
                    terms = [(-float(v), int(var)) for var, v in zip(lv, vv)]
                    equations.append(([(1.0, int(zvar[o]))] + terms, scalar))
                pvar, pval = zvar, zval
                continue
            pl, pu = bounds[layer.op]
            for v, a_, b_ in zip(pvar, pl, pu):
                if v < 0:
                    continue
                a_, b_ = max(var_lo[v], float(a_)), min(var_hi[v], float(b_))
                if a_ < b_:  # the given bounds where tighter, never emptying a range by rounding
                    var_lo[v], var_hi[v] = a_, b_
            el = np.array([var_lo[v] if v >= 0 else c for v, c in zip(pvar, pval)])  # constants: their value
            eu = np.array([var_hi[v] if v >= 0 else c for v, c in zip(pvar, pval)])
            if layer.kind == "relu":
                ovar, oval = np.full(len(pvar), -1, dtype=np.int64), np.zeros(len(pvar))
                for k, (v, l_, u_) in enumerate(zip(pvar, el, eu)):
                    if layer.graft is not None and layer.graft[k]:  # f = slope * v + intercept
                        a, c = float(layer.slope[k]), float(layer.intercept[k])
                        glo, ghi = min(a * l_, a * u_) + c, max(a * l_, a * u_) + c
                        if v < 0 or glo >= ghi:  # a constant input, or a slope of 0 (or below c's rounding)
                            oval[k] = glo
                        else:
                            ovar[k] = new_var(glo, ghi)
                            equations.append(([(1.0, int(ovar[k])), (-a, int(v))], c))
                    elif v < 0:
                        oval[k] = max(pval[k], 0.0)
                    elif u_ <= 0:
                        continue  # dead: the constant 0
                    elif l_ >= 0:
                        ovar[k] = v  # active: its bounds (>= 0) already make it the ReLU's output
                    else:
                        ovar[k] = new_var(0.0, float(u_))
                        relus.append((int(v), int(ovar[k])))
                pvar, pval = ovar, oval
            else:
                ovar, oval = np.full(len(layer.windows), -1, dtype=np.int64), np.zeros(len(layer.windows))
                for k, w in enumerate(layer.windows):
                    v, ls, us = pvar[w], el[w], eu[w]
                    cand = us >= ls.max()  # inputs that can be the max
                    live, const = cand & (v >= 0), cand & (v < 0)
                    cmax = float(pval[w][const].max()) if const.any() else -np.inf
                    ghi = float(us[live].max()) if live.any() else -np.inf
                    if ghi <= cmax:  # no variable exceeds the largest constant: the max is that constant
                        oval[k] = cmax
                        continue
                    glo = float(ls[live].max())  # the variables' max lies in [glo, ghi]
                    if live.sum() == 1:
                        g = int(v[live][0])
                    else:
                        g = new_var(glo, ghi)
                        maxes.append(({int(i) for i in v[live]}, g))
                    if glo < cmax:  # max(g, c) = c + relu(g - c), without a variable fixed at c
                        h = new_var(glo - cmax, ghi - cmax)
                        equations.append(([(1.0, h), (-1.0, g)], -cmax))
                        r = new_var(0.0, ghi - cmax)
                        relus.append((h, r))
                        ovar[k] = new_var(cmax, ghi)
                        equations.append(([(1.0, int(ovar[k])), (-1.0, r)], cmax))
                    else:  # some variable is never below the constants
                        ovar[k] = g
                pvar, pval = ovar, oval
        width = np.array(var_hi) - np.array(var_lo)
        S = _scale(width)
        narrowest = float(width[width > 0].min() * S) if (width > 0).any() else np.inf
        q.setNumberOfVariables(len(var_lo))
        for v, (a, b) in enumerate(zip(var_lo, var_hi)):
            q.setLowerBound(v, a * S)
            q.setUpperBound(v, b * S)
        for i, v in enumerate(inputs[0][inputs[0] >= 0]):
            q.markInputVariable(int(v), i)
        for terms, scalar in equations:
            eq = MarabouCore.Equation()
            for coef, var in terms:
                eq.addAddend(coef, var)
            eq.setScalar(scalar * S)
            q.addEquation(eq)
        for b, f in relus:
            MarabouCore.addReluConstraint(q, b, f)
        for ins, f in maxes:
            MarabouCore.addMaxConstraint(q, ins, f)
        return q, (pvar, pval, S, narrowest), (*inputs, S)


def _scale(width: np.ndarray, target: float = 1e-3, cap: float = 1e6) -> float:
    """The factor S the whole query is multiplied by (Marabou sees S v for every variable v): enough that the
    narrowest range is ``target`` wide (100 times Marabou's threshold below), at most ``cap``, at least 1.
    Marabou 2.0's preprocessor fixes any variable whose range is narrower than 1e-5 (an absolute constant,
    PREPROCESSOR_ALMOST_FIXED_THRESHOLD) at its lower bound: two such neurons that move oppositely with one
    input pin that input to two values and make a feasible query unsat (a pruned ticket's tiny surviving
    weights do it). ReLU, max and the affine maps are positively homogeneous, so the scaled query is the same
    problem with its scalars and bounds times S and its coefficients unchanged (no worse conditioned)."""
    w = width[np.isfinite(width) & (width > 0)]
    if not len(w):
        return 1.0
    return float(min(cap, max(1.0, target / w.min())))


def _marabou_solve(q, logits, inputs, y: int, j: int, timeout: float):
    """The margin's property (logit_j - logit_y >= 0) added to ``q`` and solved: ("sat", the input), ("unsat",
    None), ("timeout", None) or ("unknown", None). ``logits`` and ``inputs`` as ``_marabou_query`` gives them.
    Solved in a temporary working folder. Changes ``q``: the caller runs it on a forked child's copy."""
    from maraboupy import MarabouCore  # optional: the verify extra

    (lvar, lval, S, narrowest), (ivar, ival, _) = logits, inputs
    terms = [(coef, int(lvar[k])) for coef, k in ((1.0, j), (-1.0, y)) if lvar[k] >= 0]
    scalar = float(lval[y] - lval[j])  # logit_j - logit_y >= 0, with the constant parts moved right
    if not terms:  # both logits constant over the box: any input answers
        if scalar > 0:
            return "unsat", None
        return "sat", np.array([ival[i] if v < 0 else q.getLowerBound(int(v)) / S for i, v in enumerate(ivar)])
    prop = MarabouCore.Equation(MarabouCore.Equation.GE)
    for coef, var in terms:
        prop.addAddend(coef, var)
    prop.setScalar(scalar * S)
    q.addEquation(prop)
    opts = MarabouCore.Options()
    opts._timeoutInSeconds = max(1, int(np.ceil(timeout)))
    opts._verbosity = 0
    here = os.getcwd()  # Marabou writes failedMarabouQuery.ipq into the working folder on an error
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            code, vals, _stats = MarabouCore.solve(q, opts, os.devnull)
        finally:
            os.chdir(here)
    status = _status(code, narrowest)
    if status == "sat":
        return "sat", np.array([ival[i] if v < 0 else vals[int(v)] / S for i, v in enumerate(ivar)])
    return status, None


def _status(code: str, narrowest: float) -> str:
    """Marabou's exit code as sat, unsat, timeout or unknown (an error, or an unsat where a range of the scaled
    query is still narrower than 1e-4, which Marabou's preprocessor might have fixed: beyond ``_scale``'s cap)."""
    if code == "sat":
        return "sat"
    if code == "unsat":
        return "unsat" if narrowest >= 1e-4 else "unknown"
    return "timeout" if code.lower() == "timeout" else "unknown"


def _marabou_child(send, q, logits, inputs, y, j, timeout):
    """In the forked child: ``_marabou_solve``'s answer sent back, then exit."""
    # pragma: no mutate block (process plumbing: it runs in a forked child, where mutmut cannot see which tests
    # reach it; every Marabou test goes through it, and _marabou_solve's mutants are tested in-process)

    try:
        result = _marabou_solve(q, logits, inputs, y, j, timeout)
    except Exception:
        result = ("unknown", None)
    send.send(result)
    os._exit(0)
