"""2:4 semi-structured vs dense matmul on CUDA (sparse tensor cores), over shapes from small to large.

    python benchmarks/bench_semi_structured.py [--dtype float16] [--repeats 50]

For each (batch, in, out): a random 2:4-sparse weight, y = x W^T dense (cuBLAS) and through
``to_sparse_semi_structured`` (CUTLASS / cuSPARSELt), median of ``--repeats`` timed runs after warm-up,
CUDA-synchronised; the ratio says where 2:4 pays (large shapes) and where it does not (small ones, where
launch overhead dominates). Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

SHAPES = [
    (1, 256, 256),
    (64, 256, 256),
    (64, 1024, 1024),
    (256, 1024, 1024),
    (1024, 4096, 4096),
    (4096, 4096, 4096),
    (8192, 8192, 8192),
]


def timed(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("bench_semi_structured: no CUDA device here; 2:4 sparse tensor cores need one (skipped)")
        return 0
    from torch.sparse import to_sparse_semi_structured

    from ticketlab.sparse import nm_prune

    dtype = getattr(torch, args.dtype)
    print(f"device: {torch.cuda.get_device_name()}, {args.dtype}, median of {args.repeats}")
    print("| batch | in | out | dense ms | 2:4 ms | dense / 2:4 |")
    print("| --- | --- | --- | --- | --- | --- |")
    g = torch.Generator().manual_seed(0)
    for b, n_in, n_out in SHAPES:
        w = torch.randn(n_out, n_in, generator=g)
        keep = nm_prune({"w": w.abs()}, {"w": torch.ones_like(w, dtype=torch.bool)}, 2, 4, g)["w"]
        w = (w * keep).to("cuda", dtype)
        x = torch.randn(b, n_in, generator=g).to("cuda", dtype)
        try:
            ws = to_sparse_semi_structured(w)
        except (RuntimeError, ValueError) as e:
            print(f"| {b} | {n_in} | {n_out} | - | not supported ({str(e).splitlines()[0][:60]}) | - |")
            continue
        dense = timed(lambda: torch.nn.functional.linear(x, w), args.repeats)
        sparse = timed(lambda: torch.nn.functional.linear(x, ws), args.repeats)
        print(f"| {b} | {n_in} | {n_out} | {1e3 * dense:.4f} | {1e3 * sparse:.4f} | {dense / sparse:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
