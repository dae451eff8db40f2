"""Candidates for the deployed sparse form that ticketlab does not use, measured against the ones it does.

For lenet300 and the 784-4096-4096-10 MLP with uniformly random 2% masks, at batch 1 and 256 and the given
thread count (median of interleaved repeats, per call):

- ``sparse``: the deployed sparse layers (``sparsify``, tuned here), the reference;
- ``int8-sparse``: the same CSR layers with int8 values and one scale per output row (symmetric, max-abs),
  the values dequantised in each call before the same kernel (torch has no CPU kernel that multiplies int8
  CSR values with activations directly);
- ``jit``: ``torch.jit.trace`` + ``freeze`` of the sparse model, traced per batch size;
- ``compile``: ``torch.compile`` (inductor's CPU code generation) of the sparse model, compiled per batch
  size (compile time not counted);
- ``ort-int8``: ONNX Runtime's int8 (QDQ, static) of the compact model, the int8 baseline of ``bench``;
- ``transpose``: the first layer's input transpose alone (``x.t().contiguous()``), the one copy of the
  activations the transposed layout does not cancel.

    .venv/bin/python benchmarks/bench_sparse_candidates.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from bench_sparse import wide_mlp  # noqa: E402
from common import calls as repeat  # noqa: E402
from common import interleaved, median, parser, ratio_median  # noqa: E402

from ticketlab.deploy import onnx, sparse_layers, sparsify  # noqa: E402
from ticketlab.deploy.sparse import SparseLinear  # noqa: E402
from ticketlab.models import build_model  # noqa: E402
from ticketlab.sparse import apply_mask_, ones_mask  # noqa: E402


class Int8SparseLinear(nn.Module):
    """A SparseLinear whose values are int8 with a per-row scale, dequantised per call (benchmark only)."""

    def __init__(self, layer: SparseLinear):
        super().__init__()
        self.layer = layer
        rows = torch.repeat_interleave(torch.arange(layer.out_features), layer.crow_indices.diff())
        amax = torch.zeros(layer.out_features).index_reduce_(0, rows, layer.values.abs(), "amax")
        self.scale = (amax / 127).clamp_min(1e-12)
        self.q = torch.round(layer.values / self.scale[rows]).clamp(-127, 127).to(torch.int8)
        self.rows = rows

    def forward(self, x):
        self.layer.values = self.q.float() * self.scale[self.rows]  # dequantise: nnz multiplies per call
        self.layer._csr = None  # rebuild the CSR view on the new values
        return self.layer(x)


def int8_sparse(model: nn.Module, tuned: nn.Module) -> nn.Module:
    """``model`` sparsified with ``tuned``'s kernel choices, its values int8."""
    m = sparsify(model, tune=False)
    chosen = sparse_layers(tuned)
    for name, layer in sparse_layers(m).items():
        layer.kernels = dict(chosen[name].kernels)
        parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
        setattr(parent, name.rpartition(".")[2], Int8SparseLinear(layer))
    return m


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch._logging.set_logs(dynamo=logging.ERROR)  # its recompile notices (one graph per layer's kernel choice)
    print(
        f"deployed-form candidates, 2% random masks, torch threads = {args.threads}, median of {args.repeats} "
        "interleaved repeats; ms per call, and the reference sparse layers' time over each candidate's"
    )
    for name, model in (("lenet300", build_model("lenet300", (1, 28, 28), 10, seed=0)), ("mlp-4096", wide_mlp())):
        model.eval()
        g = torch.Generator().manual_seed(0)
        apply_mask_(model, {n: torch.rand(m.shape, generator=g) < 0.02 for n, m in ones_mask(model).items()})
        sp = sparsify(model, tune=True, input_shape=(1, 28, 28), batch_sizes=(1, 256))
        q8 = int8_sparse(model, sp)
        ort8 = None
        if onnx.available():
            from ticketlab.deploy.compact import compact
            from ticketlab.deploy.onnx import OrtModel, quantize_int8, to_onnx

            tmp = tempfile.mkdtemp()
            fp = to_onnx(compact(model, (1, 28, 28)), (1, 28, 28), f"{tmp}/compact.onnx")
            ort8 = OrtModel(quantize_int8(fp, f"{tmp}/int8.onnx", torch.randn(256, 1, 28, 28)), args.threads)
        for batch in (1, 256):
            x = torch.randn(batch, 1, 28, 28)
            calls = max(1, 2000 // batch) if name == "lenet300" else max(1, 200 // batch)
            forms, err, failed = {"sparse": sp, "int8-sparse": q8}, {}, {}
            builders = {
                "jit": lambda: torch.jit.freeze(torch.jit.trace(sp, x, check_trace=False).eval()),
                "compile": lambda: torch.compile(sp, dynamic=False),
            }
            with torch.no_grad():
                ref = sp(x)
                for k, build in builders.items():
                    try:
                        m = build()
                        for _ in range(3):
                            m(x)
                        forms[k] = m
                    except Exception as e:  # noqa: BLE001 - a candidate that does not run is reported as such
                        failed[k] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
                err = {k: float((m(x) - ref).abs().max()) for k, m in forms.items() if k != "sparse"}
            if ort8 is not None:
                forms["ort-int8"] = ort8
            flat = x.reshape(batch, -1)
            forms["transpose"] = lambda _x, f=flat: f.t().contiguous()
            t = interleaved({k: repeat(m, x, calls) for k, m in forms.items()}, args.repeats)
            cells = [
                f"{k} {1e3 * median(v) / calls:.4f} ms ({ratio_median(t['sparse'], v):.2f}x)" for k, v in t.items()
            ]
            print(f"{name:<9} batch {batch:>3}: " + ", ".join(cells))
            print(
                f"{'':<9}           max |diff| vs sparse: "
                + ", ".join(f"{k} {v:.2e}" for k, v in err.items())
                + "".join(f"; {k} does not run: {why}" for k, why in failed.items())
            )

    first_layer_without_transpose(args.repeats)


def first_layer_without_transpose(repeats: int) -> None:
    """Ways around lenet300's first-layer transpose at batch 256 (784 -> 300, 2%): ms per call."""
    import numpy as np
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    w = torch.randn(300, 784, generator=g) * (torch.rand(300, 784, generator=g) < 0.02)
    csr, csr_t = w.to_sparse_csr(), w.t().contiguous().to_sparse_csr()
    x, bias = torch.randn(256, 784, generator=g), torch.randn(300, 1, generator=g)
    cols, offsets, values = csr.col_indices(), csr.crow_indices()[:-1], csr.values()
    fns = {
        "gather (transpose + embedding_bag, deployed)": lambda: F.embedding_bag(
            cols, x.t().contiguous(), offsets, mode="sum", per_sample_weights=values
        ),
        "csr (transpose + addmm)": lambda: torch.addmm(bias, csr, x.t().contiguous()),
        "csr on the untransposed view": lambda: torch.addmm(bias, csr, x.t()),
        "dense x CSR (no transpose)": lambda: torch.mm(x, csr_t),
        "transpose alone (torch)": lambda: x.t().contiguous(),
        "transpose alone (numpy)": lambda: np.ascontiguousarray(x.numpy().T),
    }

    def block(f):
        def run():
            for _ in range(20):
                f()

        return run

    t = interleaved({k: block(f) for k, f in fns.items()}, max(repeats, 7))
    print(
        "lenet300's first layer at batch 256, ms per call: "
        + ", ".join(f"{k} {1e3 * median(v) / 20:.3f}" for k, v in t.items())
    )


if __name__ == "__main__":
    main()
