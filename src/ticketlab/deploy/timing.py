"""Latency of several forms of a model, side by side: interleaved rounds, the median of each form's calls.

Used by ``ticketlab bench`` and by the deployed form's choice of path per batch size (``deploy.paths``).
"""

from __future__ import annotations

import math
import time

import torch


def _calls_per_measurement(fn, x, target: float = 0.02) -> int:
    fn(x)
    t = time.perf_counter()
    fn(x)
    one = max(time.perf_counter() - t, 1e-7)
    return max(1, math.ceil(target / one))


@torch.no_grad()
def time_forms(forms: dict, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per forward of each form on ``x``, interleaved over ``repeats`` rounds."""
    loops = {k: _calls_per_measurement(f, x) for k, f in forms.items()}
    samples: dict[str, list[float]] = {k: [] for k in forms}
    for _ in range(repeats):
        for k, f in forms.items():
            n = loops[k]
            t = time.perf_counter()
            for _ in range(n):
                f(x)
            samples[k].append((time.perf_counter() - t) / n)
    return {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
