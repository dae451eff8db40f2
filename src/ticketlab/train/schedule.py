"""Learning rate as a pure function of the iteration (so resuming needs no scheduler state)."""

from __future__ import annotations

import bisect
import math

from .config import TrainConfig


def lr_at(cfg: TrainConfig, it: int, total: int) -> float:
    """Learning rate for step ``it`` (0-based) of a ``total``-step run: linear warmup, then the schedule."""
    if it < cfg.warmup:
        return cfg.lr * (it + 1) / cfg.warmup
    if cfg.lr_schedule == "cosine":
        span = max(1, total - cfg.warmup)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(it - cfg.warmup, span) / span))
    if cfg.lr_schedule == "step":
        return cfg.lr * cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), it)
    return cfg.lr
