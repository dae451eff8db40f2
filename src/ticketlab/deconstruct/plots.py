"""Plots of a deconstruct run: accuracy vs density per criterion (trained, untrained) and per kept-value rule."""

from __future__ import annotations

from pathlib import Path

from ..plotting import density_axis, many_lines, outside_legend, plt, save_figure


def _plot(rows: dict[str, list[dict]], key: str, title: str, path: Path) -> None:
    if not rows or key not in next(iter(rows.values()))[0]:
        return
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    many_lines(ax)
    for name, cells in rows.items():
        ax.plot([100 * c["density"] for c in cells], [c[key] for c in cells], "o-", label=name, markersize=3)
    density_axis(ax, [100 * c["density"] for c in next(iter(rows.values()))])
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    outside_legend(ax)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_deconstruct(result: dict, out: Path) -> None:
    kc = result["config"]["kept_criterion"]
    _plot(result["criteria"], "test_acc", "mask criteria, trained from init", out / "criteria_trained.png")
    _plot(
        result["criteria"],
        "untrained_test_acc",
        "mask criteria, untrained (supermasks)",
        out / "criteria_untrained.png",
    )
    _plot(result["kept_values"], "test_acc", f"kept-weight values ({kc} masks), trained", out / "kept_values.png")
