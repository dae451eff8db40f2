"""Sparse convolutions: a Conv1d/Conv2d whose kept weights are a CSR matrix over (in x kernel) positions.

The sparse kernels unfold the input (im2col: every output position's receptive field as a column) and
multiply the CSR weight by it with ``SparseLinear``'s ``csr`` or ``gather`` product; ``dense`` is the
ordinary (MKL-DNN) convolution with the masked dense weight. As for Linear layers, ``tune_`` times them
on this machine per batch size and the layer keeps the fastest: unfolding copies the input k*k times, so
convolutions gain only at high sparsity and usually stay dense at batch 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sparse import KernelTable, SparseLinear


class SparseConv(KernelTable, nn.Module):
    """A sparse ``nn.Conv1d`` / ``nn.Conv2d`` (groups 1, zero padding)."""

    def __init__(
        self,
        conv: nn.Conv1d | nn.Conv2d,
        weight: torch.Tensor | None = None,
        kernels: dict[int, str] | None = None,
        core: SparseLinear | None = None,
    ):
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("sparse convolutions support groups=1, numeric zero padding")
        self.dims = 1 if isinstance(conv, nn.Conv1d) else 2
        pair = (lambda v: (1, v[0])) if self.dims == 1 else tuple
        self.kernel_size, self.stride = pair(conv.kernel_size), pair(conv.stride)
        self.padding, self.dilation = (
            (0, conv.padding[0]) if self.dims == 1 else tuple(conv.padding),
            pair(conv.dilation),
        )
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        w = (conv.weight if weight is None else weight).detach()
        self.core = core if core is not None else SparseLinear(w.reshape(w.shape[0], -1), None)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.kernels = dict(kernels or {1: "dense"})
        self._dense = None

    @property
    def nnz(self) -> int:
        return self.core.nnz

    def dense_weight(self) -> torch.Tensor:
        if self._dense is None:
            w = self.core.dense_weight()
            shape = (self.out_channels, self.in_channels, *self.kernel_size[2 - self.dims :])
            self._dense = w.reshape(shape)
        return self._dense

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._dense = None
        return out

    def _batch(self, x: torch.Tensor) -> int:
        return x.shape[0] if x.dim() > 1 else 1

    def _forward(self, x: torch.Tensor, kernel: str) -> torch.Tensor:
        if kernel == "dense":
            w = self.dense_weight()
            conv = F.conv1d if self.dims == 1 else F.conv2d
            s, p, d = (
                (self.stride[1], self.padding[1], self.dilation[1])
                if self.dims == 1
                else (self.stride, self.padding, self.dilation)
            )
            return conv(x, w, self.bias, s, p, d)
        x4 = x.unsqueeze(2) if self.dims == 1 else x
        b, _, h, w_ = x4.shape
        cols = F.unfold(x4, self.kernel_size, self.dilation, self.padding, self.stride)  # (B, C*k, L)
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w_ + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        xt = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (C*k, B*L): the core's transposed layout
        y = self.core(xt.t(), kernel=kernel)  # (B*L, out), a transposed view of (out, B*L)
        y = y.t().reshape(self.out_channels, b, oh * ow).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias[None, :, None]
        return y.reshape(b, self.out_channels, ow) if self.dims == 1 else y.reshape(b, self.out_channels, oh, ow)

    def extra_repr(self) -> str:
        total = self.core.out_features * self.core.in_features
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size[2 - self.dims :]}, "
            f"density={self.nnz / total:.4f}, kernels={self.kernels}"
        )
