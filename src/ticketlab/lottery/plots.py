"""Plots of an IMP run: accuracy vs density, and test accuracy over training per round (LTH Figure 3)."""

from __future__ import annotations

from pathlib import Path

from ..plotting import density_axis, plot_curves, plt, save_figure


def _line(ax, x, y, style: str, label: str) -> None:
    """y may hold seed-group means (``runs.seeds.Stat``): the mean is drawn with a ±std band and each
    seed as a faint line."""
    x, m = [float(v) for v in x], [float(v) for v in y]
    (line,) = ax.plot(x, m, style, label=label, markersize=4)
    sd = [getattr(v, "std", 0.0) for v in y]
    if any(sd):
        ax.fill_between(
            x,
            [a - b for a, b in zip(m, sd)],
            [a + b for a, b in zip(m, sd)],
            alpha=0.15,
            color=line.get_color(),
            linewidth=0,
        )
        n = max(getattr(v, "n", 1) for v in y)
        per_seed = [getattr(v, "values", None) or [float(v)] * n for v in y]  # a constant: the same for every seed
        for s in range(min(len(p) for p in per_seed)):
            ax.plot(x, [p[s] for p in per_seed], "-", color=line.get_color(), alpha=0.25, linewidth=0.8)


def plot_accuracy_vs_density(summary: dict, path: Path) -> None:
    """Tickets and controls; for a seed group's aggregate, the means with ±std bands."""
    rounds = summary["rounds"]
    dens = [100 * r["density"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 4))
    _line(ax, dens, [r["test_acc"] for r in rounds], "o-", "ticket (final)")
    _line(ax, dens, [r["early_stop_test_acc"] for r in rounds], "o--", "ticket (early stop)")
    for c in summary["config"].get("controls", []):
        pts = [(100 * r["density"], r["controls"][c]["test_acc"]) for r in rounds if c in r["controls"]]
        if pts:
            _line(ax, *zip(*pts), "s-", f"{c} (final)")
    density_axis(ax, [float(d) for d in dens])
    ax.set_ylabel("test accuracy" + (" (mean ± std over seeds)" if hasattr(rounds[-1]["test_acc"], "std") else ""))
    cfg = summary["config"]
    ax.set_title(f"IMP: {cfg['model']} on {cfg['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_test_acc_curves(histories: list[tuple[float, list[dict]]], path: Path, title: str) -> None:
    """Test accuracy over training for every round (LTH Figure 3), labelled by density; none left out, the y
    axis covering every curve."""
    plot_curves([(f"{100 * d:.1f}%", h) for d, h in histories], path, title, "density")
