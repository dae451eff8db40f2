"""Plots of an IMP run: accuracy vs density, and test accuracy over training per round (LTH Figure 3)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402


def plot_accuracy_vs_density(summary: dict, path: Path) -> None:
    rounds = summary["rounds"]
    dens = [100 * r["density"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(dens, [r["test_acc"] for r in rounds], "o-", label="ticket (final)")
    ax.plot(dens, [r["early_stop_test_acc"] for r in rounds], "o--", label="ticket (early stop)")
    for c in summary["config"].get("controls", []):
        pts = [(100 * r["density"], r["controls"][c]["test_acc"]) for r in rounds if c in r["controls"]]
        if pts:
            ax.plot(*zip(*pts), "s-", label=f"{c} (final)")
    ax.set_xscale("log")
    ax.set_xticks(dens if len(dens) <= 12 else dens[::2])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=8)
    ax.invert_xaxis()
    ax.set_xlabel("density: % of weights kept (log)")
    ax.set_ylabel("test accuracy")
    cfg = summary["config"]
    ax.set_title(f"IMP: {cfg['model']} on {cfg['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_test_acc_curves(histories: list[tuple[float, list[dict]]], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for density, hist in histories:
        ax.plot([h["iter"] for h in hist], [h["test_acc"] for h in hist], label=f"{100 * density:.1f}%")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="density", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
