"""Sparsity distributions: how a target total density is split across layers.

- ``uniform``: every layer at the target density.
- ``er`` (Erdos-Renyi, Mocanu et al. 2018): density of a layer proportional to (n_in + n_out) / (n_in n_out),
  with n_in and n_out its input and output channels (features): a conv layer's kernel size plays no part,
  as in RigL's and jaxpruner's reference code (``include_kernel=False``).
- ``erk`` (Erdos-Renyi-Kernel, Evci et al. 2020): proportional to the sum of all weight dimensions over
  their product (kernel sizes included).

``power_scale`` (RigL's ``erk_power_scale``) raises the ER/ERK proportion to that power: 1 is the paper's
rule, 0 makes ER/ERK uniform, values in between soften the preference for small layers.

For ER/ERK a layer whose density would exceed 1 is made dense and the scale is solved again over the
rest, until every density is at most 1. ``overrides`` fix some layers' densities (e.g. a dense first
layer); the others share what is left so the total still meets the target.
"""

from __future__ import annotations

import math

from ..errors import UserError

DISTRIBUTIONS = ("uniform", "er", "erk")


def _raw(shape: tuple[int, ...], kind: str, power_scale: float = 1.0) -> float:
    if kind == "er":
        n_out, n_in = shape[0], (shape[1] if len(shape) > 1 else 1)
        return ((n_in + n_out) / (n_in * n_out)) ** power_scale
    return (sum(shape) / math.prod(shape)) ** power_scale


def layer_densities(
    shapes: dict[str, tuple[int, ...]],
    density: float,
    kind: str = "erk",
    overrides: dict[str, float] | None = None,
    power_scale: float = 1.0,
) -> dict[str, float]:
    """Per-layer densities whose parameter-weighted mean is ``density``."""
    if not (0 <= power_scale and math.isfinite(power_scale)):
        raise UserError(f"--erk-power-scale must be >= 0, got {power_scale}")
    if kind not in DISTRIBUTIONS:
        raise UserError(f"unknown sparsity distribution {kind!r}; choose one of: {', '.join(DISTRIBUTIONS)}")
    if not 0 < density <= 1:
        raise UserError(f"density must be in (0, 1], got {density}")
    overrides = dict(overrides or {})
    bad = [n for n in overrides if n not in shapes]
    if bad:
        raise UserError(f"density override for unknown layer {bad[0]!r}; layers: {', '.join(shapes)}")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    budget = density * total - sum(sizes[n] * d for n, d in overrides.items())
    free = [n for n in shapes if n not in overrides]
    free_size = sum(sizes[n] for n in free)
    if free and not 0 <= budget <= free_size + 1e-9:
        raise UserError(f"the overrides leave no feasible density for the other layers at total {density}")
    out = dict(overrides)
    if not free:
        return out
    if kind == "uniform":
        return out | {n: budget / free_size for n in free}
    raw = {n: _raw(shapes[n], kind, power_scale) for n in free}
    dense: set[str] = set()
    while True:
        rest = [n for n in free if n not in dense]
        rhs = budget - sum(sizes[n] for n in dense)
        if not rest:
            break
        eps = rhs / sum(raw[n] * sizes[n] for n in rest)
        over = [n for n in rest if eps * raw[n] > 1]
        if not over:
            out |= {n: eps * raw[n] for n in rest}
            break
        top = max(raw[n] for n in over)
        dense |= {n for n in over if raw[n] == top}
    return out | {n: 1.0 for n in dense}


def layer_counts(
    shapes: dict[str, tuple[int, ...]],
    density: float,
    kind: str = "erk",
    overrides: dict[str, float] | None = None,
    power_scale: float = 1.0,
) -> dict[str, int]:
    """Per-layer numbers of kept weights summing to exactly ``round(N x density)`` (N = all weights).

    Each layer gets the floor of its share from ``layer_densities``; the weights left over go, one each, to
    the layers with the largest fractional parts (never past a layer's size), so the total is exact
    instead of drifting by up to half a weight per layer.
    """
    dens = layer_densities(shapes, density, kind, overrides, power_scale)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    target = int(round(sum(sizes.values()) * density))
    share = {n: dens[n] * sizes[n] for n in shapes}
    counts = {n: min(sizes[n], int(math.floor(share[n] + 1e-9))) for n in shapes}
    fixed = set(overrides or {})
    order = sorted((n for n in shapes if n not in fixed), key=lambda n: share[n] - counts[n], reverse=True)
    left = target - sum(counts.values())
    for n in order * 2:  # a second pass covers layers that were capped in the first
        if left <= 0:
            break
        if counts[n] < sizes[n]:
            counts[n] += 1
            left -= 1
    return counts
