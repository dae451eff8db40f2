"""Mask enforcement overhead: a masked training step vs the same unmasked step (lenet300, conv2).

Masked = ticketlab's trainer: zero the pruned gradients, then the (fused, elementwise) Adam step, which
leaves pruned weights exactly zero; the "both passes" column also zeroes the weights after the step
(MaskEnforcer's default, for arbitrary optimizers). Prints the median over interleaved repetitions of
(masked time / unmasked time). Target for the trainer: <= 1.05.

    .venv/bin/python benchmarks/bench_mask_overhead.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, median, parser, ratio_median  # noqa: E402

from ticketlab.models import build_model  # noqa: E402
from ticketlab.sparse import MaskEnforcer, ones_mask  # noqa: E402
from ticketlab.train import TrainConfig, make_optimizer  # noqa: E402

CASES = {"lenet300": ((1, 28, 28), 300), "conv2": ((1, 28, 28), 30)}  # steps per timed block


def bench(name: str, shape, steps: int, repeats: int, density: float = 0.2) -> dict:
    torch.manual_seed(0)
    x = torch.randn(60, *shape)
    y = torch.randint(0, 10, (60,))

    enforcers = {}

    def make(masked: bool, after_step: bool = False):
        model = build_model(name, shape, 10, seed=0)
        opt = make_optimizer(model, TrainConfig(optimizer="adam", lr=1e-3))  # as ticketlab trains
        enf = None
        if masked:
            mask = {n: torch.rand(m.shape) < density for n, m in ones_mask(model).items()}
            enf = MaskEnforcer(model, mask, opt, after_step=after_step)
            enforcers[after_step] = enf

        def block():
            for _ in range(steps):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if enf is None:
                    opt.step()
                else:
                    enf.step()

        block()  # warm-up (allocations, Adam state)
        return block

    fns = {"unmasked": make(False), "masked": make(True), "both": make(True, after_step=True)}
    enf = enforcers[True]  # its grads are populated by the warm-up

    def passes(fn):
        def block():
            for _ in range(steps):
                fn()

        return block

    fns["grad pass"] = passes(enf.mask_grads_)
    fns["weight pass"] = passes(enf.mask_weights_)
    t = interleaved(fns, repeats)
    return {
        "model": name,
        "step_ms_unmasked": 1e3 * median(t["unmasked"]) / steps,
        "step_ms_masked": 1e3 * median(t["masked"]) / steps,
        "ratio": ratio_median(t["masked"], t["unmasked"]),
        "ratio_both": ratio_median(t["both"], t["unmasked"]),
        "grad_pass": ratio_median(t["grad pass"], t["unmasked"]),
        "weight_pass": ratio_median(t["weight pass"], t["unmasked"]),
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"mask enforcement overhead (Adam, batch 60, density 20%), torch threads = {args.threads}, "
        f"median of {args.repeats} interleaved repeats"
    )
    print(
        f"{'model':<10} {'unmasked ms/step':>17} {'masked ms/step':>15} {'masked/unmasked':>16} "
        f"{'both passes/unmasked':>21} {'grad pass/step':>15} {'weight pass/step':>17}"
    )
    for name, (shape, steps) in CASES.items():
        r = bench(name, shape, steps, args.repeats)
        print(
            f"{r['model']:<10} {r['step_ms_unmasked']:>17.3f} {r['step_ms_masked']:>15.3f} {r['ratio']:>16.3f} "
            f"{r['ratio_both']:>21.3f} {100 * r['grad_pass']:>14.2f}% {100 * r['weight_pass']:>16.2f}%"
        )
    print("grad pass / weight pass: the enforcement itself, timed alone, as a fraction of an unmasked step")


if __name__ == "__main__":
    main()
