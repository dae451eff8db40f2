"""Cost of adversarial training relative to clean training (one run, interleaved repetitions, median).

PGD-k makes k forward + input-gradient passes per step on top of the training step, so its wall time is
expected near (3 + 2k) / 3 of clean training by FLOPs (about k + 1 when a backward costs as much as a
forward); FGSM-RS is one attack step, TRADES-k adds a clean forward and a second training pass.

    .venv/bin/python benchmarks/bench_adversarial.py [--threads 1] [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ticketlab.data import load_dataset
from ticketlab.models import build_model
from ticketlab.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", default="lenet300")
    p.add_argument("--dataset", default="fashion-mnist")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, None, quiet=True)
    settings = {
        "clean": {},
        "fgsm-rs": dict(adv="fgsm-rs", adv_eps=0.1),
        **{f"pgd-{k}": dict(adv="pgd", adv_eps=0.1, adv_steps=k) for k in (1, 3, 7, 10)},
        "trades-10": dict(adv="trades", adv_eps=0.1, adv_steps=10),
    }
    times: dict[str, list[float]] = {k: [] for k in settings}

    def timed(kw: dict, steps: int) -> float:
        model = build_model(args.model, data.input_shape, data.num_classes, seed=0)
        cfg = TrainConfig(iterations=steps, batch_size=60, eval_every=10**9, **kw)
        t = time.perf_counter()
        train(model, data, cfg, seed=0)
        return time.perf_counter() - t

    for _ in range(args.repeats):
        for name, kw in settings.items():
            # per step: a run of `steps` minus a run of 1 step (the evaluations at start and end cancel)
            times[name].append((timed(kw, args.steps) - timed(kw, 1)) / (args.steps - 1))
    base = statistics.median(times["clean"])
    print(
        f"{args.model} on {args.dataset}, batch 60, {args.threads} torch thread(s), per step over {args.steps} "
        f"steps (evaluations excluded), median of {args.repeats}"
    )
    print(f"{'training':<10} {'ms/step':>8} {'x clean':>8} {'FLOPs model':>12}")
    for name, kw in settings.items():
        m = 1000 * statistics.median(times[name])
        base_ms = 1000 * base
        expected = TrainConfig(**kw).passes_per_example() / 3
        print(f"{name:<10} {m:>8.2f} {m / base_ms:>8.2f} {expected:>12.2f}")


if __name__ == "__main__":
    main()
