"""Unstructured sparsity that runs faster on CPU: Linear layers stored as CSR, kernel chosen by measurement.

``sparsify(model)`` replaces every ``nn.Linear`` by a ``SparseLinear`` holding only the kept weights
(CSR: row offsets, column indices, values). Its forward computes ``y^T = W x^T + b`` in the transposed
layout, so the transposes cancel between consecutive sparse layers and an MLP never copies activations.
Three kernels: ``csr`` (torch's CSR matrix product), ``gather`` (``embedding_bag`` over the rows of
``x^T``: each output row is a weighted sum of the input rows its kept weights point at; well
parallelised, ~15-20x a dense product at 2% density and batch 256 here) and ``dense`` (the masked dense
product, for tiny layers and some batch sizes). Which is fastest depends on the layer's size and density
and on the batch. ``tune_`` times both on this machine for a few batch sizes and records
the winner per batch size; at run time the nearest measured batch size (in log scale) decides. A layer
that ever takes the dense path keeps a dense copy of its weight in memory (never in the file).

Sparse convolutions are ``sparse_conv.SparseConv`` (a SparseLinear over im2col patches); ``sparsify.py``
turns a whole model's layers into both.
"""

from __future__ import annotations

import math
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

KERNELS = ("csr", "gather", "dense")


def nearest_batch(measured, batch: int) -> int:
    """The measured batch size nearest ``batch`` in log scale (the smaller on ties): what decides a layer's
    kernel, or a deployed model's path, at a batch size that was not measured."""
    return min(measured, key=lambda b: (abs(math.log(max(b, 1)) - math.log(max(batch, 1))), b))


def split_choice(choice: str) -> tuple[str, int | None]:
    """ "gather@1" -> ("gather", 1): a kernel, and the thread count it runs with (None: the caller's)."""
    kernel, _, threads = choice.partition("@")
    return kernel, (int(threads) if threads else None)


class KernelTable:
    """A per-batch-size kernel choice (measured by ``tune_``) shared by the sparse layers: a kernel name, or
    ``kernel@T`` when it measured fastest with T torch threads (one thread where threading overhead dominates a
    small product), which the layer then sets around its call."""

    @property
    def kernels(self) -> dict[int, str]:
        return self._kernels

    @kernels.setter
    def kernels(self, table: dict[int, str]) -> None:
        def ok(v: str) -> bool:
            k, _, t = v.partition("@")
            return k in KERNELS and (not t or (t.isdigit() and int(t) >= 1))

        if not table or not all(ok(v) for v in table.values()):
            raise ValueError(f"kernels must map batch sizes to one of {KERNELS} (optionally @THREADS), got {table}")
        self._kernels = dict(table)
        self._choice: dict[int, tuple[str, int | None]] = {}

    def choice_for(self, batch: int) -> tuple[str, int | None]:
        """(kernel, threads) measured fastest at the batch size nearest ``batch`` (log scale); memoised, since
        it runs on every call."""
        choice = self._choice.get(batch)
        if choice is None:
            choice = self._choice[batch] = split_choice(self.kernels[nearest_batch(self.kernels, batch)])
        return choice

    def kernel_for(self, batch: int) -> str:
        return self.choice_for(batch)[0]

    def with_threads(self, batch: int, kernel: str | None):
        """(kernel, previous thread count or None): sets the chosen thread count for this call."""
        if kernel is not None:
            return kernel, None
        kernel, threads = self.choice_for(batch)
        now = torch.get_num_threads()
        if threads is None or threads == now:
            return kernel, None
        torch.set_num_threads(threads)
        return kernel, now

    def forward(self, x: torch.Tensor, kernel: str | None = None) -> torch.Tensor:
        """The layer's product with the kernel and thread count chosen for this batch size (or ``kernel``, at
        the caller's thread count); the layer's ``_forward(x, kernel)`` computes it, ``_batch(x)`` sizes it."""
        kernel, restore = self.with_threads(self._batch(x), kernel)
        try:
            return self._forward(x, kernel)
        finally:
            if restore is not None:
                torch.set_num_threads(restore)


class SparseLinear(KernelTable, nn.Module):
    """``nn.Linear`` with a CSR weight; ``kernels`` maps measured batch sizes to "csr", "gather" or "dense"."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, kernels: dict[int, str] | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():  # torch calls its CSR support "beta" on every conversion
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            csr = weight.detach().to_sparse_csr()
        self.register_buffer("crow_indices", csr.crow_indices().clone())
        self.register_buffer("col_indices", csr.col_indices().clone())
        self.register_buffer("values", csr.values().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.kernels = dict(kernels or {1: "csr"})
        self._csr = self._dense = None

    @classmethod
    def from_csr(
        cls,
        crow: torch.Tensor,
        col: torch.Tensor,
        values: torch.Tensor,
        shape: tuple[int, int],
        bias: torch.Tensor | None,
        kernels: dict[int, str] | None = None,
    ) -> SparseLinear:
        """Rebuild from stored CSR components (no dense weight is ever formed)."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.out_features, layer.in_features = shape
        layer.register_buffer("crow_indices", crow.long())  # int64 in memory: torch's int32 CSR path is slower
        layer.register_buffer("col_indices", col.long())
        layer.register_buffer("values", values)
        layer.register_buffer("bias", bias)
        layer.kernels = dict(kernels or {1: "csr"})
        layer._csr = layer._dense = None
        return layer

    @property
    def nnz(self) -> int:
        return self.values.numel()

    def csr(self) -> torch.Tensor:
        if self._csr is None:
            # Invariants are checked once, here: indices from a file must never reach the kernel unchecked.
            with warnings.catch_warnings():  # torch calls its CSR support "beta" on every construction
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
                self._csr = torch.sparse_csr_tensor(
                    self.crow_indices,
                    self.col_indices,
                    self.values,
                    (self.out_features, self.in_features),
                    check_invariants=True,
                )
            self._bcol = None if self.bias is None else self.bias[:, None]
            self._offsets = self.crow_indices[:-1]
        return self._csr

    def dense_weight(self) -> torch.Tensor:
        if self._dense is None:
            self._dense = self.csr().to_dense()
        return self._dense

    def _apply(self, fn, *args, **kwargs):  # .to(device) etc.: rebuild the cached views
        out = super()._apply(fn, *args, **kwargs)
        self._csr = self._dense = None
        return out

    def _batch(self, x: torch.Tensor) -> int:
        return x.shape[0] if x.dim() == 2 else x.numel() // self.in_features  # rows of x as (-1, in_features)

    def _forward(self, x: torch.Tensor, kernel: str) -> torch.Tensor:
        x2 = x if x.dim() == 2 else x.reshape(-1, self.in_features)
        if kernel == "dense":
            y = F.linear(x2, self.dense_weight(), self.bias)
        else:
            csr = self.csr()
            xt = x2.t()  # (in, batch): contiguous when the previous layer was sparse too
            if not xt.is_contiguous():
                xt = xt.contiguous()
            if kernel == "gather":  # output row j = sum_k value_jk * input row col_jk
                yt = F.embedding_bag(self.col_indices, xt, self._offsets, mode="sum", per_sample_weights=self.values)
                if self._bcol is not None:
                    yt += self._bcol
            else:
                yt = csr @ xt if self._bcol is None else torch.addmm(self._bcol, csr, xt)
            y = yt.t()
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        density = self.nnz / (self.out_features * self.in_features)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, density={density:.4f}, "
            f"kernels={self.kernels}"
        )


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def tune_(
    layer: nn.Module,
    batch_sizes=(1, 256),
    repeats: int = 15,
    seed: int = 0,
    inputs: dict[int, torch.Tensor] | None = None,
) -> dict[int, dict]:
    """Time every kernel of a sparse layer at each batch size on this machine, with the caller's thread count
    and with one thread; keep the fastest (kernel, threads) per size.

    ``inputs`` (batch size -> the input this layer really sees in its model, with its memory layout) is
    used where given, else (SparseLinear only) a random contiguous input. Returns {batch: {kernel: s}}."""
    g = torch.Generator().manual_seed(seed)
    timings = {}
    now = torch.get_num_threads()
    thread_options = sorted({now, 1}, reverse=True)  # the caller's threads, and one thread
    for b in batch_sizes:
        if inputs and b in inputs:
            x = inputs[b]
        elif isinstance(layer, SparseLinear):
            x = torch.randn(b, layer.in_features, generator=g).to(layer.values.device)
        else:
            raise ValueError("a sparse convolution is tuned on its real inputs: use tune_model_")
        timings[b] = {}
        for threads in thread_options:
            for k in KERNELS:
                name = k if threads == now else f"{k}@{threads}"
                torch.set_num_threads(threads)
                try:
                    timings[b][name] = _median_time(lambda k=k: layer(x, kernel=k), repeats)
                finally:
                    torch.set_num_threads(now)
    layer.kernels = layer.kernels | {b: min(t, key=t.get) for b, t in timings.items()}
    if isinstance(layer, SparseLinear) and all(split_choice(v)[0] == "csr" for v in layer.kernels.values()):
        layer._dense = None  # never used: do not hold a dense copy
    return timings
