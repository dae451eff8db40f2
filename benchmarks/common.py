"""Benchmark helpers: interleaved repeated timing, so both sides see the same machine load."""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repetitions; the median is reported")
    return p


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Run each fn once per repetition, alternating the order, and collect wall times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


def median(xs):
    return statistics.median(xs)


def ratio_median(a: list[float], b: list[float]) -> float:
    """Median of per-repetition ratios a/b (each pair measured back to back)."""
    return statistics.median(x / y for x, y in zip(a, b))


def calls(model, x, n: int):
    """A block that runs ``model(x)`` n times without gradients (a form's timed unit)."""

    def block():
        with torch.no_grad():
            for _ in range(n):
                model(x)

    return block
