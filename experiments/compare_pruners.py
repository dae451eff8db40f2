"""IMP vs pruning at initialization vs the sanity checks, at the same densities: one table and one plot.

For an IMP run (its model, dataset, seed and training settings), at the total density of each chosen
round: every pruner at init (`ticketlab prune-init`, global scope, trained with the same settings), and
the IMP masks' sanity checks (`ticketlab baselines`: layerwise shuffle, reinit). Prints test accuracy
and training FLOPs; writes RUN/compare_pruners.png and RUN/compare_pruners.json. Cached: reruns resume.

    .venv/bin/python experiments/compare_pruners.py RUN [--use-rounds 2,4,6,8] [--methods a,b]

RUN may be a seed group (``ticketlab imp --seeds N``): each seed's table, then mean ± std over them (run
the script on the group's seed_<s> folders in parallel first to use several cores; the group's run then
only reads them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketlab.baselines import run_baselines  # noqa: E402
from ticketlab.errors import UserError  # noqa: E402
from ticketlab.io import read_json, write_json  # noqa: E402
from ticketlab.plotting import density_axis, many_lines, outside_legend, plt  # noqa: E402
from ticketlab.pruners import PRUNERS, PruneInitConfig, run_prune_init  # noqa: E402
from ticketlab.runs.seeds import aggregate, display  # noqa: E402
from ticketlab.train import TrainConfig  # noqa: E402


def compare_one(run: Path, use_rounds: str | None, methods: list[str], quiet: bool) -> tuple[dict, list[dict], float]:
    """The table's rows for one IMP run: (its config, rows, dense training FLOPs)."""
    cfg = read_json(run / "config.json")["config"]
    summary = read_json(run / "summary.json")
    rounds = {r["round"]: r for r in summary["rounds"]}
    use = [int(k) for k in use_rounds.split(",")] if use_rounds else [k for k in rounds if k > 0]
    base = run_baselines(run, use, ["shuffle", "reinit"], quiet=quiet)
    rows = []
    for k, b in zip(use, base["rows"]):
        r = rounds[k]
        row = {"density": r["density"], "imp": b["method"], **{f"imp {n}": v for n, v in b["baselines"].items()}}
        for m in methods:
            pc = PruneInitConfig(
                model=cfg["model"],
                dataset=cfg["dataset"],
                seed=cfg["seed"],
                method=m,
                density=r["density"],
                train=TrainConfig(**cfg["train"]),
            )
            s = run_prune_init(pc, run / "compare" / f"{m}-r{k:02d}", quiet=quiet)
            row[m] = {"test_acc": s["test_acc"], "training_flops": s["flops"]["training"]}
        rows.append(row)
    return cfg, rows, base["dense_training_flops"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="an IMP run, or a seed group of IMP runs (`ticketlab imp --seeds N`)")
    p.add_argument("--use-rounds", default=None, help="comma-separated IMP rounds (default: every pruned round)")
    p.add_argument("--methods", default=",".join(PRUNERS.names()))
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    run = Path(args.run_dir)
    methods = args.methods.split(",")
    try:
        record = read_json(run / "config.json")
        if record.get("kind") == "seeds":  # every finished seed, then mean ± std over them
            seeds = read_json(run / "summary.json")["seeds"]
            per_seed = [compare_one(run / f"seed_{s}", args.use_rounds, methods, args.quiet) for s in seeds]
            cfg, dense_flops = per_seed[0][0], per_seed[0][2]
            stored = aggregate([r for _, r, _ in per_seed])  # {"mean", "std", ..., "values"} in the JSON
            rows = display(stored)
            note = f"mean ± std over seeds {', '.join(map(str, seeds))}"
        else:
            cfg, rows, dense_flops = compare_one(run, args.use_rounds, methods, args.quiet)
            stored, note = rows, "one seed"
    except UserError as e:
        print(f"compare_pruners: error: {e}", file=sys.stderr)
        return 2
    cols = [c for c in rows[0] if c != "density"]
    print(
        f"test accuracy ({note}), {cfg['model']} on {cfg['dataset']} (from {run}); dense training "
        f"{dense_flops:.2e} FLOPs; training FLOPs per density: "
        + ", ".join(f"{row['imp']['training_flops']:.1e} at {100 * row['density']:.2f}%" for row in rows)
    )
    print("| density | " + " | ".join(cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    for row in rows:
        print(f"| {100 * row['density']:.2f}% | " + " | ".join(f"{row[c]['test_acc']:.4f}" for c in cols) + " |")
    write_json(run / "compare_pruners.json", {"note": note, "rows": stored, "dense_training_flops": dense_flops})
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    many_lines(ax)
    for c in cols:
        style = "o-" if c == "imp" else ("s--" if c.startswith("imp ") else "^-")
        x = [100 * r["density"] for r in rows]
        y = [float(r[c]["test_acc"]) for r in rows]
        (line,) = ax.plot(x, y, style, label=c, markersize=4)
        sd = [getattr(r[c]["test_acc"], "std", 0.0) for r in rows]
        if any(sd):
            ax.fill_between(
                x, [a - b for a, b in zip(y, sd)], [a + b for a, b in zip(y, sd)], alpha=0.12, color=line.get_color()
            )
    density_axis(ax, [100 * r["density"] for r in rows])
    ax.set_ylabel("test accuracy" + (" (mean ± std)" if note != "one seed" else ""))
    ax.set_title(f"{cfg['model']} on {cfg['dataset']}: IMP, pruning at init, sanity checks")
    ax.grid(alpha=0.3)
    outside_legend(ax)
    fig.tight_layout()
    fig.savefig(run / "compare_pruners.png", dpi=110)
    print(f"\nplot: {run / 'compare_pruners.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
