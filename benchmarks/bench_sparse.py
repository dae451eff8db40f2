"""Sparse inference on CPU: a 2%-density model's ``sparsify``d form vs its dense form, batch 1 and 256.

Models: lenet300 (784-300-100-10) and a 4096-wide MLP (784-4096-4096-10), each with a uniformly random
mask keeping 2% of every layer's weights. The sparse form is tuned on this machine first (each layer
picks CSR or dense per batch size by timing both). Prints latency (median of interleaved repeats) and
dense / sparse speedups, at the given thread count. With onnxruntime installed, also the dense model in
ONNX Runtime (as many intra-op threads) and the deployed form (``deploy.paths``: per batch size the
faster of the sparse layers and ONNX Runtime on the compact model), with speedups against dense
ONNX Runtime.

    .venv/bin/python benchmarks/bench_sparse.py [--threads N] [--repeats R] [--density D]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import calls as repeat  # noqa: E402
from common import interleaved, median, parser, ratio_median  # noqa: E402

from ticketlab.deploy import onnx, sparse_layers, sparsify  # noqa: E402
from ticketlab.models import build_model  # noqa: E402
from ticketlab.sparse import apply_mask_, ones_mask  # noqa: E402


def wide_mlp(width: int = 4096) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--density", type=float, default=0.02)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"sparse vs dense inference, density {100 * args.density:g}% per layer, torch threads = {args.threads}, "
        f"median of {args.repeats} interleaved repeats"
    )
    print(f"{'model':<12} {'batch':>5} {'dense ms':>9} {'sparse ms':>10} {'speedup':>8}  kernels")
    for name, model in (("lenet300", build_model("lenet300", (1, 28, 28), 10, seed=0)), ("mlp-4096", wide_mlp())):
        model.eval()
        g = torch.Generator().manual_seed(0)
        apply_mask_(model, {n: torch.rand(m.shape, generator=g) < args.density for n, m in ones_mask(model).items()})
        sp = sparsify(model, tune=True, input_shape=(1, 28, 28), batch_sizes=(1, 256))
        kernels = ",".join(f"{m.kernels[1]}/{m.kernels[256]}" for m in sparse_layers(sp).values())
        forms = {"dense": model, "sparse": sp}
        if onnx.available():
            import tempfile

            from ticketlab.deploy.compact import compact
            from ticketlab.deploy.onnx import OrtModel, to_onnx
            from ticketlab.deploy.paths import FastestPath, choose_paths_

            tmp = tempfile.mkdtemp()
            forms["dense-ort"] = OrtModel(to_onnx(model, (1, 28, 28), f"{tmp}/dense.onnx"), args.threads)
            small = compact(model, (1, 28, 28))
            deployed = FastestPath(sp, to_onnx(small, (1, 28, 28), f"{tmp}/compact.onnx").read_bytes(), {1: "eager"})
            choose_paths_(deployed, (1, 28, 28), (1, 256), repeats=5)
            forms["deployed"] = deployed
        for batch in (1, 256):
            x = torch.randn(batch, 1, 28, 28)
            calls = max(1, 2000 // batch) if name == "lenet300" else max(1, 200 // batch)
            t = interleaved({k: repeat(m, x, calls) for k, m in forms.items()}, args.repeats)
            line = (
                f"{name:<12} {batch:>5} {1e3 * median(t['dense']) / calls:>9.3f} "
                f"{1e3 * median(t['sparse']) / calls:>10.3f} {ratio_median(t['dense'], t['sparse']):>8.2f}"
            )
            if "dense-ort" in t:
                line += (
                    f" | ort dense {1e3 * median(t['dense-ort']) / calls:.3f} ms, sparse x ort "
                    f"{ratio_median(t['dense-ort'], t['sparse']):.2f}, deployed "
                    f"{1e3 * median(t['deployed']) / calls:.3f} ms ({forms['deployed'].paths[batch]}) x ort "
                    f"{ratio_median(t['dense-ort'], t['deployed']):.2f}"
                )
            print(f"{line}  {kernels} (batch 1 / 256 per layer)")


if __name__ == "__main__":
    main()
