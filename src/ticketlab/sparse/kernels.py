"""Sparse training kernels: masked layers trained at the cost of their kept weights, not their dense size.

A masked Linear or Conv2d layer's forward, input gradient and weight gradient run over the mask's kept
positions only (C kernels in ``kernels.c``, compiled for this CPU on first use and loaded with ctypes; a
stride-1 convolution on its planes directly, a strided one as a sparse product with its input's patches), and
the optimizer's update of such a weight touches only those positions. Results equal the masked dense layer's to float
rounding (tests pin outputs, gradients and whole training steps against it); pruned weights stay exactly
zero, because nothing ever writes them.

Weights keep their dense storage (``fc.weight`` stays the (out, in) parameter every other part of ticketlab
reads; optimizer state stays torch's): on a sparse step the weight gets no ``.grad``, so torch's optimizer
skips it, and a post-step hook applies the same update (SGD with momentum, Nesterov and weight decay; Adam;
AdamW) at the kept positions from the gradient there. A step that needs dense gradients (RigL's and SNFS's
updates) runs the dense path; so does any layer that is not float32 on the CPU.

    kernels = SparseKernels(model, lambda: mask, optimizer)   # mask: {"fc.weight": bool tensor}
    with kernels:                                              # forward/backward/step are sparse inside
        for x, y in batches:
            opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

TILE = 64  # batch columns per tile; must match T in kernels.c
_SOURCE = Path(__file__).with_name("kernels.c")
_LIB = None
_ERROR: str | None = None


class KernelsUnavailable(RuntimeError):
    """The sparse kernels could not be built here (no C compiler, or it failed)."""


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def load():
    """The compiled kernels (a ctypes library), building them on first use: the C source compiled with -O3
    -march=native (and OpenMP where the compiler has it) into a temporary file that is loaded and deleted, so
    nothing is left on disk. Raises KernelsUnavailable with the reason."""
    global _LIB, _ERROR
    if _LIB is not None:
        return _LIB
    if _ERROR is not None:
        raise KernelsUnavailable(_ERROR)
    cc = _compiler()
    if cc is None:
        _ERROR = "sparse kernels need a C compiler (cc, gcc or clang on PATH, or $CC); none found"
        raise KernelsUnavailable(_ERROR)
    with tempfile.TemporaryDirectory(prefix="ticketlab-kernels-") as tmp:
        out = os.path.join(tmp, "kernels.so")
        base = [cc, "-O3", "-march=native", "-std=c11", "-shared", "-fPIC", str(_SOURCE), "-o", out, "-lm"]
        err = ""
        for flags in (["-fopenmp"], []):
            r = subprocess.run(base[:1] + flags + base[1:], capture_output=True, text=True)
            if r.returncode == 0:
                break
            err = r.stderr.strip().splitlines()[-1:] or [""]
        else:
            _ERROR = f"building the sparse kernels with {cc} failed: {err[0]}"
            raise KernelsUnavailable(_ERROR)
        lib = ctypes.CDLL(out)
    i64, f32, i32, vp = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.tl_spmm.argtypes = [i64, i64, i64, vp, vp, vp, vp, vp, vp, i32]
    lib.tl_sddmm.argtypes = [i64, i64, i64, vp, vp, vp, vp, vp, i32]
    lib.tl_sgd.argtypes = [i64, vp, vp, vp, vp, f32, f32, f32, i32, i32, vp, vp, vp, i32]
    lib.tl_adam.argtypes = [i64, vp, vp, vp, vp, vp, f32, f32, f32, f32, f32, i32, f32, f32, vp, vp, vp, i32]
    lib.tl_gather.argtypes = [i64, vp, vp, vp, vp, vp, i32]
    conv = [i64] * 9
    lib.tl_conv_fwd.argtypes = conv + [vp, vp, vp, vp, vp, vp, i32]
    lib.tl_conv_bwd_input.argtypes = conv + [vp, vp, vp, vp, vp, vp, i32]
    lib.tl_conv_bwd_weight.argtypes = conv + [vp, vp, vp, vp, vp, i32]
    for f in (lib.tl_spmm, lib.tl_sddmm, lib.tl_sgd, lib.tl_adam, lib.tl_gather, lib.tl_conv_fwd,
              lib.tl_conv_bwd_input, lib.tl_conv_bwd_weight):  # fmt: skip
        f.restype = None
    _LIB = lib
    return lib


def available() -> bool:
    """Whether the kernels build and load here."""
    try:
        load()
    except KernelsUnavailable:
        return False
    return True


def _p(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def tile(x: torch.Tensor) -> torch.Tensor:
    """(B, m) -> (ceil(B / 64), m, 64): batch columns innermost, zero-padded to whole tiles."""
    b, m = x.shape
    nt = -(-b // TILE)
    if nt * TILE != b:
        x = torch.cat([x, x.new_zeros(nt * TILE - b, m)])
    return x.view(nt, TILE, m).transpose(1, 2).contiguous()


def untile(y: torch.Tensor, b: int) -> torch.Tensor:
    """The inverse of ``tile``: (nt, n, 64) -> (b, n)."""
    return y.transpose(1, 2).reshape(-1, y.shape[1])[:b]


class Structure:
    """A mask's kept positions in the two orders the kernels walk: by output row (CSR: forward, weight
    gradient) and by input column (CSC: input gradient), each with the flat positions in the dense weight."""

    def __init__(self, mask: torch.Tensor):
        mask = mask.detach().to("cpu", torch.bool)
        mask = mask.reshape(mask.shape[0], -1)  # a conv's (out, in, kh, kw) as (out, in * kh * kw)
        n, m = mask.shape
        self.shape = (n, m)
        rows, cols = mask.nonzero(as_tuple=True)  # row-major order
        self.nnz = len(rows)
        self.ptr = torch.zeros(n + 1, dtype=torch.int64)
        self.ptr[1:] = torch.bincount(rows, minlength=n).cumsum(0)
        self.idx = cols.contiguous()
        self.pos = (rows * m + cols).contiguous()
        order = torch.argsort(cols * n + rows)  # column-major
        self.cptr = torch.zeros(m + 1, dtype=torch.int64)
        self.cptr[1:] = torch.bincount(cols, minlength=m).cumsum(0)
        self.cidx = rows[order].contiguous()
        self.cpos = self.pos[order].contiguous()
        self.ccol = cols[order].contiguous()  # the column of each entry in column order
        self.cslot = torch.empty_like(order)  # row-order index -> its slot in column order
        self.cslot[order] = torch.arange(self.nnz)
        self._key = None  # (data_ptr, version) of the weight the compact copies were read from

    def forget(self) -> None:
        """Read the kept weights again at the next use."""
        self._key = None

    def values(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept weights in row and in column order: copies kept in step with the weight (the sparse update
        writes both) and read again when the weight changed otherwise: its version moved (any in-place torch op),
        or torch's optimizer stepped it (``forget``: fused optimizers do not move the version). A change made
        through ``.data`` moves neither: make it with the weight itself, under ``torch.no_grad()``."""
        key = (weight.data_ptr(), weight._version)
        if key != self._key:
            w = weight.detach().contiguous()
            self.vals, self.cvals = torch.empty(self.nnz), torch.empty(self.nnz)
            load().tl_gather(
                self.nnz, _p(self.pos), _p(w), _p(self.cslot), _p(self.vals), _p(self.cvals), torch.get_num_threads()
            )
            self._key = key
        return self.vals, self.cvals


def _rows_forward(st: Structure, weight: torch.Tensor, bias: torch.Tensor | None, xt: torch.Tensor) -> torch.Tensor:
    """(nt, n, 64): bias + W x over W's kept positions, for a tiled input ``xt`` (nt, m, 64)."""
    vals, _ = st.values(weight)
    yt = torch.empty(xt.shape[0], st.shape[0], TILE)
    bias_c = None if bias is None else bias.detach().contiguous()
    load().tl_spmm(xt.shape[0], st.shape[0], st.shape[1], _p(st.ptr), _p(st.idx), _p(vals), _p(bias_c), _p(xt),
                   _p(yt), torch.get_num_threads())  # fmt: skip
    return yt


def _rows_backward(st: Structure, weight: torch.Tensor, gyt: torch.Tensor, xt: torch.Tensor, needs: tuple):
    """(W^T gy tiled (nt, m, 64) or None, the weight gradient at the kept positions (nnz,) or None) for the
    tiled output gradient ``gyt`` of ``_rows_forward`` on ``xt``; ``needs`` says which of the two to compute."""
    lib, nth = load(), torch.get_num_threads()
    n, m = st.shape
    gxt = ghandle = None
    if needs[0]:
        _, cvals = st.values(weight)
        gxt = torch.empty(gyt.shape[0], m, TILE)
        lib.tl_spmm(gyt.shape[0], m, n, _p(st.cptr), _p(st.cidx), _p(cvals), None, _p(gyt), _p(gxt), nth)
    if needs[1]:
        ghandle = torch.empty(st.nnz)
        lib.tl_sddmm(gyt.shape[0], n, m, _p(st.ptr), _p(st.idx), _p(gyt), _p(xt), _p(ghandle), nth)
    return gxt, ghandle


class _SparseLinear(torch.autograd.Function):
    """y = x W^T + b over W's kept positions. ``handle`` is a leaf of one value per kept weight: its
    gradient is the weight's gradient at those positions (the weight itself gets none)."""

    @staticmethod
    def forward(ctx, x, handle, weight, bias, st: Structure):
        lead, b = x.shape[:-1], x[..., 0].numel()
        xt = tile(x.reshape(b, -1))
        yt = _rows_forward(st, weight, bias, xt)
        ctx.st, ctx.b, ctx.lead, ctx.has_bias = st, b, lead, bias is not None
        ctx.save_for_backward(xt, weight)
        return untile(yt, b).reshape(*lead, st.shape[0])

    @staticmethod
    def backward(ctx, gy):
        st, b = ctx.st, ctx.b
        xt, weight = ctx.saved_tensors
        gy2 = gy.reshape(b, st.shape[0]).contiguous()
        gxt, ghandle = _rows_backward(st, weight, tile(gy2), xt, ctx.needs_input_grad[:2])
        gx = None if gxt is None else untile(gxt, b).reshape(*ctx.lead, st.shape[1])
        gb = gy2.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return gx, ghandle, None, gb, None


class _SparseConv2d(torch.autograd.Function):
    """A 2-d convolution over W's kept positions, as a sparse product with the input's patches (im2col): the
    columns are (example, output position) pairs, tiled as the linear layer's batch is. ``handle`` as there."""

    @staticmethod
    def forward(ctx, x, handle, weight, bias, st: Structure, geom: tuple):
        kernel, dilation, padding, stride = geom
        b, _, h, w = x.shape
        cols = nn.functional.unfold(x, kernel, dilation, padding, stride)  # (B, m, L)
        m, L = cols.shape[1], cols.shape[2]
        ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        ct = tile(cols.transpose(1, 2).reshape(b * L, m))
        yt = _rows_forward(st, weight, bias, ct)
        n = st.shape[0]
        ctx.st, ctx.geom, ctx.shape, ctx.L, ctx.has_bias = st, geom, (b, h, w), L, bias is not None
        ctx.save_for_backward(ct, weight)
        return untile(yt, b * L).view(b, L, n).transpose(1, 2).reshape(b, n, ho, wo)

    @staticmethod
    def backward(ctx, gy):
        st, (kernel, dilation, padding, stride), (b, h, w), L = ctx.st, ctx.geom, ctx.shape, ctx.L
        ct, weight = ctx.saved_tensors
        n, m = st.shape
        g2 = gy.reshape(b, n, L).transpose(1, 2).reshape(b * L, n)
        gct, ghandle = _rows_backward(st, weight, tile(g2), ct, ctx.needs_input_grad[:2])
        gx = None
        if gct is not None:
            gcols = untile(gct, b * L).view(b, L, m).transpose(1, 2)
            gx = nn.functional.fold(gcols, (h, w), kernel, dilation, padding, stride)
        gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return gx, ghandle, None, gb, None, None


class _DirectConv2d(torch.autograd.Function):
    """A stride-1 2-d convolution over W's kept positions computed on the planes themselves (no patches): each
    kept weight adds one shifted copy of an input plane to an output plane (``tl_conv_fwd`` says how). Same
    ``handle`` as the linear layer's."""

    @staticmethod
    def forward(ctx, x, handle, weight, bias, st: Structure, geom: tuple):
        lib, nth = load(), torch.get_num_threads()
        (kh, kw), (dil, _), (ph, pw), _ = geom
        b, ci, h, w = x.shape
        hp, wp = h + 2 * ph, w + 2 * pw
        ho, wo = hp - dil * (kh - 1), wp - dil * (kw - 1)
        xp = nn.functional.pad(x.detach(), (pw, pw, ph, ph + 1)).contiguous()  # + a zero row of slack
        n, length, plane = st.shape[0], ho * wp, (hp + 1) * wp
        out = torch.empty(b, n, ho, wp)
        vals, _ = st.values(weight)
        bias_c = None if bias is None else bias.detach().contiguous()
        lib.tl_conv_fwd(b, ci, plane, n, length, kh, kw, dil, wp, _p(st.ptr), _p(st.idx), _p(vals), _p(bias_c),
                        _p(xp), _p(out), nth)  # fmt: skip
        ctx.st, ctx.dims, ctx.has_bias = st, (b, ci, h, w, hp, wp, ho, wo, kh, kw, dil, ph, pw), bias is not None
        ctx.save_for_backward(xp, weight)
        return out[..., :wo].contiguous()

    @staticmethod
    def backward(ctx, gy):
        lib, nth = load(), torch.get_num_threads()
        st = ctx.st
        b, ci, h, w, hp, wp, ho, wo, kh, kw, dil, ph, pw = ctx.dims
        xp, weight = ctx.saved_tensors
        n, length, plane = st.shape[0], ho * wp, (hp + 1) * wp
        gyp = nn.functional.pad(gy, (0, wp - wo)).contiguous()  # zeros in the junk columns
        gx = ghandle = None
        if ctx.needs_input_grad[0]:
            _, cvals = st.values(weight)
            cptr = st.cptr[:: kh * kw].contiguous()  # by input channel: its kh * kw columns are adjacent
            gxp = torch.empty(b, ci, hp + 1, wp)
            lib.tl_conv_bwd_input(b, ci, plane, n, length, kh, kw, dil, wp, _p(cptr), _p(st.cidx), _p(st.ccol),
                                  _p(cvals), _p(gyp), _p(gxp), nth)  # fmt: skip
            gx = gxp[:, :, ph : ph + h, pw : pw + w].contiguous()
        if ctx.needs_input_grad[1]:
            ghandle = torch.empty(st.nnz)
            lib.tl_conv_bwd_weight(b, ci, plane, n, length, kh, kw, dil, wp, _p(st.ptr), _p(st.idx), _p(gyp),
                                   _p(xp), _p(ghandle), nth)  # fmt: skip
        gb = gy.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return gx, ghandle, None, gb, None, None


def _geometry(m: nn.Conv2d) -> tuple:
    return (tuple(m.kernel_size), tuple(m.dilation), tuple(m.padding), tuple(m.stride))


class _Layer:
    """One masked Linear or Conv2d under sparse kernels: its structure (rebuilt when the mask changes) and the
    handle whose gradient is the weight's at the kept positions."""

    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        self.tuned = False
        self.key: tuple | None = None  # (the mask tensor itself, its version): held, so never a stale match
        self.st: Structure | None = None
        self.handle: torch.Tensor | None = None
        self.sparse = True  # auto's choice for this layer
        self.group: dict | None = None  # the optimizer's param group holding the weight

    def update(self, mask: torch.Tensor) -> None:
        if self.key is None or self.key[0] is not mask or self.key[1] != mask._version:
            self.key, self.st = (mask, mask._version), Structure(mask)
            self.handle = torch.zeros(self.st.nnz, requires_grad=True)

    def forward(self, x: torch.Tensor, handle: torch.Tensor | None = None, weight=None) -> torch.Tensor:
        m = self.module
        handle = self.handle if handle is None else handle
        weight = m.weight if weight is None else weight
        bias = m.bias if weight is m.weight or m.bias is None else m.bias.detach()
        if isinstance(m, nn.Conv2d):
            geom = _geometry(m)
            direct = geom[3] == (1, 1) and geom[1][0] == geom[1][1]
            return (_DirectConv2d if direct else _SparseConv2d).apply(x, handle, weight, bias, self.st, geom)
        return _SparseLinear.apply(x, handle, weight, bias, self.st)


def _eligible(module: nn.Module) -> bool:
    """A plain Linear, or a Conv2d without groups and with zero padding given as numbers, float32 on the CPU."""
    w = getattr(module, "weight", None)
    if w is None or w.dtype != torch.float32 or w.device.type != "cpu":
        return False
    if type(module) is nn.Linear:
        return True
    return (
        type(module) is nn.Conv2d
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


SUPPORTED_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
# auto: a layer goes sparse only at most this dense (no measured layer won above 0.2; timing noise on a shared
# machine must not send a dense layer to kernels 5-10x slower) and only when it measured this much faster.
AUTO_MAX_DENSITY = 0.3
AUTO_RATIO = 0.75


class SparseKernels:
    """Run ``model``'s masked Linear and Conv2d layers on sparse kernels while active (a context manager).

    ``masks()`` gives the masks now ({weight name: bool tensor}), or None when pruned weights are not held at
    zero (a dense phase): then every layer runs dense. ``dense_step()``, if given, is asked before each forward
    whether this step needs dense weight gradients (a sparse trainer's growth step). ``mode``: "sparse" (every
    eligible layer), or "auto": each layer's forward and backward timed both ways at ``batch`` once, on its
    first forward, and sparse kept only where the layer is at most 30% dense and measured under 0.75x (near
    ties stay dense).
    ``optimizer``: updated at the kept positions of the sparse layers after each of its steps (SGD, Adam or
    AdamW, amsgrad and maximize off); None for a loop that steps nothing (input gradients only)."""

    def __init__(
        self,
        model: nn.Module,
        masks: Callable[[], dict | None],
        optimizer: torch.optim.Optimizer | None = None,
        dense_step: Callable[[], bool] | None = None,
        mode: str = "sparse",
        batch: int | None = None,
        preset: dict[str, str] | None = None,
    ):
        if mode not in ("sparse", "auto"):
            raise ValueError(f"mode is 'sparse' or 'auto', got {mode!r}")
        load()
        self.model, self.masks, self.optimizer, self.dense_step = model, masks, optimizer, dense_step
        self.mode, self.batch = mode, batch
        if optimizer is not None and not _optimizer_supported(optimizer):
            raise KernelsUnavailable(
                f"sparse kernels update SGD, Adam and AdamW (amsgrad, maximize off); got {type(optimizer).__name__}"
            )
        names = set(masks() or {})
        self.layers = [
            _Layer(f"{mn}.weight" if mn else "weight", m)
            for mn, m in model.named_modules()
            if _eligible(m) and (f"{mn}.weight" if mn else "weight") in names
        ]
        for layer in self.layers:
            if optimizer is not None:  # the param group whose settings its sparse update uses
                p = layer.module.weight
                layer.group = next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))
            layer.tuned = mode != "auto"
            if mode == "auto" and preset is not None:  # auto's choices from the run's start (a resumed run keeps them)
                layer.sparse, layer.tuned = preset.get(layer.name) == "sparse", True
        self._hooks: list = []

    # -- the forward -------------------------------------------------------------------------------------------
    def __enter__(self) -> SparseKernels:
        for layer in self.layers:
            if not layer.sparse:
                continue
            layer.module.forward = types.MethodType(_forward_for(self, layer), layer.module)
        if self.optimizer is not None:
            self._hooks = [
                self.optimizer.register_step_pre_hook(lambda *_: self._merge()),
                self.optimizer.register_step_post_hook(lambda *_: self._step()),
            ]
        return self

    def __exit__(self, *exc) -> None:
        for layer in self.layers:
            layer.module.__dict__.pop("forward", None)
            if layer.handle is not None:
                layer.handle.grad = None
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def choices(self) -> dict[str, str] | None:
        """{weight name: "sparse" or "dense"}: what each masked layer runs on; None while auto has not measured
        them all yet (each on its first forward)."""
        if not all(layer.tuned for layer in self.layers):
            return None
        return {layer.name: "sparse" if layer.sparse else "dense" for layer in self.layers}

    def _use(self, layer: _Layer, x: torch.Tensor) -> bool:
        """Whether this forward of ``layer`` goes sparse (refreshing its structure from the mask)."""
        masks = self.masks()
        if masks is None or layer.name not in masks:
            return False
        if self.dense_step is not None and self.dense_step():
            return False
        if not layer.tuned:
            self._tune(layer, masks[layer.name], x)
        if not layer.sparse:
            return False
        layer.update(masks[layer.name])
        return True

    def _tune(self, layer: _Layer, mask: torch.Tensor, x: torch.Tensor) -> None:
        """auto: time ``layer`` both ways on an input shaped as this one, at the training batch size (a layer
        over 30% dense is not even timed, nor its structure built)."""
        layer.tuned = True
        layer.sparse = False
        if int(mask.count_nonzero()) <= AUTO_MAX_DENSITY * mask.numel():
            layer.update(mask)
            layer.sparse = _measure(layer, (self.batch or x.shape[0], *x.shape[1:])) < AUTO_RATIO
        if not layer.sparse:  # exactly the dense layer from now on, with no wrapper in its way
            layer.module.__dict__.pop("forward", None)
            layer.st = layer.handle = layer.key = None

    # -- the optimizer step ------------------------------------------------------------------------------------
    def _merge(self) -> None:
        """A weight that also got a dense gradient this step (a loss term that reads weights directly, as
        certified training's bounds do) takes its kept positions' gradient into that one: torch's optimizer
        then makes the step, once."""
        with torch.no_grad():
            for layer in self.layers:
                h, p = layer.handle, layer.module.weight
                if h is not None and h.grad is not None and p.grad is not None:
                    p.grad.view(-1).index_add_(0, layer.st.pos, h.grad.to(p.grad.dtype))
                    h.grad = None

    def _step(self) -> None:
        opt = self.optimizer
        with torch.no_grad():
            for layer in self.layers:
                h, p = layer.handle, layer.module.weight
                if p.grad is not None and layer.st is not None:
                    layer.st.forget()  # torch's step moved it, and fused steps leave its version as it was
                if h is None or h.grad is None:
                    continue
                _update(opt, layer.group, p, layer.st, h.grad.contiguous())
                h.grad = None


def _forward_for(kernels: SparseKernels, layer: _Layer):
    dense = type(layer.module).forward

    def forward(self, x):
        if kernels._use(layer, x):
            return layer.forward(x)
        return dense(self, x)

    return forward


def _optimizer_supported(opt: torch.optim.Optimizer) -> bool:
    if type(opt) not in SUPPORTED_OPTIMIZERS:
        return False
    for g in opt.param_groups:
        if g.get("maximize") or g.get("amsgrad") or g.get("dampening", 0) != 0:
            return False
        if g.get("differentiable") or g.get("capturable"):
            return False
    return True


def _update(opt: torch.optim.Optimizer, group: dict, p: torch.Tensor, st: Structure, g: torch.Tensor) -> None:
    """Apply ``opt``'s update to ``p`` at the kept positions, from the gradient there, in torch's state."""
    lib, nth = load(), torch.get_num_threads()
    state = opt.state[p]
    lr, wd = float(group["lr"]), float(group["weight_decay"])
    if isinstance(opt, torch.optim.SGD):
        mom = float(group["momentum"])
        buf, first = None, 0
        if mom != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = torch.zeros_like(p)
                first = 1
        vals, cvals = st.values(p)
        lib.tl_sgd(
            st.nnz, _p(st.pos), _p(g), _p(p), _p(buf), lr, wd, mom, int(group["nesterov"]), first, _p(vals), _p(cvals),
            _p(st.cslot), nth,
        )  # fmt: skip
        return
    if "step" not in state:
        state["step"] = torch.tensor(0.0, dtype=torch.float32)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["step"] += 1
    t = float(state["step"])
    beta1, beta2 = group["betas"]
    decoupled = isinstance(opt, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay", False))
    step_size = lr / (1 - beta1**t)
    bc2_sqrt = (1 - beta2**t) ** 0.5
    m, v = state["exp_avg"], state["exp_avg_sq"]
    vals, cvals = st.values(p)
    lib.tl_adam(
        st.nnz, _p(st.pos), _p(g), _p(p), _p(m), _p(v), lr, beta1, beta2, group["eps"], wd, int(decoupled),
        step_size, bc2_sqrt, _p(vals), _p(cvals), _p(st.cslot), nth,
    )  # fmt: skip


def _measure(layer: _Layer, shape: tuple, repeats: int = 5) -> float:
    """Sparse over dense time of one forward + backward of ``layer`` on an input of ``shape`` (median of
    ``repeats``, interleaved, after a warm-up)."""
    m = layer.module
    x = torch.randn(*shape, requires_grad=True)
    w = m.weight.detach()

    def dense():
        wd = w.detach().requires_grad_(True)
        bias = None if m.bias is None else m.bias.detach()
        y = nn.functional.linear(x, wd, bias) if isinstance(m, nn.Linear) else m._conv_forward(x, wd, bias)
        y.backward(torch.ones_like(y))

    def sparse():
        h = torch.zeros(layer.st.nnz, requires_grad=True)
        y = layer.forward(x, h, w)
        y.backward(torch.ones_like(y))

    times = {dense: [], sparse: []}
    with torch.enable_grad():
        for f in (dense, sparse):
            f()  # warm-up
        for _ in range(repeats):
            for f in (dense, sparse):
                t = time.perf_counter()
                f()
                times[f].append(time.perf_counter() - t)
    med = {f: sorted(v)[len(v) // 2] for f, v in times.items()}
    return med[sparse] / med[dense]
