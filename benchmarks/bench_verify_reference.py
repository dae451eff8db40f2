"""ticketlab's CROWN and alpha-CROWN against auto_LiRPA's (the reference implementation) on the same trained
nets, images and eps: time per image (1 thread, interleaved repetitions, median) and the bounds themselves
(max |difference| for CROWN; for alpha-CROWN the mean and worst of ticketlab's lower bound minus the
reference's, so > 0 is tighter). Nets: LeNet-300-100 and cnn-small trained naturally on Fashion-MNIST for
--iterations steps (seed 0), on the first --images test images.

auto_LiRPA is not a dependency: put its source on PYTHONPATH (e.g. a clone of Verified-Intelligence/auto_LiRPA
plus `pip install --target DIR appdirs sortedcontainers graphviz`); without it only ticketlab's columns print.

    PYTHONPATH=/path/to/auto_LiRPA:DIR .venv/bin/python benchmarks/bench_verify_reference.py [--threads 1]
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from common import parser

from ticketlab.attacks import to_pixels
from ticketlab.data import load_dataset
from ticketlab.models import build_model
from ticketlab.train import TrainConfig, train
from ticketlab.verify.bounds import alpha_crown, crown, input_box, margin_spec
from ticketlab.verify.graph import to_ops


def reference():
    try:
        from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    except ImportError:
        return None
    return BoundedModule, BoundedTensor, PerturbationLpNorm


def timed(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Median seconds and last result of each callable: one warm-up call each, then ``repeats`` rounds that call
    them in turn (interleaved, so a change in the machine's load falls on all of them alike)."""
    times = {k: [] for k in fns}
    out = {k: f() for k, f in fns.items()}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            out[k] = f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, out


def torch_no_grad(fn):
    with torch.no_grad():
        return fn()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="lenet300,cnn-small")
    p.add_argument("--eps", default="0.01,0.02")
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--alpha-steps", type=int, default=20)
    p.set_defaults(threads=1, repeats=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ref = reference()
    data = load_dataset("fashion-mnist")
    print(
        f"threads {args.threads}; {args.images} images; ms per image (one warm-up, then the median of "
        f"{args.repeats} interleaved runs); "
        f"auto_LiRPA {'present' if ref else 'absent (its columns are blank)'}"
    )
    print(f"{'model':>10} {'eps':>5} | {'crown':>8} {'ref':>8} {'|diff|':>8} | {'alpha':>8} {'ref':>8} "
          f"{'mean d':>9} {'min d':>9} | verified: crown alpha ref-alpha")  # fmt: skip
    for name in args.models.split(","):
        model = build_model(name, data.input_shape, data.num_classes, seed=0)
        train(model, data, TrainConfig(iterations=args.iterations), seed=0)
        net = copy.deepcopy(model).double().eval()  # the reference gets the standardised box (the same set)
        mean, std = data.mean.double(), data.std.double()
        ops = to_ops(copy.deepcopy(model).double().eval(), data.input_shape, data.mean.double(), data.std.double())
        x = to_pixels(data.x_test[: args.images], data).double()
        y = data.y_test[: args.images]
        C = margin_spec(y, data.num_classes).double()
        for eps in [float(e) for e in args.eps.split(",")]:
            lo, hi = input_box(x, eps, data.pixel_range)
            fns = {
                "crown": lambda: torch_no_grad(lambda: crown(ops, lo, hi, C, upper=False)),
                "alpha": lambda: alpha_crown(ops, lo, hi, C, steps=args.alpha_steps),
            }
            if ref:
                BoundedModule, BoundedTensor, PerturbationLpNorm = ref
                torch.set_default_dtype(torch.float64)  # auto_LiRPA makes its buffers in the default dtype
                bm = BoundedModule(net, torch.zeros(1, *data.input_shape, dtype=torch.float64), verbose=0)
                bm = bm.double()
                bm.set_bound_opts({"optimize_bound_args": {"iteration": args.alpha_steps}})
                ptb = PerturbationLpNorm(norm=float("inf"), x_L=(lo - mean) / std, x_U=(hi - mean) / std)
                bx = BoundedTensor((x - mean) / std, ptb)
                fns["ref-crown"] = lambda: torch_no_grad(
                    lambda: bm.compute_bounds(x=(bx,), C=C, method="CROWN", bound_upper=False)[0]
                )
                fns["ref-alpha"] = lambda: bm.compute_bounds(x=(bx,), C=C, method="CROWN-Optimized", bound_upper=False)[
                    0
                ]
            t, out = timed(fns, args.repeats)
            torch.set_default_dtype(torch.float32)
            c, a = out["crown"], out["alpha"]
            rc, ra = out.get("ref-crown"), out.get("ref-alpha")
            row = f"{name:>10} {eps:>5} | {1000 * t['crown'] / len(x):8.1f} "
            if ref:
                d = a.lower - ra
                row += (f"{1000 * t['ref-crown'] / len(x):8.1f} {float((c.lower - rc).abs().max()):8.1e} | "
                        f"{1000 * t['alpha'] / len(x):8.1f} {1000 * t['ref-alpha'] / len(x):8.1f} "
                        f"{float(d.mean()):9.2e} {float(d.min()):9.2e} | ")  # fmt: skip
            else:
                row += f"{'':8} {'':8} | {1000 * t['alpha'] / len(x):8.1f} {'':8} {'':9} {'':9} | "
            ver = [int((b.lower > 0).all(1).sum()) for b in (c, a)] + (
                [int((ra > 0).all(1).sum())] if ra is not None else []
            )
            print(row + " ".join(map(str, ver)), flush=True)


if __name__ == "__main__":
    main()
