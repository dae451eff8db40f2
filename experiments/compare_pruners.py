"""IMP vs pruning at initialization vs the sanity checks, at the same densities: one table and one plot.

For an IMP run (its model, dataset, seed and training settings), at the total density of each chosen
round: every pruner at init (`ticketlab prune-init`, global scope, trained with the same settings), and
the IMP masks' sanity checks (`ticketlab baselines`: layerwise shuffle, reinit). Prints test accuracy
and training FLOPs; writes RUN/compare_pruners.png and RUN/compare_pruners.json. Cached: reruns resume.

    .venv/bin/python experiments/compare_pruners.py RUN [--use-rounds 2,4,6,8] [--methods a,b]
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
from ticketlab.train import TrainConfig  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--use-rounds", default=None, help="comma-separated IMP rounds (default: every pruned round)")
    p.add_argument("--methods", default=",".join(PRUNERS.names()))
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    run = Path(args.run_dir)
    try:
        cfg = read_json(run / "config.json")["config"]
        summary = read_json(run / "summary.json")
        rounds = {r["round"]: r for r in summary["rounds"]}
        use = [int(k) for k in args.use_rounds.split(",")] if args.use_rounds else [k for k in rounds if k > 0]
        base = run_baselines(run, use, ["shuffle", "reinit"], quiet=args.quiet)
        rows = []
        for k, b in zip(use, base["rows"]):
            r = rounds[k]
            row = {"density": r["density"], "imp": b["method"], **{f"imp {n}": v for n, v in b["baselines"].items()}}
            for m in args.methods.split(","):
                pc = PruneInitConfig(model=cfg["model"], dataset=cfg["dataset"], seed=cfg["seed"], method=m,
                                     density=r["density"], train=TrainConfig(**cfg["train"]))
                s = run_prune_init(pc, run / "compare" / f"{m}-r{k:02d}", quiet=args.quiet)
                row[m] = {"test_acc": s["test_acc"], "training_flops": s["flops"]["training"]}
            rows.append(row)
    except UserError as e:
        print(f"compare_pruners: error: {e}", file=sys.stderr)
        return 2
    cols = [c for c in rows[0] if c != "density"]
    print(f"test accuracy (training FLOPs), {cfg['model']} on {cfg['dataset']} (from {run}); dense training "
          f"{base['dense_training_flops']:.2e} FLOPs")
    print(f"{'density':>8}" + "".join(f"  {c:>19}" for c in cols))
    for row in rows:
        print(f"{100 * row['density']:>7.2f}%" + "".join(
            f"  {row[c]['test_acc']:.4f} ({row[c]['training_flops']:.1e})" for c in cols))
    write_json(run / "compare_pruners.json", {"rows": rows, "dense_training_flops": base["dense_training_flops"]})
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    many_lines(ax)
    for c in cols:
        style = "o-" if c == "imp" else ("s--" if c.startswith("imp ") else "^-")
        ax.plot([100 * r["density"] for r in rows], [r[c]["test_acc"] for r in rows], style, label=c, markersize=4)
    density_axis(ax, [100 * r["density"] for r in rows])
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{cfg['model']} on {cfg['dataset']}: IMP, pruning at init, sanity checks")
    ax.grid(alpha=0.3)
    outside_legend(ax)
    fig.tight_layout()
    fig.savefig(run / "compare_pruners.png", dpi=110)
    print(f"\nplot: {run / 'compare_pruners.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
