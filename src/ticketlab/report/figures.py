"""The report's figures as inline SVG strings (matplotlib), small and self-contained.

Text stays text (``svg.fonttype = none``), each figure gets its own id salt so that several inline SVGs in
one page never share a clip-path id, and images (masks) are embedded PNGs, so a page needs no network.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..plotting import category_axis, category_points, density_axis, outside_legend, plt

_ids = itertools.count()


@dataclass
class Series:
    """One line (or point) of a plot: y over x, with an optional error (std over seeds) per point."""

    label: str
    x: list[float]
    y: list[float]
    err: list[float] | None = None
    dashed: bool = False
    meta: dict = field(default_factory=dict)


def to_svg(fig) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), closed afterwards."""
    buf = io.StringIO()
    with plt.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": f"ticketlab-{next(_ids)}",
            "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        }
    ):
        fig.savefig(
            buf,
            format="svg",
            bbox_inches="tight",
            metadata={"Creator": None, "Date": None, "Format": None, "Type": None},
        )
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _band(ax, s: Series, marker: str | None, **kw) -> None:
    x, y = np.asarray(s.x, float), np.asarray(s.y, float)
    (line,) = ax.plot(x, y, marker=marker, markersize=3.5, label=s.label, linestyle="--" if s.dashed else "-", **kw)
    if s.err is not None and any(e > 0 for e in s.err):
        e = np.asarray(s.err, float)
        if len(x) > 1:
            ax.fill_between(x, y - e, y + e, color=line.get_color(), alpha=0.18, linewidth=0)
        else:
            ax.errorbar(x, y, yerr=e, color=line.get_color(), capsize=3)


def accuracy_vs_density(series: list[Series], title: str, ylabel: str = "test accuracy") -> str:
    """Accuracy against density (log, densest left); bands are ± std over seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if len(series) > 10:
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
    dens = []
    for s in series:
        _band(ax, Series(s.label, [100 * d for d in s.x], s.y, s.err, s.dashed), "o")
        dens += [100 * d for d in s.x]
    if dens and min(dens) > 0:
        density_axis(ax, dens)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    outside_legend(ax)
    return to_svg(fig)


def training_curves(panels: dict[str, list[Series]], title: str, ylabel: str = "test accuracy") -> str:
    """One panel per kind of training (tickets per round, each control, members): accuracy over iterations,
    lines coloured from first (dark) to last (light), ± std bands over seeds."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n + 1.2, 3.0), sharey=True, squeeze=False)
    for ax, (name, lines) in zip(axes[0], panels.items()):
        colours = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(lines))))
        for c, s in zip(colours, lines):
            _band(ax, s, None, color=c, linewidth=1.1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if len(lines) <= 12:
            ax.legend(fontsize=7, loc="lower right")
        else:  # too many for a legend: name the first and the last
            ax.text(
                0.98,
                0.04,
                f"{lines[0].label} (dark) ... {lines[-1].label} (light)",
                transform=ax.transAxes,
                fontsize=6,
                ha="right",
            )
    late = [v for lines in panels.values() for s in lines for x, v in zip(s.x, s.y) if x >= 0.1 * max(s.x)]
    if late:  # zoom past the first tenth of training (said on the axis), every later point inside the axis
        lo, hi = min(late), max(late)
        pad = 0.08 * max(hi - lo, 1e-3)
        axes[0][0].set_ylim(lo - pad, hi + pad)
        ylabel += " (after the first 10%)"
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=9)
    return to_svg(fig)


def heatmap(rows: list[str], cols: list[str], values: list[list[float]], title: str, label: str) -> str:
    """A rows x cols matrix of fractions (per-layer density per round), annotated when small."""
    v = np.asarray(values, float)
    fig, ax = plt.subplots(figsize=(min(12, 1.6 + 0.75 * len(cols)), min(10, 1.2 + 0.32 * len(rows))))
    im = ax.imshow(v, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    if v.size <= 300:
        for (i, j), d in np.ndenumerate(v):
            ax.text(
                j, i, f"{100 * d:.3g}", ha="center", va="center", fontsize=6, color="white" if d < 0.55 else "black"
            )
    fig.colorbar(im, ax=ax, label=label, fraction=0.05)
    ax.set_title(title, fontsize=9)
    return to_svg(fig)


def mask_image(name: str, mask: np.ndarray, title: str) -> str:
    """A 2-D mask as an image: kept weights dark, pruned ones white (rows: output units)."""
    m = np.asarray(mask, float)
    if m.ndim > 2:
        m = m.reshape(m.shape[0], -1)
    h, w = m.shape
    scale = min(7.0 / w, 3.2 / h, 0.25)
    fig, ax = plt.subplots(figsize=(max(2.5, w * scale + 0.8), max(1.2, h * scale + 0.8)))
    ax.imshow(m, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest", aspect="equal")
    ax.set_title(f"{title}: {name} ({h}x{w}, {100 * m.mean():.2f}% kept)", fontsize=8)
    ax.set_xlabel("input", fontsize=7)
    ax.set_ylabel("output", fontsize=7)
    ax.tick_params(labelsize=6)
    return to_svg(fig).replace("<svg", '<svg class="small"', 1)  # drawn at its own size, not the page's


def metric_vs(
    series: list[Series], xlabel: str, ylabel: str, title: str, log_x: bool = False, categories: list[str] | None = None
) -> str:
    """A metric over a sweep axis (one line per value of the second axis), error bars ± std over seeds. With
    ``categories`` the x values are indices into them: points with error bars at ticks named by the categories,
    in that order, the series side by side and not joined (an order between categories means nothing)."""
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    k = len(series)
    for i, s in enumerate(series):
        if categories is None:
            ax.errorbar(s.x, s.y, yerr=s.err, fmt="o-", markersize=4, capsize=3, label=s.label)
        else:
            category_points(ax, s.x, s.y, s.err, i, k, s.label)
    if categories is not None:
        category_axis(ax, categories)
    elif log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1 or series and series[0].label:
        outside_legend(ax)
    return to_svg(fig)


def categories(labels: list[str], series: list[Series], ylabel: str, title: str) -> str:
    """Grouped bars: one group per label, one bar per series, error bars ± std."""
    fig, ax = plt.subplots(figsize=(min(12, 1.5 + 0.55 * len(labels) * max(1, len(series))), 3.4))
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        xs = np.arange(len(labels)) + (i - (len(series) - 1) / 2) * width
        err = s.err if s.err is not None and any(e > 0 for e in s.err) else None
        ax.bar(xs, s.y, width, yerr=err, capsize=2, label=s.label)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    if len(series) > 1:
        outside_legend(ax)
    return to_svg(fig)


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
