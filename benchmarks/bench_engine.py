"""The experiment engine's costs: per-point overhead of a sweep, and parallel efficiency of its backends.

1. Overhead: a local sequential sweep of ``--points`` prune-init points whose training is one iteration
   (the dataset already in memory, as for every point after the first): wall time per point, which bounds
   the engine's own cost (run directory, config hash, model build, mask, evaluation, summary, sweep.json).
2. Parallel efficiency: 8 prune-init points of about ``--point-seconds`` each (LeNet-300-100 on
   Fashion-MNIST, calibrated here at one torch thread) run sequentially, with the local backend's
   ``--jobs 2`` and on a local Ray with 2 CPUs; wall times, their ratio to sequential, and Ray's start-up.

    .venv/bin/python benchmarks/bench_engine.py [--point-seconds 20] [--points 10] [--skip-ray]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ticketlab.runs import get_experiment
from ticketlab.runs.sweep import grid, run_sweep


def sweep(exp, cfg, densities, out: Path, **kw) -> tuple[float, dict]:
    t = time.perf_counter()
    r = run_sweep(exp, cfg, grid(cfg, {"density": densities}), [0], out, quiet=True, **kw)
    assert not r["failed"], r["failed"]
    return time.perf_counter() - t, r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--point-seconds", type=float, default=20.0)
    p.add_argument("--points", type=int, default=10)
    p.add_argument("--skip-ray", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    exp = get_experiment("prune-init")
    base = exp.config(model="lenet300", dataset="fashion-mnist", method="magnitude")
    base.train.eval_every = 100
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        # 1. overhead per point
        base.train.iterations = 1
        sweep(exp, base, [0.5], tmp / "warm", threads=1)  # loads the dataset once, as any sweep's first point
        densities = [round(0.05 + 0.9 * i / args.points, 4) for i in range(args.points)]
        from ticketlab.runs import training

        real_train, spent = training.train, [0.0]

        def timed_train(*a, **kw):  # the training itself: its steps and its evaluations of val and test sets
            t = time.perf_counter()
            try:
                return real_train(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - t

        training.train = timed_train
        walls, over = [], []
        for rep in range(3):
            spent[0] = 0.0
            w, _ = sweep(exp, base, densities, tmp / f"overhead{rep}", threads=1)
            walls.append(w / args.points)
            over.append((w - spent[0]) / args.points)
        training.train = real_train
        print(
            f"1 torch thread. per point of a local sequential sweep ({args.points} points, 1-iteration trainings, "
            f"median of 3): {statistics.median(walls):.3f} s, of which outside the training "
            f"{statistics.median(over):.3f} s (the engine, plus prune-init's scoring and mask)"
        )

        # 2. parallel efficiency: calibrate iterations to about point-seconds per point at one thread
        base.train.iterations = 500
        w, _ = sweep(exp, base, [0.5], tmp / "calibrate", threads=1)
        its = max(100, int(500 * args.point_seconds / w))
        base.train.iterations = its
        d8 = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
        seq, _ = sweep(exp, base, d8, tmp / "seq", threads=1)
        par, _ = sweep(exp, base, d8, tmp / "jobs2", jobs=2, threads=1)
        print(
            f"8 points of {its} iterations (~{seq / 8:.1f} s each sequentially): sequential {seq:.1f} s; "
            f"local --jobs 2: {par:.1f} s ({par / seq:.2f}x)",
            end="",
        )
        if not args.skip_ray:
            ray_wall, r = sweep(exp, base, d8, tmp / "ray", backend="ray", jobs=2)
            print(
                f"; ray (2 CPUs, local): {ray_wall:.1f} s ({ray_wall / seq:.2f}x), of which Ray start-up "
                f"{r['ray_startup_s']:.1f} s and shutdown {r['ray_shutdown_s']:.1f} s; its tasks "
                f"{r['ray_tasks_s']:.1f} s ({r['ray_tasks_s'] / seq:.2f}x)"
            )
        else:
            print()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
