"""Vectorised replicates: the wall time of R models trained together against one model, and against R in turn.

1. The training loop alone (``train.replicates`` vs ``train``), on in-memory data: LeNet-300-100 (Fashion-MNIST
   shapes, batch 60), Conv-2 and ResNet-20 (CIFAR-10 shapes, batch 60), random 20% masks, Adam; and RigL on
   LeNet-300-100 (each replicate its own drop and grow). Per R: seconds
   per step of one model, of R models vectorised and of R models one after another; ratios to one model.
2. End to end: ``ticketlab imp --control reinit --seeds R`` (vectorised and sequential) against one seed without
   controls (LeNet-300-100 on digits, a few rounds): the issue's "8 seeds with controls in at most 2x" figure.

Random inputs stand in for the datasets (only shapes matter for timing). Median of --repeats.

    .venv/bin/python benchmarks/bench_replicates.py [--device cuda] [--threads 2] [--steps 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ticketlab.data import build_dataset
from ticketlab.models import build_model
from ticketlab.train import TrainConfig
from ticketlab.train.replicates import train_each, train_replicates


def dataset(shape, n, device):
    rng = np.random.default_rng(0)
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, 10, n)
    d = build_dataset("bench", x[: n - 200], y[: n - 200], x[n - 200 :], y[n - 200 :], val_size=100, num_classes=10)
    return d.to(device)


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def loop_bench(name, shape, rs, steps, repeats, device) -> list[str]:
    data = dataset(shape, 3200, device)
    cfg = TrainConfig(iterations=steps, eval_every=10**9, batch_size=60)  # evaluations at the start and end only
    rows = []
    for r in rs:
        seeds = list(range(r))
        models = [build_model(name, shape, 10, seed=s).to(device) for s in seeds]
        g = torch.Generator().manual_seed(0)
        masks = [
            {
                n: (torch.rand(p.shape, generator=g) < 0.2).to(device)
                for n, p in m.named_parameters()
                if n.endswith("weight") and p.dim() > 1
            }
            for m in models
        ]
        rows.append(
            compare(
                name,
                r,
                steps,
                repeats,
                device,
                lambda: train_each(copy.deepcopy(models[:1]), data, cfg, masks=masks[:1], seeds=[0]),
                lambda: train_replicates(copy.deepcopy(models), data, cfg, masks=masks, seeds=seeds),
                lambda: train_each(copy.deepcopy(models), data, cfg, masks=masks, seeds=seeds),
            )
        )
    return rows


def compare(label, r, steps, repeats, device, one_fn, vec_fn, seq_fn) -> str:
    """A table row: one model, R vectorised and R in turn (R <= 16), ms per step, median of ``repeats``."""
    one, vec, seq = [], [], []
    for _ in range(repeats):
        one.append(timed(one_fn, device))
        vec.append(timed(vec_fn, device))
        if r <= 16:
            seq.append(timed(seq_fn, device))
    o, v = statistics.median(one) / steps, statistics.median(vec) / steps
    s = statistics.median(seq) / steps if seq else float("nan")
    return (
        f"| {label} | {r} | {1e3 * o:.2f} | {1e3 * v:.2f} ({v / o:.2f}x) | {1e3 * s:.2f} ({s / o:.2f}x) | {r / v:.0f} |"
    )


def dst_bench(rs, steps, repeats, device) -> list[str]:
    """RigL (LeNet-300-100, 10% density, a mask update every steps/5): each replicate its own drop and grow."""
    from ticketlab import dst
    from ticketlab.train import train

    data = dataset((1, 28, 28), 3200, device)
    cfg = TrainConfig(iterations=steps, eval_every=10**9, batch_size=60)
    rows = []
    for r in rs:
        seeds = list(range(r))
        models = [build_model("lenet300", (1, 28, 28), 10, seed=s).to(device) for s in seeds]

        def rigl(m, s):
            return lambda opt: dst.make(
                "rigl",
                m,
                opt,
                density=0.1,
                total_steps=steps,
                seed=s,
                delta_t=max(1, steps // 5),
                after_step=False,
                input_shape=(1, 28, 28),
            )

        def vectorized():
            ms = copy.deepcopy(models)
            train_replicates(
                ms, data, cfg, masks=[None] * r, seeds=seeds, sparse=[rigl(m, s) for m, s in zip(ms, seeds)]
            )

        def in_turn(k):
            for m, s in zip(copy.deepcopy(models[:k]), seeds):
                train(m, data, cfg, seed=s, sparse=rigl(m, s))

        rows.append(
            compare("lenet300 RigL", r, steps, repeats, device, lambda: in_turn(1), vectorized, lambda: in_turn(r))
        )
    return rows


def baddbmm_vs_vmap(rs, steps, repeats, device) -> list[str]:
    """The issue's alternative to vmap: a hand-written batched LeNet-300-100 (one baddbmm per layer for R
    models), its forward, backward and SGD step, against the vmapped functional_call the loop uses."""
    from torch.func import functional_call, stack_module_state, vmap

    rows = []
    for r in rs:
        models = [build_model("lenet300", (1, 28, 28), 10, seed=s).to(device) for s in range(r)]
        params, buffers = stack_module_state(models)
        base = copy.deepcopy(models[0]).to("meta")
        linears = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in params))
        x = torch.rand(r, 60, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (r, 60), device=device)

        def by_vmap(p):
            return vmap(lambda q, b, xx: functional_call(base, (q, b), (xx,)))(p, buffers, x)

        def by_baddbmm(p):
            h = x.flatten(2)
            for i, name in enumerate(linears):
                h = torch.baddbmm(p[f"{name}.bias"][:, None], h, p[f"{name}.weight"].transpose(1, 2))
                h = h.relu() if i < len(linears) - 1 else h
            return h

        def loop(forward):
            p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            opt = torch.optim.SGD(list(p.values()), lr=0.01, momentum=0.9)

            def run():
                for _ in range(steps):
                    out = forward(p)
                    loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten()) * r
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

            return run

        with torch.no_grad():
            assert torch.allclose(by_vmap(params), by_baddbmm(params), atol=1e-5)
        t = {"vmap": [], "baddbmm": []}
        for _ in range(repeats):
            for k, f in (("vmap", by_vmap), ("baddbmm", by_baddbmm)):
                t[k].append(timed(loop(f), device) / steps)
        v, b = statistics.median(t["vmap"]), statistics.median(t["baddbmm"])
        rows.append(f"| lenet300 | {r} | {1e3 * v:.2f} | {1e3 * b:.2f} | {v / b:.2f} |")
    return rows


def imp_bench(r, device, repeats) -> str:
    from ticketlab.lottery import IMPConfig
    from ticketlab.runs import get_experiment
    from ticketlab.runs.seeds import run_seeds

    exp = get_experiment("imp")
    base = dict(
        model="lenet300", dataset="digits", rounds=3, train=TrainConfig(iterations=300, eval_every=100, batch_size=60)
    )
    times = {"single": [], "vectorized": [], "sequential": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            exp.run(IMPConfig(**base), Path(tmp) / "one", device=device, quiet=True)
            times["single"].append(time.perf_counter() - t)
            for mode in ("vectorized", "sequential"):
                t = time.perf_counter()
                run_seeds(
                    exp,
                    IMPConfig(**base, controls=["reinit"]),
                    list(range(r)),
                    Path(tmp) / mode,
                    replicates=mode,
                    device=device,
                    quiet=True,
                )
                times[mode].append(time.perf_counter() - t)
    m = {k: statistics.median(v) for k, v in times.items()}
    return (
        f"| imp, 3 rounds x 300 steps, --control reinit --seeds {r} | {m['single']:.1f} | "
        f"{m['vectorized']:.1f} ({m['vectorized'] / m['single']:.2f}x) | "
        f"{m['sequential']:.1f} ({m['sequential'] / m['single']:.2f}x) |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-imp", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    where = torch.cuda.get_device_name() if cuda else f"CPU, {args.threads} torch thread(s)"
    print(f"device: {where}; {args.steps} steps per training, median of {args.repeats}")
    print(
        "| model | R | one model, ms/step | R vectorized, ms/step (x one) | R in turn, ms/step (x one) | "
        "model-steps/s vectorized |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    rs = (1, 8, 64) if cuda else (1, 4, 8)
    for row in loop_bench("lenet300", (1, 28, 28), rs, args.steps, args.repeats, args.device):
        print(row)
    for row in dst_bench(rs, args.steps, args.repeats, args.device):
        print(row)
    print("\n| model | R | vmap, ms/step | hand-written baddbmm, ms/step | vmap / baddbmm |")
    print("| --- | --- | --- | --- | --- |")
    for row in baddbmm_vs_vmap(rs, args.steps, args.repeats, args.device):
        print(row)
    print()
    for name in ("conv2", "resnet20"):
        for row in loop_bench(
            name, (3, 32, 32), (8,), max(5, args.steps // (1 if cuda else 10)), args.repeats, args.device
        ):
            print(row)
    if not args.skip_imp:
        print("\n| end to end | one seed, no controls, s | vectorized, s (x one) | sequential, s (x one) |")
        print("| --- | --- | --- | --- |")
        print(imp_bench(8, args.device, max(1, args.repeats // 3)))


if __name__ == "__main__":
    main()
