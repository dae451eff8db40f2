"""Verified robustness against density: the README's tables from `ticketlab verify` results.

For each IMP run or seed group given (each seed verified as a run of its own, then mean ± std), one row per
round's ticket: clean, PGD and verified accuracy (IBP, CROWN, alpha-CROWN, complete), unstable ReLUs per
sample in each hidden layer (CROWN's bounds), time per sample of CROWN and of complete verification, and the
complete verdicts that ran out of time.

    .venv/bin/python experiments/verify_table.py RUN_OR_GROUP... [--eps 0.1] [--samples 100] [--timeout 30]
        [--solver milp] [--bounds-only]

Runs `ticketlab verify --method all` on each (cached: reruns read the results).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.io import read_json
from ticketlab.runs.seeds import group_runs, mean_std
from ticketlab.verify.evaluate import ALL_METHODS, VerifyConfig, run_verify


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--solver", default="milp")
    p.add_argument("--bounds-only", action="store_true", help="IBP, CROWN and alpha-CROWN, no complete verification")
    args = p.parse_args()
    print(
        f"eps {args.eps} (L-inf, pixels), first {args.samples} test images, complete: {args.solver}, "
        f"{args.timeout:g} s per sample; mean ± std over seeds where there are several\n"
    )
    print(
        "| run | density | clean | PGD | IBP | CROWN | alpha-CROWN | complete | timeouts | unstable ReLUs / sample "
        "| CROWN ms / sample | complete ms / sample |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for group in args.runs:
        seeds = group_runs(group)
        per_seed = []
        for run in seeds:
            methods = [m for m in ALL_METHODS if m != "complete" or not args.bounds_only]
            cfg = VerifyConfig(
                eps=args.eps, methods=methods, samples=args.samples, timeout=args.timeout, solver=args.solver
            )
            per_seed.append([r for r in run_verify(run, cfg, quiet=True)["rows"] if r["group"] == "ticket"])
        name = read_json(seeds[0] / "config.json")["config"]
        label = f"{name['model']}, {name['train'].get('certified', 'natural')}"
        for i, first in enumerate(per_seed[0]):
            rows = [rs[i] for rs in per_seed]

            def cell(get, spec=".3f"):
                return mean_std([get(r) for r in rows], spec)

            layers = len(first["neurons_per_sample"]["crown"])
            unstable = " / ".join(
                cell(lambda r, k=k: r["neurons_per_sample"]["crown"][k]["unstable"], ".1f") for k in range(layers)
            )
            print(
                f"| {label} | {100 * first['density']:.1f}% | {cell(lambda r: r['clean_acc'])} "
                f"| {cell(lambda r: r['pgd_acc'])} | "
                + " | ".join(
                    cell(lambda r, m=m: r["verified"][m]) if m in first["verified"] else "-" for m in ALL_METHODS
                )
                + f" | {cell(lambda r: r['complete']['timeout'], '.1f') if 'complete' in first else '-'} | {unstable} "
                f"| {cell(lambda r: 1000 * r['seconds_per_sample']['crown'], '.2f')} "
                f"| {cell(lambda r: 1000 * r['complete']['seconds_mean'], '.0f') if 'complete' in first else '-'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
