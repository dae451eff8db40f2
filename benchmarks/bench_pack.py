"""Ticket file sizes: seed + Golomb-coded mask (and optional kept weights) vs the dense weights.

lenet300 trained on fashion-mnist (Adam 1.2e-3, batch 60, --iterations), then pruned one-shot by
magnitude with the LTH per-layer rates (output layer at half rate) to each density. For each density:
the mask's bits per prunable weight next to the binary entropy H(density) (the floor for a mask whose
kept positions look random) and the file sizes, against the safetensors of the dense fp32 weights.

    .venv/bin/python benchmarks/bench_pack.py [--iterations N] [--dataset NAME]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from ticketlab.data import load_dataset
from ticketlab.io import save_tensors
from ticketlab.lottery import IMPConfig
from ticketlab.lottery.plan import layer_rates, solve_exponent
from ticketlab.models import build_model
from ticketlab.sparse import layerwise_prune, magnitude_scores, ones_mask, prunable_names
from ticketlab.ticket import pack, unpack_ticket
from ticketlab.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--dataset", default="fashion-mnist")
    args = p.parse_args()
    data = load_dataset(args.dataset)
    model = build_model("lenet300", data.input_shape, data.num_classes, seed=0)
    train(
        model,
        data,
        TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, iterations=args.iterations, eval_every=args.iterations),
    )
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    names = prunable_names(model)
    sizes = {n: final[n].numel() for n in names}
    rates = layer_rates(model, names, IMPConfig(rate=0.2))
    recipe = {
        "model": "lenet300",
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "seed": 0,
        "round": None,
        "dataset": args.dataset,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_tensors(tmp / "dense.safetensors", final)
        dense = (tmp / "dense.safetensors").stat().st_size
        print(
            f"lenet300 on {args.dataset}: {sum(sizes.values())} prunable weights; dense fp32 safetensors {dense} bytes"
        )
        print(
            f"{'density':>8} {'mask bits/w':>11} {'H(d)':>7} {'ratio':>6} {'mask file B':>11} "
            f"{'+fp16 B':>9} {'+fp32 B':>9} {'mask/dense':>10} {'fp16/dense':>10}"
        )
        for target in (0.5, 0.2, 0.05, 0.01):
            t = solve_exponent(sizes, rates, target)
            dens = {n: (1 - r) ** t for n, r in rates.items()}
            mask = layerwise_prune(
                magnitude_scores(final, names), ones_mask(model), dens, torch.Generator().manual_seed(0)
            )
            d = pack(recipe, mask, tmp / "m.safetensors")
            assert all(torch.equal(unpack_ticket(tmp / "m.safetensors").mask[n], mask[n]) for n in mask)
            f16 = pack(recipe, mask, tmp / "h.safetensors", final=final, weights="fp16")["file_bytes"]
            f32 = pack(recipe, mask, tmp / "f.safetensors", final=final, weights="fp32")["file_bytes"]
            print(
                f"{100 * d['density']:>7.2f}% {d['bits_per_weight']:>11.4f} {d['entropy_bits_per_weight']:>7.4f} "
                f"{d['ratio_to_entropy']:>6.3f} {d['file_bytes']:>11} {f16:>9} {f32:>9} "
                f"{d['file_bytes'] / dense:>10.4f} {f16 / dense:>10.4f}"
            )


if __name__ == "__main__":
    main()
