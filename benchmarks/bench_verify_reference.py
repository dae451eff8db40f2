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


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


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
        f"threads {args.threads}; {args.images} images; ms per image (median of {args.repeats}); "
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
            with torch.no_grad():
                t_crown, c = timed(lambda: crown(ops, lo, hi, C, upper=False), args.repeats)
            t_alpha, a = timed(lambda: alpha_crown(ops, lo, hi, C, steps=args.alpha_steps), args.repeats)
            row = f"{name:>10} {eps:>5} | {1000 * t_crown / len(x):8.1f} "
            rc = ra = None
            if ref:
                BoundedModule, BoundedTensor, PerturbationLpNorm = ref
                torch.set_default_dtype(torch.float64)  # auto_LiRPA makes its buffers in the default dtype
                bm = BoundedModule(net, torch.zeros(1, *data.input_shape, dtype=torch.float64), verbose=0)
                bm = bm.double()
                ptb = PerturbationLpNorm(norm=float("inf"), x_L=(lo - mean) / std, x_U=(hi - mean) / std)
                bx = BoundedTensor((x - mean) / std, ptb)
                with torch.no_grad():
                    t_rc, (rc, _) = timed(
                        lambda: bm.compute_bounds(x=(bx,), C=C, method="CROWN", bound_upper=False), args.repeats
                    )
                bm.set_bound_opts({"optimize_bound_args": {"iteration": args.alpha_steps}})
                t_ra, (ra, _) = timed(
                    lambda: bm.compute_bounds(x=(bx,), C=C, method="CROWN-Optimized", bound_upper=False), args.repeats
                )
                torch.set_default_dtype(torch.float32)
                d = a.lower - ra
                row += (f"{1000 * t_rc / len(x):8.1f} {float((c.lower - rc).abs().max()):8.1e} | "
                        f"{1000 * t_alpha / len(x):8.1f} {1000 * t_ra / len(x):8.1f} "
                        f"{float(d.mean()):9.2e} {float(d.min()):9.2e} | ")  # fmt: skip
            else:
                row += f"{'':8} {'':8} | {1000 * t_alpha / len(x):8.1f} {'':8} {'':9} {'':9} | "
            ver = [int((b.lower > 0).all(1).sum()) for b in (c, a)] + (
                [int((ra > 0).all(1).sum())] if ra is not None else []
            )
            print(row + " ".join(map(str, ver)), flush=True)


if __name__ == "__main__":
    main()
