"""Plots of a deconstruct run: accuracy vs density per criterion (trained, untrained) and per kept-value rule."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _plot(rows: dict[str, list[dict]], key: str, title: str, path: Path) -> None:
    if not rows or key not in next(iter(rows.values()))[0]:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, cells in rows.items():
        ax.plot([100 * c["density"] for c in cells], [c[key] for c in cells], "o-", label=name, markersize=3)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("density: % of weights kept (log)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_deconstruct(result: dict, out: Path) -> None:
    kc = result["config"]["kept_criterion"]
    _plot(result["criteria"], "test_acc", "mask criteria, trained from init", out / "criteria_trained.png")
    _plot(result["criteria"], "untrained_test_acc", "mask criteria, untrained (supermasks)",
          out / "criteria_untrained.png")
    _plot(result["kept_values"], "test_acc", f"kept-weight values ({kc} masks), trained", out / "kept_values.png")
