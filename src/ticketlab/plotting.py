"""Shared plot pieces: a log density axis labelled in plain percentages, legends outside the data, curves over
training."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401  (re-exported for the plot modules)
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from .io import write_bytes  # noqa: E402


def save_figure(fig, path, dpi: int = 110) -> None:
    """``fig`` as a PNG at ``path``, written atomically (a kill leaves the old plot or the new one), then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def many_lines(ax) -> None:
    """20 distinct colours, for plots with more than 10 lines."""
    ax.set_prop_cycle(color=plt.cm.tab20.colors)


def density_axis(ax, densities_pct: list[float]) -> None:
    """Log x axis of density in %, densest on the left, ticks at the data's densities."""
    ticks = sorted(set(round(d, 4) for d in densities_pct), reverse=True)
    ax.set_xscale("log")
    ax.set_xticks(ticks if len(ticks) <= 12 else ticks[::2])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=8)
    ax.invert_xaxis()
    ax.set_xlabel("density: % of weights kept (log)")


def category_points(ax, positions, y, err, series: int, of: int, label=None) -> None:
    """Points with error bars at category indices ``positions``, the ``series``-th of ``of`` series nudged
    sideways so they sit side by side; never joined (an order between categories means nothing)."""
    shift = (series - (of - 1) / 2) * min(0.12, 0.6 / max(1, of))
    ax.errorbar([p + shift for p in positions], y, yerr=err, fmt="o", markersize=5, capsize=4, label=label)


def category_axis(ax, names) -> None:
    """An x axis of named categories at 0, 1, ... in the order given."""
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.5)


def outside_legend(ax, **kw) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kw)


def plot_curves(
    curves: list[tuple[str, list[dict]]], path, title: str, legend_title: str, key: str = "test_acc"
) -> None:
    """``key`` over training iterations, one line per (label, history): every curve drawn (a colour map orders
    them when there are many), the y axis covering all of every curve."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = (
        plt.cm.viridis([i / max(1, len(curves) - 1) * 0.9 for i in range(len(curves))]) if len(curves) > 10 else None
    )
    for i, (label, hist) in enumerate(curves):
        pts = [(h["iter"], h[key]) for h in hist if key in h]
        if pts:
            kw = {"color": colours[i]} if colours is not None else {}
            ax.plot(*zip(*pts), label=label, lw=1.2, **kw)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(key.replace("_", " ").replace("acc", "accuracy"))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 8:
        outside_legend(ax, title=legend_title)
    else:
        ax.legend(title=legend_title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
