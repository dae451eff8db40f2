"""The pruning plan: which density each layer (or the whole net) has after each IMP round.

Layerwise: layer l keeps (1 - r_l)^k of its weights after k rounds, with r_l = --rate for fully
connected layers, --conv-rate for conv layers and --output-rate (default half of --rate) for the output
layer, as in the LTH paper. Global: the whole net keeps (1 - rate)^k. With --target-density the exponent
of the last round is fractional so the final total density is the target; one-shot jumps straight there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ..errors import UserError
from ..sparse import prunable_names
from .config import IMPConfig

DEFAULT_ROUNDS = 5


def layer_rates(model: nn.Module, names: list[str], cfg: IMPConfig) -> dict[str, float]:
    """Per-layer pruning rate; the output layer is the last prunable parameter."""
    modules = dict(model.named_modules())
    rates = {}
    for n in names:
        mod = modules.get(n.rpartition(".")[0])
        is_conv = isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        rates[n] = (cfg.conv_rate if cfg.conv_rate is not None else cfg.rate) if is_conv else cfg.rate
    if names:
        rates[names[-1]] = cfg.output_rate if cfg.output_rate is not None else cfg.rate / 2
    return rates


@dataclass
class Plan:
    """Round k (1..rounds) prunes to exponent ``exponents[k-1]`` of the per-round keep factor."""

    sizes: dict[str, int]
    rates: dict[str, float]
    global_rate: float | None
    exponents: list[float]
    excluded: int = 0  # prunable weights left out by --prune-exclude, counted in the rate (--exclude-counts all)

    @property
    def rounds(self) -> int:
        return len(self.exponents)

    def layer_densities(self, k: int) -> dict[str, float]:
        t = 0.0 if k == 0 else self.exponents[k - 1]
        return {n: (1 - r) ** t for n, r in self.rates.items()}

    def global_density(self, k: int) -> float:
        """The included weights' density after round k. With ``excluded`` weights counted (open_lth's rule),
        (1 - rate)^t of *all* prunable weights are kept, the excluded ones all among them."""
        t = 0.0 if k == 0 else self.exponents[k - 1]
        if not self.excluded:
            return (1 - self.global_rate) ** t
        n = sum(self.sizes.values())
        return max(0.0, ((n + self.excluded) * (1 - self.global_rate) ** t - self.excluded) / n)

    def expected_density(self, k: int) -> float:
        if self.global_rate is not None:
            return self.global_density(k)
        d = self.layer_densities(k)
        return sum(self.sizes[n] * d[n] for n in self.sizes) / sum(self.sizes.values())


def solve_exponent(sizes: dict[str, int], rates: dict[str, float], target: float) -> float:
    """The t with sum_l n_l (1 - r_l)^t = target * N (the total is decreasing in t): bisection."""
    total = sum(sizes.values())

    def dens(t: float) -> float:
        return sum(sizes[n] * (1 - rates[n]) ** t for n in sizes) / total

    lo, hi = 0.0, 1.0
    while dens(hi) > target:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if dens(mid) > target else (lo, mid)
    return hi


def make_plan(model: nn.Module, names: list[str], cfg: IMPConfig) -> Plan:
    """The densities of every round of an IMP run of ``cfg`` on ``model``'s ``names``: per-layer rates, the
    number of rounds (from ``--rounds`` or ``--target-density``) and each round's exact per-layer kept counts."""
    params = dict(model.named_parameters())
    sizes = {n: params[n].numel() for n in names}
    rates = layer_rates(model, names, cfg)
    if cfg.target_density is not None:
        if cfg.global_pruning:
            t_final = math.log(cfg.target_density) / math.log(1 - cfg.rate)
        else:
            t_final = solve_exponent(sizes, rates, cfg.target_density)
        n_rounds = max(1, math.ceil(t_final - 1e-9))
    else:
        n_rounds = cfg.rounds if cfg.rounds is not None else DEFAULT_ROUNDS
        t_final = float(n_rounds)
    if cfg.one_shot:
        exps = [t_final]
    else:
        exps = [float(min(k, t_final)) for k in range(1, n_rounds + 1)]
    excluded = 0
    if cfg.global_pruning and getattr(cfg, "exclude_counts", "included") == "all":
        every = prunable_names(model, cfg.prune_include)
        excluded = sum(params[n].numel() for n in every if n not in sizes)
    plan = Plan(sizes, rates, cfg.rate if cfg.global_pruning else None, exps, excluded)
    if excluded and plan.global_density(len(exps)) <= 0:
        raise UserError(
            f"the excluded layers ({excluded} weights) exceed what the last round keeps of all "
            "prunable weights; use fewer rounds, a lower --rate or --exclude-counts included"
        )
    return plan
