"""Bound computation time per sample against weight density and width: IBP, CROWN and alpha-CROWN on
784-W-W-10 ReLU MLPs with random masks of each density (pruned weights exact zeros), at batch 25, eps 0.02
(pixel units), float64 as `ticketlab verify` runs them. Each density is timed with the sparse weights
`ticketlab verify` uses (CSR products below the density threshold) and with dense ones; interleaved
repetitions, median.

    .venv/bin/python benchmarks/bench_verify.py [--threads 1] [--widths 100,300,1000] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics
import time

import torch
from common import parser
from torch import nn

from ticketlab.verify.bounds import alpha_crown, crown, ibp, input_box, margin_spec, pre_bounds
from ticketlab.verify.graph import to_ops


def mlp(width: int, density: float, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    ).double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, (2 / (m.in_features * density)) ** 0.5, generator=g)
                m.weight.mul_((torch.rand(m.weight.shape, generator=g) < density).double())
    return net


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--widths", default="100,300,1000")
    p.add_argument("--densities", default="1,0.5,0.2,0.1,0.05,0.02")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--device", default="cpu")
    p.set_defaults(threads=1, repeats=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=g, dtype=torch.float64).to(dev)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(dev)
    lo, hi = input_box(x, 0.02, (0.0, 1.0))
    C = margin_spec(y, 10).double()
    print(
        f"threads {args.threads}, device {dev}, batch {args.batch}; ms per sample (median of {args.repeats}); "
        "sparse/dense = the sparse weights' time over the dense weights'"
    )
    print(f"{'width':>6} {'density':>8} {'ibp':>8} {'crown':>8} {'alpha':>8}   sparse/dense: ibp  crown  alpha")
    for w in [int(v) for v in args.widths.split(",")]:
        for d in [float(v) for v in args.densities.split(",")]:
            net = mlp(w, d, 1).to(dev)
            forms = {"sparse": to_ops(net, (1, 28, 28), sparse=True), "dense": to_ops(net, (1, 28, 28))}

            def timed(fn):
                sync()
                t = time.perf_counter()
                fn()
                sync()
                return time.perf_counter() - t

            times = {(f, m): [] for f in forms for m in ("ibp", "crown", "alpha")}
            for r in range(args.repeats):
                for f in forms if r % 2 == 0 else list(forms)[::-1]:
                    ops = forms[f]
                    with torch.no_grad():
                        times[f, "ibp"].append(timed(lambda: ibp(ops, lo, hi, C)))
                        pre = {}
                        times[f, "crown"].append(
                            timed(
                                lambda: (
                                    pre.update(pre_bounds(ops, lo, hi)[0]),
                                    crown(ops, lo, hi, C, upper=False, pre=pre),
                                )
                            )
                        )
                    times[f, "alpha"].append(
                        times[f, "crown"][-1] + timed(lambda: alpha_crown(ops, lo, hi, C, pre=pre))
                    )
            med = {k: statistics.median(v) * 1000 / args.batch for k, v in times.items()}
            print(
                f"{w:>6} {d:>8.2f} "
                + " ".join(f"{med['sparse', m]:>8.3f}" for m in ("ibp", "crown", "alpha"))
                + "   "
                + "  ".join(f"{med['sparse', m] / med['dense', m]:>5.2f}" for m in ("ibp", "crown", "alpha")),
                flush=True,
            )


if __name__ == "__main__":
    main()
