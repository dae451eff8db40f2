"""The verified-sparse tables of the README: one row per method, from `ticketlab verify` results.

Each argument is ``LABEL=RUN[@ROW][,RUN[@ROW]...]``: the runs are seeds of one method (mean ± std over them),
``ROW`` the index of the model in the run's verify rows (default: the last, the method's own model; an IMP
run's rows are its rounds, 0 = dense). Columns: weight density, clean, PGD, IBP, CROWN, alpha-CROWN and
complete verified accuracy, complete timeouts, unstable ReLUs per sample per hidden layer (CROWN bounds),
grafted neurons, and time per sample of CROWN and of complete verification (mean and median).

    .venv/bin/python experiments/certsparse_table.py "dense=runs/verify/mlp-crownibp/seed_0@0" \
        "stability=runs/certsparse/mlp-crown-s0/prune-stability" --eps 0.1 --samples 100 --timeout 30

Runs `ticketlab verify` on each run (cached: reruns read the results).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.runs.seeds import mean_std
from ticketlab.verify.evaluate import ALL_METHODS, VerifyConfig, run_verify


def parse(spec: str) -> tuple[str, list[tuple[Path, int]]]:
    label, _, runs = spec.partition("=")
    out = []
    for r in runs.split(","):
        path, _, row = r.partition("@")
        out.append((Path(path), int(row) if row else -1))
    return label, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows", nargs="+", help="LABEL=RUN[@ROW][,RUN[@ROW]...]")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--bounds-only", action="store_true", help="IBP, CROWN and alpha-CROWN, no complete verification")
    args = p.parse_args()
    methods = [m for m in ALL_METHODS if m != "complete" or not args.bounds_only]
    cfg = VerifyConfig(eps=args.eps, methods=methods, samples=args.samples, timeout=args.timeout)
    print(
        f"eps {args.eps} (L-inf, pixels), first {args.samples} test images, complete: milp, {args.timeout:g} s per "
        "sample; mean ± std over seeds where there are several\n"
    )
    print(
        "| method | weight density | clean | PGD | "
        + " | ".join(methods)
        + " | timeouts | unstable ReLUs / sample | grafted | CROWN ms | complete ms (mean / median) |"
    )
    print("| --- " * (9 + len(methods)) + "|")
    for spec in args.rows:
        label, runs = parse(spec)
        rows = [run_verify(run, cfg, quiet=True)["rows"][i] for run, i in runs]

        def cell(get, fmt=".3f"):
            return mean_std([get(r) for r in rows], fmt)

        first = rows[0]
        crown = first["neurons_per_sample"]["crown"]
        unstable = " / ".join(
            cell(lambda r, k=k: r["neurons_per_sample"]["crown"][k]["unstable"], ".1f") for k in range(len(crown))
        )
        grafted = cell(lambda r: sum(lay.get("grafted", 0) for lay in r["neurons_per_sample"]["crown"]), ".0f")
        timeouts = cell(lambda r: r["complete"]["timeout"], ".1f") if "complete" in first else "-"
        complete_ms = (
            (
                cell(lambda r: 1000 * r["complete"]["seconds_mean"], ".0f")
                + " / "
                + cell(lambda r: 1000 * r["complete"]["seconds_median"], ".0f")
            )
            if "complete" in first
            else "-"
        )
        print(
            f"| {label} | {cell(lambda r: 100 * r['density'], '.1f')}% | {cell(lambda r: r['clean_acc'])} "
            f"| {cell(lambda r: r['pgd_acc'])} | "
            + " | ".join(cell(lambda r, m=m: r["verified"][m]) for m in methods)
            + f" | {timeouts} | {unstable} | {grafted} "
            f"| {cell(lambda r: 1000 * r['seconds_per_sample']['crown'], '.0f')} | {complete_ms} |"
        )


if __name__ == "__main__":
    main()
