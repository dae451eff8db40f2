"""Dynamic sparse training cost: wall time per step of each method vs static masked training, in one run.

Each method trains lenet300 (Adam, batch 60, density 10%, ERK) for blocks of ``--steps`` steps with a mask
update every ``--delta-t`` steps (so a block includes its share of updates: RigL's dense gradient, CTRE's
similarity pass, SET's random scores). AC/DC alternates sparse and dense phases of half a block. Dense
(unmasked, no trainer) is shown for reference. Trainers run as ``ticketlab dst`` runs them
(``after_step=False``). Prints each method's ms/step and the median over interleaved repetitions of
(method time / static time).

    .venv/bin/python benchmarks/bench_dst.py [--threads N] [--repeats R] [--steps S] [--delta-t D]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, median, parser, ratio_median  # noqa: E402

import ticketlab.dst as dst  # noqa: E402
from ticketlab.models import build_model  # noqa: E402
from ticketlab.train import TrainConfig, make_optimizer  # noqa: E402

TOTAL = 10**6  # so the schedule never ends inside the benchmark


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="steps per timed block")
    p.add_argument("--delta-t", type=int, default=100, help="steps between mask updates")
    p.add_argument("--model", default="lenet300")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shape = (1, 28, 28)
    torch.manual_seed(0)
    x, y = torch.randn(60, *shape), torch.randint(0, 10, (60,))
    probe = torch.randn(1000, *shape)
    cases = {
        "dense": None,
        "static": ("static", {}),
        "set": ("set", {}),
        "rigl": ("rigl", {}),
        "ctre (batch)": ("ctre", {}),
        "ctre (1000 probe)": ("ctre", {"probe": probe}),
        "acdc": ("acdc", {"warmup_fraction": 0.0, "final_fraction": 0.0, "phase_fraction": args.steps / 2 / TOTAL}),
        "edst": ("edst", {"explore_fraction": 0.9}),
    }

    def make(case):
        model = build_model(args.model, shape, 10, seed=0)
        opt = make_optimizer(model, TrainConfig(optimizer="adam", lr=1e-3))
        trainer = None
        if case is not None:
            method, kw = case
            trainer = dst.make(
                method,
                model,
                opt,
                density=0.1,
                total_steps=TOTAL,
                delta_t=args.delta_t,
                end_fraction=1.0,
                input_shape=shape,
                after_step=False,
                **kw,
            )

        def block():
            for _ in range(args.steps):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if trainer is not None:
                    trainer.step()

        block()  # warm-up: allocations, optimizer state, first updates
        return block

    fns = {name: make(case) for name, case in cases.items()}
    t = interleaved(fns, args.repeats)
    print(
        f"DST step cost: {args.model}, Adam, batch 60, density 10% (ERK), update every {args.delta_t} steps, "
        f"torch threads = {args.threads}, median of {args.repeats} interleaved repeats of {args.steps} steps"
    )
    print(f"{'method':<18} {'ms/step':>8} {'/ static':>9}")
    for name in fns:
        print(f"{name:<18} {1e3 * median(t[name]) / args.steps:>8.3f} {ratio_median(t[name], t['static']):>9.3f}")


if __name__ == "__main__":
    main()
