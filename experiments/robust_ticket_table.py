"""Robust tickets by mask learning (Zheng et al. 2022, on ticketlab's own pretrained nets): hard-concrete
masks with a smoothed L0 penalty over each parent's frozen trained weights, learned on clean and on PGD
examples, against the magnitude mask of the same weights at the same per-layer density. Clean and PGD
accuracy, mean ± std over the seeds of an IMP seed group.

    .venv/bin/python experiments/robust_ticket_table.py GROUP [--density 0.3] [--iterations 2000]
        [--adv-eps 0.05] [--adv-steps 5] [--eps 0.02,0.05] [--hard-phase 0.2] [--autoattack-samples 500]

GROUP is a seed group of `ticketlab imp --seeds N` (each seed's round 0 is a parent) or one IMP run. The
masks are `ticketlab supermask --preset robust-ticket` runs in GROUP/seed_<s>/robust-ticket/, evaluated by
`ticketlab robustness` (PGD-10 L-inf, all test images): reruns resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ticketlab.attacks import AttackConfig, robust_accuracy
from ticketlab.data import load_dataset
from ticketlab.io import read_json
from ticketlab.models import build_model
from ticketlab.robust.evaluate import RobustnessConfig, run_robustness
from ticketlab.runs import load_state
from ticketlab.runs.seeds import group_runs, mean_std
from ticketlab.sparse import apply_mask_, keep_count, prunable_names
from ticketlab.supermask import PRESETS, SupermaskConfig, run_supermask
from ticketlab.train import TrainConfig


def magnitude_row(run: Path, cfg: dict, density: float, eps: list[float]) -> dict:
    """The per-layer magnitude mask of the parent's trained weights, no training: clean and PGD accuracy."""
    data = load_dataset(cfg["dataset"], None, quiet=True)
    model = build_model(cfg["model"], data.input_shape, data.num_classes, seed=0)
    model.load_state_dict(load_state(run / "round_00" / "final.safetensors", model))
    params = dict(model.named_parameters())
    mask = {}
    for n in prunable_names(model):
        w = params[n].detach().abs().flatten()
        keep = torch.zeros_like(w, dtype=torch.bool)
        keep[torch.topk(w, keep_count(w.numel(), density)).indices] = True
        mask[n] = keep.view(params[n].shape)
    apply_mask_(model, mask)
    row = {"clean": None}
    for e in eps:
        clean, rob = robust_accuracy(model, data, AttackConfig(eps=e, steps=10))
        row["clean"], row[f"pgd {e}"] = clean, rob
    return row


def one_seed(run: Path, a) -> dict[str, dict]:
    cfg = read_json(run / "config.json")["config"]
    preset = PRESETS["robust-ticket"]
    out = {}
    for adv in ("none", "pgd"):
        train = {**preset["train"], "iterations": a.iterations, "adv": adv}
        if adv == "pgd":
            train |= {"adv_eps": a.adv_eps, "adv_steps": a.adv_steps}
        else:
            train.pop("adv_eps")
        sc = SupermaskConfig(
            model=cfg["model"],
            dataset=cfg["dataset"],
            seed=cfg["seed"],
            method="hard-concrete",
            pretrained=str(run),
            density=a.density,
            init_logit=preset["init_logit"],
            l0_strength=preset["l0_strength"],
            hard_phase=a.hard_phase,
            train=TrainConfig(**train),
        )
        where = (
            run
            / "robust-ticket"
            / (
                f"d{a.density}-{adv}-e{a.adv_eps}-s{a.adv_steps}-i{a.iterations}"
                + (f"-h{a.hard_phase}" if a.hard_phase else "")
            )
        )
        run_supermask(sc, where, quiet=True)
        res = run_robustness(where, RobustnessConfig(eps=a.eps, steps=10), quiet=True)
        aa = (
            run_robustness(
                where,
                RobustnessConfig(attack="autoattack", eps=[a.autoattack_eps], samples=a.autoattack_samples),
                quiet=True,
            )["rows"]
            if a.autoattack_samples
            else None
        )
        for i, r in enumerate(res["rows"]):
            label = (
                "dense parent"
                if r["label"] == "dense parent"
                else f"hard-concrete, {'PGD' if adv == 'pgd' else 'clean'} loss"
            )
            out[label] = {"clean": r["clean_acc"], **{f"pgd {e}": r["robust_acc"][str(e)] for e in a.eps}}
            if aa:
                out[label][f"AutoAttack {a.autoattack_eps}"] = aa[i]["robust_acc"][str(a.autoattack_eps)]
    out["magnitude mask"] = magnitude_row(run, cfg, a.density, a.eps)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("group", type=Path)
    p.add_argument("--density", type=float, default=0.3)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--adv-eps", type=float, default=0.05)
    p.add_argument("--adv-steps", type=int, default=5)
    p.add_argument("--eps", default="0.02,0.05")
    p.add_argument("--autoattack-samples", type=int, default=0, help="also AutoAttack on the first N test images")
    p.add_argument("--autoattack-eps", type=float, default=0.05)
    p.add_argument(
        "--hard-phase",
        type=float,
        default=0.0,
        help="the last fraction of mask learning through the binary ticket (straight-through)",
    )
    a = p.parse_args()
    a.eps = [float(e) for e in a.eps.split(",")]
    per_seed = [one_seed(r, a) for r in group_runs(a.group)]
    cols = ["clean"] + [f"pgd {e}" for e in a.eps]
    cols += [f"AutoAttack {a.autoattack_eps}"] if a.autoattack_samples else []
    print(
        f"{len(per_seed)} seed(s); masks at {100 * a.density:.0f}% density per layer over frozen trained weights; "
        f"PGD-10 L-inf, eps in pixel units; hard phase {a.hard_phase}"
    )
    print("| mask | " + " | ".join(cols) + " |")
    print("| --- | " + " | ".join("---" for _ in cols) + " |")
    for label in ("dense parent", "magnitude mask", "hard-concrete, clean loss", "hard-concrete, PGD loss"):
        vals = [s[label] for s in per_seed]
        print(
            f"| {label} | " + " | ".join(mean_std([v[c] for v in vals]) if c in vals[0] else "-" for c in cols) + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
