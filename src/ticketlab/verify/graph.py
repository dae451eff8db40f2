"""A feed-forward model as a flat list of ops that bounds can be propagated through.

Supported: Linear, Conv1d/Conv2d (any stride, padding, dilation, groups), BatchNorm1d/2d (eval: a per-channel
affine map), Flatten, AvgPool1d/2d (a fixed depthwise convolution), MaxPool1d/2d with stride = kernel and no
padding (IBP is exact for it; CROWN uses the relaxation in ``MaxPool``), ReLU, Identity and Dropout (identity
in eval mode), in ``nn.Sequential`` containers nested to any depth. Residual blocks, attention, a subclass of any
of these with a forward of its own, a module with a forward hook (but ``observes_only`` ones) and any option the
ops do not model (pool padding, ``ceil_mode``, ``divisor_override``, ``return_indices``, partial flattening) are
refused by ``to_ops`` itself, naming the module: every entry point, not only ``ticketlab verify``, gets bounds
of the module's own function. The dataset's standardisation becomes the first op, so bounds
take boxes in pixel units.

Every affine op is "A x + b" with ``apply`` (A x), ``apply_t`` (lam A, for backward bound propagation),
``apply_abs`` (|A| r, for IBP's radius) and ``bias``. ``Dense`` keeps a compressed sparse copy of its weight
when ``sparse=True`` and the weight is sparse enough to gain from it (pruned weights are exact zeros), so a
pruned weight costs nothing in the matrix products of IBP and CROWN.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..hooks import is_observer
from ..models.graft import GraftedReLU

SPARSE_BELOW = 0.04  # weight density under which torch's CSR products beat dense ones on a CPU (measured with
# 784x300 float64 weights against 15,000 rows: dense 0.29 s at every density; CSR 0.34 s at 5%, 0.16 s at 1%)


class Op:
    affine = False
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ibp(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Monotone ops: the box's image is the box of the corners' images."""
        return self.forward(lo), self.forward(hi)


class Affine(Op):
    affine = True
    bias: torch.Tensor | None = None  # broadcastable to (1, *out_shape)

    def apply(self, x):
        raise NotImplementedError

    def apply_t(self, lam):
        raise NotImplementedError

    def apply_abs(self, r):
        raise NotImplementedError

    def forward(self, x):
        y = self.apply(x)
        return y if self.bias is None else y + self.bias

    def ibp(self, lo, hi):
        mid, rad = (hi + lo) / 2, (hi - lo) / 2
        m = self.forward(mid)
        r = self.apply_abs(rad)
        return m - r, m + r

    def bias_dot(self, lam: torch.Tensor) -> torch.Tensor | None:
        """sum(lam * b) per row of ``lam`` (shape (N, *out_shape)) -> (N,)."""
        if self.bias is None:
            return None
        return (lam * self.bias).flatten(1).sum(1)


class Dense(Affine):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, sparse: bool):
        self.weight = weight
        self.bias = bias
        self.in_shape, self.out_shape = (weight.shape[1],), (weight.shape[0],)
        self.csr = None
        if sparse and weight.device.type == "cpu":
            w = weight.detach()
            if float((w != 0).float().mean()) < SPARSE_BELOW:
                with warnings.catch_warnings():  # "sparse CSR support is in beta"
                    warnings.simplefilter("ignore")
                    self.csr = w.to_sparse_csr()
                    self.csr_t = w.t().contiguous().to_sparse_csr()
                    self.csr_abs = w.abs().to_sparse_csr()

    def apply(self, x):
        if self.csr is None:
            return x @ self.weight.t()
        return (self.csr @ x.t()).t()

    def apply_t(self, lam):
        if self.csr is None:
            return lam @ self.weight
        return (self.csr_t @ lam.t()).t()

    def apply_abs(self, r):
        if self.csr is None:
            return r @ self.weight.abs().t()
        return (self.csr_abs @ r.t()).t()


class Conv(Affine):
    def __init__(self, weight, bias, stride, padding, dilation, groups, in_shape, out_shape):
        self.weight, self.stride, self.padding, self.dilation, self.groups = weight, stride, padding, dilation, groups
        self.dim = weight.dim() - 2
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.bias = None if bias is None else bias.view(-1, *([1] * self.dim))
        k = weight.shape[2:]
        full = [
            (o - 1) * s - 2 * p + d * (kk - 1) + 1
            for o, s, p, d, kk in zip(out_shape[1:], stride, padding, dilation, k)
        ]
        self.output_padding = tuple(i - f for i, f in zip(in_shape[1:], full))
        self._conv = F.conv1d if self.dim == 1 else F.conv2d
        self._conv_t = F.conv_transpose1d if self.dim == 1 else F.conv_transpose2d

    def _fwd(self, x, w):
        return self._conv(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def apply(self, x):
        return self._fwd(x, self.weight)

    def apply_abs(self, r):
        return self._fwd(r, self.weight.abs())

    def apply_t(self, lam):
        return self._conv_t(
            lam, self.weight, None, self.stride, self.padding, self.output_padding, self.groups, self.dilation
        )


class Scale(Affine):
    """x * s + t, per channel (BatchNorm in eval mode, the data's standardisation)."""

    def __init__(self, s, t, shape):
        self.s, self.bias = s, t
        self.in_shape = self.out_shape = tuple(shape)

    def apply(self, x):
        return x * self.s

    apply_t = apply

    def apply_abs(self, r):
        return r * self.s.abs()


class Reshape(Affine):
    def __init__(self, in_shape, out_shape):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def apply(self, x):
        return x.reshape(x.shape[0], *self.out_shape)

    def apply_t(self, lam):
        return lam.reshape(lam.shape[0], *self.in_shape)

    apply_abs = apply


class ReLU(Op):
    """ReLU; with ``graft`` (a bool per neuron) the grafted neurons are ``slope * x + intercept`` instead
    (linearity grafting): linear, so every bound and the exact solvers treat them without relaxation."""

    def __init__(self, shape, graft=None, slope=None, intercept=None):
        self.in_shape = self.out_shape = tuple(shape)
        self.graft, self.slope, self.intercept = graft, slope, intercept
        if graft is not None and not bool(graft.any()):
            self.graft = self.slope = self.intercept = None

    def forward(self, x):
        if self.graft is None:
            return x.clamp_min(0)
        return torch.where(self.graft, x * self.slope + self.intercept, x.clamp_min(0))

    def ibp(self, lo, hi):
        if self.graft is None:
            return lo.clamp_min(0), hi.clamp_min(0)
        a, b = self.slope, self.intercept
        ll, lh = lo * a + b, hi * a + b
        return (
            torch.where(self.graft, torch.minimum(ll, lh), lo.clamp_min(0)),
            torch.where(self.graft, torch.maximum(ll, lh), hi.clamp_min(0)),
        )


class MaxPool(Op):
    """Max over non-overlapping windows (stride = kernel, no padding). Its linear relaxation: below, the
    input with the largest lower bound in the window; above, that input where its lower bound is at least
    every other input's upper bound in the window (then the max is that input exactly), else the window's
    largest upper bound, a constant."""

    def __init__(self, kernel, dim, in_shape, out_shape):
        self.kernel, self.dim = kernel, dim
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self._pool = F.max_pool1d if dim == 1 else F.max_pool2d
        self._unpool = F.max_unpool1d if dim == 1 else F.max_unpool2d

    def forward(self, x):
        return self._pool(x, self.kernel, self.kernel)

    def relaxation(self, lo, hi):
        """(argmax index of the lower bounds per window, exact: the window's max is that input, the window's
        largest upper bound)."""
        lmax, idx = self._pool(lo, self.kernel, self.kernel, return_indices=True)
        umax = self._pool(hi, self.kernel, self.kernel)
        # the largest upper bound among the *other* inputs of the window: mask the argmax out
        flat_hi = hi.flatten(2).scatter(2, idx.flatten(2), float("-inf")).view_as(hi)
        others = self._pool(flat_hi, self.kernel, self.kernel)
        return idx, lmax >= others, umax

    def scatter(self, vals, idx):
        """``vals`` (N, *out_shape) put at the window positions ``idx`` (same shape) of the input."""
        return self._unpool(vals, idx, self.kernel, self.kernel, output_size=self.in_shape[1:])


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


# The modules the ops model, each with the forward it is modelled by: a subclass that overrides it computes
# another function and is refused (by ``_refuse_other_functions``).
MODELLED = (
    nn.Sequential, nn.Identity, nn.Dropout, nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d,
    nn.Flatten, nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d, nn.ReLU, GraftedReLU,
)  # fmt: skip


def _refuse_other_functions(name: str, module: nn.Module) -> None:
    """Refuse a module that would not compute what its ops compute: a forward of its own (a subclass of a
    modelled module that overrides it) or a hook that may change its input or output (torch.nn.utils.prune's
    reparametrisation is one)."""
    base = next((c for c in MODELLED if isinstance(module, c)), None)
    if base is not None and type(module).forward is not base.forward:
        raise unsupported(name, module, f", a {base.__name__} with a forward of its own")
    hooks = [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
    if any(not is_observer(h) for h in hooks):
        raise unsupported(
            name,
            module,
            " with a forward hook (remove it; a torch.nn.utils.prune mask: prune.remove, or "
            "ticketlab.sparse.from_torch_prune(model, remove=True))",
        )


def _leaves(module: nn.Module, prefix: str):
    _refuse_other_functions(prefix or type(module).__name__, module)
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix or type(module).__name__, module


def unsupported(name: str, module: nn.Module, why: str = "") -> UserError:
    return UserError(
        f"verification does not support layer {name} ({type(module).__name__}{why}); it takes "
        "Linear, Conv1d/2d, ReLU (or grafted), BatchNorm, Flatten, AvgPool and MaxPool (stride = kernel) in "
        "nn.Sequential models (lenet300, mlp1d, cnn-small, conv2/4/6, cnn1d)"
    )


def to_ops(
    model: nn.Module,
    input_shape: tuple[int, ...],
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    sparse: bool = False,
) -> list[Op]:
    """``model`` (evaluated as in eval mode) as ops taking pixel-space input of ``input_shape``; ``mean`` and
    ``std`` the standardisation the model expects. Parameters are shared with the model, not copied, so
    bounds are differentiable in them (certified training)."""
    shape = tuple(input_shape)
    ops: list[Op] = []
    if mean is not None:
        m, s = mean.reshape(-1), std.reshape(-1)
        view = (-1, *([1] * (len(shape) - 1))) if m.numel() > 1 else (1,) * len(shape)
        ops.append(Scale((1 / s).view(view), (-m / s).view(view), shape))
    for name, mod in _leaves(model, ""):
        if isinstance(mod, (nn.Identity, nn.Dropout)):
            continue
        if isinstance(mod, nn.Linear):
            if len(shape) != 1:
                raise unsupported(name, mod, " after a non-flat input")
            op = Dense(mod.weight, mod.bias, sparse)
        elif isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            dim = mod.weight.dim() - 2
            k, d, st = _tuple(mod.kernel_size, dim), _tuple(mod.dilation, dim), _tuple(mod.stride, dim)
            if mod.padding_mode != "zeros":
                raise unsupported(name, mod, f", padding mode {mod.padding_mode}")
            if mod.padding == "valid":
                pad = (0,) * dim
            elif mod.padding == "same":
                if any(dd * (kk - 1) % 2 for kk, dd in zip(k, d)):
                    raise unsupported(name, mod, ", asymmetric 'same' padding")
                pad = tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d))
            else:
                pad = _tuple(mod.padding, dim)
            out_shape = (
                mod.out_channels,
                *[(i + 2 * p - dd * (kk - 1) - 1) // s + 1 for i, p, dd, kk, s in zip(shape[1:], pad, d, k, st)],
            )
            op = Conv(mod.weight, mod.bias, st, pad, d, mod.groups, shape, out_shape)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if mod.running_mean is None:
                raise unsupported(name, mod, " without running statistics")
            inv = (mod.running_var + mod.eps).rsqrt()
            w = mod.weight if mod.affine else torch.ones_like(inv)
            b = mod.bias if mod.affine else torch.zeros_like(inv)
            s = w * inv
            view = (-1, *([1] * (len(shape) - 1)))
            op = Scale(s.view(view), (b - mod.running_mean * s).view(view), shape)
        elif isinstance(mod, nn.Flatten):
            last = mod.end_dim if mod.end_dim >= 0 else len(shape) + 1 + mod.end_dim  # of the batched input
            if mod.start_dim != 1 or last != len(shape):
                raise unsupported(name, mod, f" of dims {mod.start_dim}..{mod.end_dim} (only 1..-1: all but the batch)")
            op = Reshape(shape, (math.prod(shape),))
        elif isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d)):
            dim = 1 if isinstance(mod, nn.AvgPool1d) else 2
            k, st = _tuple(mod.kernel_size, dim), _tuple(mod.stride or mod.kernel_size, dim)
            if mod.ceil_mode or any(_tuple(mod.padding, dim)):
                raise unsupported(name, mod, " with padding or ceil_mode")
            if getattr(mod, "divisor_override", None) is not None:
                raise unsupported(name, mod, " with divisor_override")
            c = shape[0]
            ref = next(iter(model.parameters()), None)  # the pool's weights in the model's dtype and device
            w = torch.full(
                (c, 1, *k),
                1 / math.prod(k),
                dtype=torch.get_default_dtype() if ref is None else ref.dtype,
                device=None if ref is None else ref.device,
            )
            out_shape = (c, *[(i - kk) // s + 1 for i, kk, s in zip(shape[1:], k, st)])
            op = Conv(w, None, st, (0,) * dim, (1,) * dim, c, shape, out_shape)
        elif isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
            dim = 1 if isinstance(mod, nn.MaxPool1d) else 2
            k, st = _tuple(mod.kernel_size, dim), _tuple(mod.stride or mod.kernel_size, dim)
            if (
                k != st
                or any(_tuple(mod.padding, dim))
                or any(d != 1 for d in _tuple(mod.dilation, dim))
                or mod.ceil_mode
            ):
                raise unsupported(name, mod, " with stride != kernel, padding or dilation")
            if mod.return_indices:
                raise unsupported(name, mod, " with return_indices")
            out_shape = (shape[0], *[i // kk for i, kk in zip(shape[1:], k)])
            op = MaxPool(k, dim, shape, out_shape)
        elif isinstance(mod, nn.ReLU):
            op = ReLU(shape)
        elif isinstance(mod, GraftedReLU):
            if tuple(mod.graft.shape) != tuple(shape):
                raise unsupported(name, mod, f" of shape {tuple(mod.graft.shape)} on inputs of shape {shape}")
            op = ReLU(shape, mod.graft, mod.slope, mod.intercept)
        else:
            raise unsupported(name, mod)
        ops.append(op)
        shape = op.out_shape
    return ops


def as_float64(ops: list[Op]) -> list[Op]:
    """The same ops with float64 copies of their tensors (detached): what complete verification solves in.
    Ops already in float64 are returned as they are."""

    def d(x):
        return None if x is None else x.detach().double()

    out: list[Op] = []
    for op in ops:
        if isinstance(op, Dense):
            # the same zeros, so the copy keeps the sparse products exactly when the original has them
            out.append(op if op.weight.dtype == torch.float64 else Dense(d(op.weight), d(op.bias), op.csr is not None))
        elif isinstance(op, Conv):
            bias = None if op.bias is None else op.bias.reshape(-1)
            out.append(
                op
                if op.weight.dtype == torch.float64
                else Conv(
                    d(op.weight), d(bias), op.stride, op.padding, op.dilation, op.groups, op.in_shape, op.out_shape
                )
            )
        elif isinstance(op, Scale):
            out.append(op if op.s.dtype == torch.float64 else Scale(d(op.s), d(op.bias), op.in_shape))
        elif isinstance(op, ReLU) and op.graft is not None:
            out.append(ReLU(op.in_shape, op.graft, d(op.slope), d(op.intercept)))
        else:  # Reshape, MaxPool, plain ReLU: no tensors
            out.append(op)
    return out


def forward(ops: list[Op], x: torch.Tensor) -> torch.Tensor:
    for op in ops:
        x = op.forward(x)
    return x


def check_ops(ops: list[Op], model: nn.Module, input_shape, mean, std) -> None:
    """Refuse if the ops do not compute the model (a module whose forward differs from its parts)."""
    ref = next(iter(model.parameters()))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, *input_shape, generator=g).to(ref.device, ref.dtype)
    was = model.training
    model.eval()
    with torch.no_grad():
        want = model(x if mean is None else (x - mean.to(x)) / std.to(x))
        got = forward(ops, x)
    model.train(was)
    if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=1e-4 * (1 + float(want.abs().max()))):
        raise UserError(
            f"verification cannot follow {type(model).__name__}: its forward is not the sequence of its "
            "layers (residual or custom modules are not supported)"
        )
