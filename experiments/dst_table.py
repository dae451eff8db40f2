"""Dynamic sparse training vs IMP at the same densities: test accuracy and training FLOPs, one table.

For each density: static, SET, RigL, SNFS, CTRE, AC/DC, GMP (``ticketlab dst``), the FreeTickets ensembles (3
independent RigL runs, whose first member is the RigL row, and EDST with 3 members from one run), and
IMP (one global-magnitude run whose rate reaches the largest density in ``--imp-rounds`` rounds, so the
smaller ones fall on later rounds: 10% at round 10 and 2.0% at round 17 by default; its FLOPs are the
sum over all its rounds up to that density). Every run uses the same optimizer, learning rate, batch and
iterations.
Cached under --out: reruns resume and only print.

    .venv/bin/python experiments/dst_table.py [--densities 0.1,0.02] [--iterations 15000] [--quiet]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from matplotlib.ticker import FuncFormatter, NullFormatter

from ticketlab.dst.runner import DSTConfig, run_dst
from ticketlab.errors import UserError
from ticketlab.io import write_json
from ticketlab.lottery import IMPConfig, imp
from ticketlab.plotting import many_lines, outside_legend, plt
from ticketlab.train import TrainConfig

SINGLE = ("static", "set", "rigl", "snfs", "ctre", "acdc", "gmp")


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Test accuracy against training FLOPs (relative to one dense training), one panel per density."""
    densities = sorted({r["density"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(1, len(densities), figsize=(5.5 * len(densities), 4.2), squeeze=False)
    for ax, d in zip(axes[0], densities):
        many_lines(ax)
        for r in (r for r in rows if r["density"] == d):
            label = "imp" if r["method"].startswith("imp") else r["method"]
            ax.scatter(r["training_flops"] / r["training_flops_dense"], r["test_acc"], s=40, label=label)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training FLOPs / one dense training (log)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{title}, density {100 * d:g}%", fontsize=9)
        ax.grid(alpha=0.3)
        outside_legend(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default="lenet300")
    p.add_argument("--densities", default="0.1,0.02")
    p.add_argument("--iterations", type=int, default=15000)
    p.add_argument("--lr", type=float, default=1.2e-3)
    p.add_argument("--batch-size", type=int, default=60)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--ensemble", type=int, default=3)
    p.add_argument("--no-imp", action="store_true", help="skip the IMP rows (the slowest part)")
    p.add_argument("--imp-rounds", type=int, default=10, help="IMP rounds to the largest density")
    p.add_argument("--out", default="runs/dst-table")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    train = TrainConfig(
        optimizer="adam", lr=args.lr, batch_size=args.batch_size, iterations=args.iterations, eval_every=args.eval_every
    )
    rows = []
    densities = [float(x) for x in args.densities.split(",")]
    try:
        for d in densities:

            def dst(method: str, **kw) -> dict:
                cfg = DSTConfig(
                    model=args.model,
                    dataset=args.dataset,
                    method=method,
                    density=d,
                    train=TrainConfig(**vars(train)),
                    **kw,
                )
                tag = "-".join([method, *(f"{k}{v}" for k, v in kw.items())])
                return run_dst(cfg, out / f"d{d:g}" / tag, quiet=args.quiet)

            runs = {m: dst(m, **({"ensemble": args.ensemble} if m == "rigl" else {})) for m in SINGLE}
            runs["edst"] = dst("edst", members=args.ensemble)
            for m in SINGLE:
                s = runs[m]
                rows.append(
                    {
                        "density": d,
                        "method": m,
                        "test_acc": s["members"][0]["acc"],
                        "nll": s["members"][0]["nll"],
                        "ece": s["members"][0]["ece"],
                        "training_flops": s["runs"][0]["flops"]["training"],
                        "training_flops_dense": s["flops"]["training_dense"],
                        **({"dense_model_acc": s["dense_model"]["acc"]} if "dense_model" in s else {}),
                    }
                )
            for label, s in (
                (f"DST ensemble ({args.ensemble} x rigl)", runs["rigl"]),
                (f"EDST ({args.ensemble} members, 1 run)", runs["edst"]),
            ):
                e = s["ensemble"]
                rows.append(
                    {
                        "density": d,
                        "method": label,
                        "test_acc": e["acc"],
                        "nll": e["nll"],
                        "ece": e["ece"],
                        "training_flops": s["flops"]["training"],
                        "training_flops_dense": s["flops"]["training_dense"],
                        "members_acc": [m["acc"] for m in s["members"]],
                    }
                )
        if not args.no_imp:
            rate = 1 - max(densities) ** (1 / args.imp_rounds)
            at = {d: round(math.log(d) / math.log(1 - rate)) for d in densities}
            cfg = IMPConfig(
                model=args.model,
                dataset=args.dataset,
                rate=rate,
                global_pruning=True,
                output_rate=rate,
                rounds=max(at.values()),
                train=TrainConfig(**vars(train)),
            )
            s = imp(cfg, out / "imp", quiet=args.quiet)
            for d in densities:
                upto = s["rounds"][: at[d] + 1]
                rows.append(
                    {
                        "density": d,
                        "method": f"imp (global, round {at[d]}, density {100 * upto[-1]['density']:.2f}%)",
                        "test_acc": upto[-1]["test_acc"],
                        "nll": None,
                        "ece": None,
                        "training_flops": sum(r["flops"]["training"] for r in upto),
                        "training_flops_dense": upto[0]["flops"]["training"],
                    }
                )
    except UserError as e:
        print(f"dst_table: error: {e}", file=sys.stderr)
        return 2
    write_json(out / "table.json", {"settings": vars(args), "rows": rows})
    plot(rows, out / "dst_accuracy_vs_flops.png", f"{args.model} on {args.dataset}")
    print(
        f"{args.model} on {args.dataset}, Adam lr {args.lr}, batch {args.batch_size}, "
        f"{args.iterations} iterations per training"
    )
    print("| density | method | test acc | NLL | ECE | training FLOPs | x dense training |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        nll = f"{r['nll']:.4f}" if r["nll"] is not None else "-"
        ece = f"{r['ece']:.4f}" if r["ece"] is not None else "-"
        extra = f" (dense model {r['dense_model_acc']:.4f})" if "dense_model_acc" in r else ""
        print(
            f"| {100 * r['density']:g}% | {r['method']}{extra} | {r['test_acc']:.4f} | {nll} | {ece} | "
            f"{r['training_flops']:.3e} | {r['training_flops'] / r['training_flops_dense']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
