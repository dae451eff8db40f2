"""``ticketlab report PATH...``: runs, seed groups and sweeps as one self-contained HTML page."""

from __future__ import annotations

from ..commands import Command
from .build import build_report


def configure(p) -> None:
    p.add_argument("paths", metavar="PATH", nargs="+", help="run directories, seed groups, sweeps or folders of runs")
    p.add_argument(
        "--out",
        default="report.html",
        metavar="FILE.html",
        help="the page to write (default report.html; an existing file is replaced only if it is a ticketlab report)",
    )


def main(ns) -> int:
    out = build_report(ns.paths, ns.out)
    print(f"report: {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


COMMAND = Command(
    "report",
    configure,
    main,
    group="tools",
    description="Plots (inline SVG) and tables of every PATH: a run of any kind, a seed group (mean ± "
    "std bands), a sweep, or a folder of runs; results inside them (robustness, "
    "verification, baselines, export/bench) included; several PATHs are also overlaid for "
    "comparison. Opens offline in any browser.",
)
