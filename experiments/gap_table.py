"""GAP's question on ticketlab's nets: compress a trained dense parent with GAP, magnitude (GMP) and random
pruning, fine-tune, and compare white-box and transfer robustness (examples made on the parent) of each
compressed net and of its int8 form. One table, mean ± std over the seeds of an IMP seed group.

    .venv/bin/python experiments/gap_table.py GROUP [--density 0.1] [--steps 5] [--iterations 2000]
        [--eps 0.02,0.05] [--methods magnitude,random,gap] [--autoattack-samples 500 --autoattack-eps 0.05]

GROUP is a seed group of `ticketlab imp --seeds N` (each seed's round 0 is a parent) or one IMP run. Each
compression is a `ticketlab compress` run in GROUP/seed_<s>/compress/<method>-d<density>, each evaluation
a `ticketlab robustness` folder inside it: reruns resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.compress import CompressConfig, run_compress
from ticketlab.io import read_json
from ticketlab.robust.evaluate import RobustnessConfig, run_robustness
from ticketlab.runs.seeds import group_runs, mean_std
from ticketlab.train import TrainConfig


def one_seed(run: Path, a) -> dict[str, dict]:
    """label -> {metric: value} for one parent."""
    cfg = read_json(run / "config.json")["config"]
    out: dict[str, dict] = {}
    for m in a.methods:
        c = CompressConfig(
            model=cfg["model"],
            dataset=cfg["dataset"],
            seed=cfg["seed"],
            source=str(run),
            method=m,
            density=a.density,
            steps=a.steps,
            train=TrainConfig(**{**cfg["train"], "iterations": a.iterations, "epochs": None}),
        )
        where = run / "compress" / f"{m}-d{a.density}-s{a.steps}"
        run_compress(c, where, quiet=True)
        for transfer in (False, True):
            res = run_robustness(where, RobustnessConfig(eps=a.eps, steps=10, transfer=transfer, int8=True), quiet=True)
            for r in res["rows"]:
                label = r["label"].replace(" (1 steps)", "").replace(f" ({a.steps} steps)", "")
                row = out.setdefault(label, {"density": r["density"], "clean": r["clean_acc"]})
                for e in a.eps:
                    row[f"{'transfer' if transfer else 'white-box'} {e}"] = r["robust_acc"][str(e)]
        if a.autoattack_samples:  # the standard AutoAttack ensemble (pyautoattack) on the first N test images
            res = run_robustness(
                where,
                RobustnessConfig(attack="autoattack", eps=[a.autoattack_eps], samples=a.autoattack_samples),
                quiet=True,
            )
            for r in res["rows"]:
                label = r["label"].replace(" (1 steps)", "").replace(f" ({a.steps} steps)", "")
                out[label][f"AutoAttack {a.autoattack_eps}"] = r["robust_acc"][str(a.autoattack_eps)]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("group", type=Path)
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--eps", default="0.02,0.05")
    p.add_argument("--methods", default="magnitude,random,gap")
    p.add_argument("--autoattack-samples", type=int, default=0, help="also AutoAttack on the first N test images")
    p.add_argument("--autoattack-eps", type=float, default=0.05)
    a = p.parse_args()
    a.eps = [float(e) for e in a.eps.split(",")]
    a.methods = a.methods.split(",")
    per_seed = [one_seed(r, a) for r in group_runs(a.group)]
    cols = ["clean"] + [f"white-box {e}" for e in a.eps] + [f"transfer {e}" for e in a.eps]
    cols += [f"AutoAttack {a.autoattack_eps}"] if a.autoattack_samples else []
    print(f"{len(per_seed)} seed(s); PGD-10 L-inf, eps in pixel units; transfer: examples made on the dense parent")
    print("| model | density | " + " | ".join(cols) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in cols) + " |")
    for label in [k for k in per_seed[0] if not (a.autoattack_samples and k.endswith("int8"))]:
        vals = [s[label] for s in per_seed]
        print(
            f"| {label} | {100 * vals[0]['density']:.2f}% | "
            + " | ".join(mean_std([v[c] for v in vals]) for c in cols)
            + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
