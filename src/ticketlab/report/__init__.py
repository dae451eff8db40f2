"""Reports: runs, seed groups and sweeps as one self-contained HTML page (``ticketlab report``)."""

from .build import build_report

__all__ = ["build_report"]
