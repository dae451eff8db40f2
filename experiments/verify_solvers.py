"""MILP (HiGHS) against Marabou on one trained model: each image's complete verdict from both, with no bounds
shortcut and no attack first, so that the solvers decide every margin; agreement and total time.

    .venv/bin/python experiments/verify_solvers.py RUN [--round 4] [--eps 0.1] [--samples 40] [--timeout 20]

RUN is an IMP run (one seed); the model is its round's ticket.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ticketlab.data import load_dataset
from ticketlab.io import read_json
from ticketlab.models import build_model
from ticketlab.robust import PixelSpace, to_pixels
from ticketlab.runs.models import load_weights
from ticketlab.verify import Complete, to_ops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--round", type=int, default=4)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args()
    cfg = read_json(args.run / "config.json")["config"]
    data = load_dataset(cfg["dataset"], None, quiet=True)
    model = build_model(cfg["model"], data.input_shape, data.num_classes, seed=0)
    load_weights(model, args.run / f"round_{args.round:02d}" / "final.safetensors", cfg["model"])
    model = model.double().eval()
    mean, std = data.mean.double(), data.std.double()
    ops = to_ops(model, data.input_shape, mean, std, sparse=True)
    net = PixelSpace(model, mean, std).eval()
    xp = to_pixels(data.x_test[: args.samples].double(), data)
    counts = {"agree": 0, "disagree": 0, "undecided": 0}
    seconds = {"milp": 0.0, "marabou": 0.0}
    verdicts = {"verified": 0, "falsified": 0}
    for i in range(args.samples):
        vs = {}
        for solver in seconds:
            c = Complete(
                ops,
                net,
                data.num_classes,
                args.eps,
                data.pixel_range,
                solver,
                timeout=args.timeout,
                attack_steps=0,
                shortcut=False,
            )
            t = time.perf_counter()
            vs[solver] = c(xp[i], int(data.y_test[i])).verdict
            seconds[solver] += time.perf_counter() - t
        if {"timeout", "unknown"} & set(vs.values()):
            counts["undecided"] += 1
        elif vs["milp"] == vs["marabou"]:
            counts["agree"] += 1
            verdicts[vs["milp"]] += 1
        else:
            counts["disagree"] += 1
            print(f"image {i}: milp {vs['milp']}, marabou {vs['marabou']}")
    print(
        f"{cfg['model']} round {args.round}, eps {args.eps}, {args.samples} images: {counts} "
        f"({verdicts}); seconds per image: milp {seconds['milp'] / args.samples:.2f}, "
        f"marabou {seconds['marabou'] / args.samples:.2f}"
    )


if __name__ == "__main__":
    main()
