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
            if status in ("timeout", "unknown"):  # unknown: the solver failed
                return Verdict(status, time.perf_counter() - t0, self.solver)
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
        boundary, which the caller pushes with PGD), "timeout"; where a leaf is beyond its LPs (an inexact
        max-pool window) the margin goes to the MILP with the time left."""
        search = BaB(self.ops, self.model_fn, lo, hi, root, self.bab)
        exact = self._milp(lo[0], hi[0], bounds)  # builds its program only if it is asked

        def solve(y, j, timeout):
            r = search.margin(y, j, time.perf_counter() + timeout)
            self.domains += r.domains
            if r.status == "verified":
                return "unsat", None
            if r.point is not None:
                return "sat", r.point.reshape(-1).numpy()
            if r.status == "timeout":
                return "timeout", None
            return exact(y, j, max(timeout - r.seconds, 0.0))

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
        timeout and it traps SIGINT/SIGTERM, so only a child process can be stopped reliably. The child runs in
        a temporary folder (Marabou writes failedMarabouQuery.ipq into the working folder on an error)."""

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
        """(the InputQuery of the network over the box, the logits' variables, the input size)."""
        from maraboupy import MarabouCore  # optional: the verify extra

        q = MarabouCore.InputQuery()
        lo_np, hi_np = lo.reshape(-1).cpu().numpy(), hi.reshape(-1).cpu().numpy()
        n0 = len(lo_np)
        nvars = [n0]
        var_lo, var_hi = list(lo_np), list(hi_np)

        def new_var(a=-1e9, b=1e9):
            var_lo.append(a)
            var_hi.append(b)
            nvars[0] += 1
            return nvars[0] - 1

        equations, relus, maxes = [], [], []
        prev = np.arange(n0)
        for layer in self.layers:
            if layer.kind == "affine":
                A = layer.A
                z = np.array([new_var() for _ in range(A.shape[0])])
                for o in range(A.shape[0]):
                    s, e = A.indptr[o], A.indptr[o + 1]
                    equations.append(
                        (
                            [(1.0, int(z[o]))]
                            + [(-float(v), int(prev[c])) for c, v in zip(A.indices[s:e], A.data[s:e])],
                            float(layer.b[o]),
                        )
                    )
                prev = z
                continue
            z = prev
            pl, pu = bounds[layer.op]
            for v, a_, b_ in zip(z, pl, pu):
                var_lo[v], var_hi[v] = max(var_lo[v], float(a_)), min(var_hi[v], float(b_))
            if layer.kind == "relu":
                out = []
                for k, (v, l_, u_) in enumerate(zip(z, pl, pu)):
                    if layer.graft is not None and layer.graft[k]:  # f = slope * v + intercept
                        a, c = float(layer.slope[k]), float(layer.intercept[k])
                        f = new_var(min(a * l_, a * u_) + c, max(a * l_, a * u_) + c)
                        equations.append(([(1.0, f), (-a, int(v))], c))
                    else:
                        f = new_var(max(0.0, float(l_)), max(0.0, float(u_)))
                        relus.append((int(v), f))
                    out.append(f)
                prev = np.array(out)
            else:
                out = []
                for w in layer.windows:
                    f = new_var(float(pl[w].max()), float(pu[w].max()))
                    maxes.append(({int(z[i]) for i in w}, f))
                    out.append(f)
                prev = np.array(out)
        q.setNumberOfVariables(nvars[0])
        for v in range(nvars[0]):
            q.setLowerBound(v, float(var_lo[v]))
            q.setUpperBound(v, float(var_hi[v]))
        for i in range(n0):
            q.markInputVariable(i, i)
        for terms, scalar in equations:
            eq = MarabouCore.Equation()
            for coef, var in terms:
                eq.addAddend(coef, var)
            eq.setScalar(scalar)
            q.addEquation(eq)
        for b, f in relus:
            MarabouCore.addReluConstraint(q, b, f)
        for ins, f in maxes:
            MarabouCore.addMaxConstraint(q, ins, f)
        return q, prev, n0


def _marabou_solve(q, logits, n0: int, y: int, j: int, timeout: float):
    """The margin's property (logit_j - logit_y >= 0) added to ``q`` and solved: ("sat", the input), ("unsat",
    None), ("timeout", None) or ("unknown", None). Changes ``q``: the caller runs it on a forked child's copy."""
    from maraboupy import MarabouCore  # optional: the verify extra

    prop = MarabouCore.Equation(MarabouCore.Equation.GE)
    prop.addAddend(1.0, int(logits[j]))
    prop.addAddend(-1.0, int(logits[y]))
    prop.setScalar(0.0)
    q.addEquation(prop)
    opts = MarabouCore.Options()
    opts._timeoutInSeconds = max(1, int(np.ceil(timeout)))
    opts._verbosity = 0
    code, vals, _stats = MarabouCore.solve(q, opts, os.devnull)
    if code == "sat":
        return "sat", np.array([vals[i] for i in range(n0)])
    if code == "unsat":
        return "unsat", None
    return ("timeout", None) if code.lower() == "timeout" else ("unknown", None)


def _marabou_child(send, q, logits, n0, y, j, timeout):
    """In the forked child, in a temporary folder: ``_marabou_solve``'s answer sent back, then exit."""
    # pragma: no mutate block (process plumbing: it runs in a forked child, where mutmut cannot see which tests
    # reach it; every Marabou test goes through it, and _marabou_solve's mutants are tested in-process)

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            result = _marabou_solve(q, logits, n0, y, j, timeout)
        except Exception:
            result = ("unknown", None)
        send.send(result)
    os._exit(0)
