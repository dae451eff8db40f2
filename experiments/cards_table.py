"""CARDs' comparison (Diffenderfer et al. 2021) on ticketlab's nets: lottery-style pruning (IMP with weight
rewinding to init, and with learning-rate rewinding) against fine-tuning and gradual magnitude pruning, at
the same density, on clean, adversarial and corruption accuracy; mean ± std over seeds.

    .venv/bin/python experiments/cards_table.py [--out runs/cards-cmp-step] [--seeds 3] [--iterations 3000]

Trains with SGD (momentum 0.9, lr 0.05, step schedule: x0.1 at 50% and 75% of training, as Renda et al.'s
step schedules) so that learning-rate rewinding (`--rewind none`: the schedule replayed) and fine-tuning
(`--rewind finetune`: its final rate, 5e-4) differ (a cosine schedule ends at 0, where fine-tuning would
not train at all): LeNet-300-100 on
Fashion-MNIST, 3 rounds of IMP at rate 0.5 (output layer 0.25). GMP: `ticketlab compress --method
magnitude --schedule cubic --steps 10` from the same dense parent to the IMP ticket's density, the same
number of iterations. Every model: `ticketlab robustness --eps 0.02,0.05 --corruptions all` (PGD-10 L-inf,
MNIST-C). All runs are ordinary ticketlab run folders under --out: reruns resume.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from ticketlab.cli import main as ticketlab
from ticketlab.io import read_json
from ticketlab.robust.evaluate import RobustnessConfig, run_robustness
from ticketlab.runs.seeds import mean_std

TRAIN = [
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
    "--momentum",
    "0.9",
    "--lr-schedule",
    "step",
    "--gamma",
    "0.1",
    "--batch-size",
    "60",
]
METHODS = {"IMP, weight rewinding": "0", "IMP, learning-rate rewinding": "none", "IMP, fine-tuning": "finetune"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/cards-cmp-step"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=3000)
    a = p.parse_args()
    common = [
        "--model",
        "lenet300",
        "--dataset",
        "fashion-mnist",
        "--iterations",
        str(a.iterations),
        *TRAIN,
        "--milestones",
        f"{a.iterations // 2},{3 * a.iterations // 4}",
        "--quiet",
    ]
    rob = RobustnessConfig(eps=[0.02, 0.05], steps=10, corruptions=["all"])
    rows: dict[str, list[dict]] = {}
    for label, rw in METHODS.items():
        group = a.out / f"imp-rewind-{rw}"
        assert (
            ticketlab(
                [
                    "imp",
                    *common,
                    "--rate",
                    "0.5",
                    "--output-rate",
                    "0.25",
                    "--rounds",
                    "3",
                    "--rewind",
                    rw,
                    "--seeds",
                    str(a.seeds),
                    "--out",
                    str(group),
                ]
            )
            == 0
        )
        for s in range(a.seeds):
            res = run_robustness(
                group / f"seed_{s}", RobustnessConfig(**{**rob.__dict__, "corruptions": ["all"]}), quiet=True
            )
            last = [r for r in res["rows"] if r["label"].endswith("ticket")][-1]
            rows.setdefault(label, []).append(last)
            if rw == "0":
                rows.setdefault("dense", []).append(res["rows"][0])
    for s in range(a.seeds):
        parent = a.out / "imp-rewind-0" / f"seed_{s}"
        dens = read_json(parent / "summary.json")["rounds"][-1]["density"]
        where = a.out / f"gmp-seed_{s}"
        assert (
            ticketlab(
                [
                    "compress",
                    *common,
                    "--source",
                    str(parent),
                    "--seed",
                    str(s),
                    "--method",
                    "magnitude",
                    "--schedule",
                    "cubic",
                    "--steps",
                    "10",
                    "--density",
                    f"{dens:.6f}",
                    "--out",
                    str(where),
                ]
            )
            == 0
        )
        res = run_robustness(where, RobustnessConfig(**{**rob.__dict__, "corruptions": ["all"]}), quiet=True)
        rows.setdefault("gradual magnitude pruning", []).append(res["rows"][1])
    print(f"{a.seeds} seed(s); PGD-10 L-inf (pixel units); MNIST-C: mean over its 14 corruptions here")
    print("| model | density | clean | PGD eps 0.02 | PGD eps 0.05 | mean corruption acc |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label in ["dense", *METHODS, "gradual magnitude pruning"]:
        rs = rows[label]
        print(
            f"| {label} | {100 * statistics.mean(r['density'] for r in rs):.2f}% | "
            f"{mean_std([r['clean_acc'] for r in rs])} | {mean_std([r['robust_acc']['0.02'] for r in rs])} | "
            f"{mean_std([r['robust_acc']['0.05'] for r in rs])} | {mean_std([r['mean_corruption_acc'] for r in rs])} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
