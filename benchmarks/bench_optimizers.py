"""Why ticketlab uses fused optimizers: Adam step time on a lenet300-sized layer, foreach vs fused, with
dense gradients and with 80% of the gradients exactly zero (a masked layer), and sqrt of exact zeros.

    .venv/bin/python benchmarks/bench_optimizers.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, median, parser  # noqa: E402

SHAPE = (300, 784)


def adam_step(impl: str, zero_frac: float, steps: int = 200):
    g = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(SHAPE, generator=g))
    opt = torch.optim.Adam([p], lr=1e-3, **{impl: True})
    p.grad = torch.randn(SHAPE, generator=g) * (torch.rand(SHAPE, generator=g) >= zero_frac)
    for _ in range(10):
        opt.step()

    def block():
        for _ in range(steps):
            opt.step()

    return block


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    steps = 200
    fns = {
        f"{impl}, {int(100 * z)}% zero grads": adam_step(impl, z, steps)
        for impl in ("foreach", "fused")
        for z in (0.0, 0.8)
    }
    rnd, zer, out = torch.rand(SHAPE), torch.zeros(SHAPE), torch.empty(SHAPE)
    fns["sqrt of random values"] = lambda: [torch.sqrt(rnd, out=out) for _ in range(steps)]
    fns["sqrt of exact zeros"] = lambda: [torch.sqrt(zer, out=out) for _ in range(steps)]
    t = interleaved(fns, args.repeats)
    print(
        f"Adam step on a {SHAPE[0]}x{SHAPE[1]} weight, torch threads = {args.threads}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, median of {args.repeats} interleaved repeats"
    )
    base = median(t["fused, 0% zero grads"])
    for k, v in t.items():
        print(f"{k:<28} {1e6 * median(v) / steps:>8.1f} us   ({median(v) / base:.2f}x fused dense)")


if __name__ == "__main__":
    main()
