"""Pruning a trained network while fine-tuning it: one-shot, or gradually in greedy steps.

``GradualPruner`` is a trainer updater (``ticketlab.train.train(..., sparse=...)``, or an optimizer hook
in your own loop). It starts from the dense trained weights and prunes ``steps`` times, to the densities
of ``schedule``, re-scoring the pruned model each time with any pruner of ``ticketlab.pruners`` (magnitude,
random, SNIP, GAP, ...):

- ``cubic`` is Zhu & Gupta's (2017) gradual pruning schedule, density d_k = d + (1 - d)(1 - k/n)^3 after
  step k of n: with the magnitude pruner this is gradual magnitude pruning (GMP), the "gradual pruning"
  CARDs compare against (Diffenderfer et al. 2021); ``exponential`` (d^(k/n), IMP's per-round path) and
  ``linear`` are offered beside it.
- Steps are evenly spaced from iteration 0 (before the first optimizer step) to ``end_fraction`` of the
  training; the rest fine-tunes the final mask. ``steps=1`` is one-shot pruning and fine-tuning.

Between steps the mask is held exactly: a pre-step hook zeroes pruned gradients and every step multiplies
the weights by the mask; a pruning step clears the optimizer state of what it removes. ``after_step=False``
skips the multiply, exact for elementwise optimizers (as for ``MaskEnforcer`` and the DST trainers). Each step's
scoring batches and tie-breaking come from generators seeded by (seed, step), and ``state_dict()`` holds
the masks and counters, so a resumed training is bitwise the uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from torch import nn

from ..errors import UserError
from ..flops import forward_flops
from ..pruners import score
from ..seeding import generator
from ..sparse import NamedMasks, density, global_prune, layerwise_prune, nm_prune
from ..sparse.distributions import layer_densities
from ..sparse.enforce import clear_optimizer_state_, mask_grads_

SCHEDULES = ("cubic", "exponential", "linear")


def step_densities(final: float, steps: int, schedule: str = "cubic") -> list[float]:
    """The density after each of ``steps`` pruning steps, the last exactly ``final``."""
    if schedule not in SCHEDULES:
        raise UserError(f"unknown --schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    out = []
    for k in range(1, steps + 1):
        f = k / steps
        if schedule == "cubic":
            out.append(final + (1 - final) * (1 - f) ** 3)
        elif schedule == "exponential":
            out.append(final**f)
        else:
            out.append(1 - (1 - final) * f)
    out[-1] = final
    return out


def step_iterations(total: int, steps: int, end_fraction: float) -> list[int]:
    """The iteration before which each step prunes: 0, ..., round(end_fraction * total), evenly spaced."""
    if steps == 1:
        return [0]
    last = int(round(end_fraction * total))
    at = [int(round(last * k / (steps - 1))) for k in range(steps)]
    if len(set(at)) < steps:
        raise UserError(
            f"{steps} pruning steps need at least {steps - 1} iterations before the last one "
            f"(--prune-end {end_fraction} of {total}); use fewer --steps or more iterations"
        )
    return at


class GradualPruner(NamedMasks):
    """Prune ``names`` of a dense model to ``final_density`` in ``steps`` scored steps during training."""

    method = "gradual"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        names: list[str],
        scorer: Callable,
        *,
        final_density: float,
        total: int,
        steps: int = 1,
        schedule: str = "cubic",
        end_fraction: float = 0.5,
        scope: str = "global",
        distribution: str = "uniform",
        batches: Callable[[int], list],
        seed: int = 0,
        context: dict | None = None,
        input_shape: tuple[int, ...] | None = None,
        passes_per_example: int = 3,
        after_step: bool = True,
        pattern: tuple[int, int] | None = None,
    ):
        if not 0 < final_density <= 1:
            raise UserError(f"--density must be in (0, 1], got {final_density}")
        if scope not in ("global", "layerwise"):
            raise UserError(f"unknown --scope {scope!r}; choose one of: global, layerwise")
        self.model, self.optimizer, self.names, self.scorer = model, optimizer, list(names), scorer
        params = dict(model.named_parameters())
        self.params = [params[n] for n in self.names]
        self.shapes = {n: tuple(p.shape) for n, p in zip(self.names, self.params)}
        self.densities = step_densities(final_density, steps, schedule)
        self.at = step_iterations(total, steps, end_fraction)
        self.scope, self.distribution = scope, distribution
        self.batches, self.seed, self.context = batches, int(seed), context
        self.input_shape, self.passes = input_shape, passes_per_example
        self.after_step = after_step
        self.pattern = pattern  # (N, M): every step keeps max(N, round(M d)) of each group of M; the last, N
        # all kept until the first step, at iteration 0, prunes (and sets the float masks and the FLOPs)
        self.mask_list = [torch.ones_like(p, dtype=torch.bool) for p in self.params]
        self.step_count, self.done, self.log = 0, 0, []
        self.flops_per_example = 0.0
        self._hook = optimizer.register_step_pre_hook(lambda *_: mask_grads_(self.params, self._float))
        self._maybe_prune()

    def _forward_flops(self) -> float:
        if self.input_shape is None:
            return 0.0
        return float(sum(forward_flops(self.model, self.input_shape, self.mask).values()))

    def _maybe_prune(self) -> None:
        while self.done < len(self.at) and self.at[self.done] == self.step_count:
            self.prune_step()

    def prune_step(self) -> None:
        """Score the model as it is (pruned weights at zero) and keep the top of the next step's density."""
        k = self.done
        g = generator(self.seed, "compress", k)
        scores = score(self.scorer, self.model, self.names, self.batches(k), g, self.context)
        d = self.densities[k]
        if self.pattern is not None:
            n, m = self.pattern
            new = nm_prune(scores, self.mask, max(n, min(m, int(round(m * d)))), m, g)
        elif self.scope == "global":
            new = global_prune(scores, self.mask, d, g)
        else:
            new = layerwise_prune(scores, self.mask, layer_densities(self.shapes, d, self.distribution), g)
        self.mask_list = [new[n].to(p.device) for n, p in zip(self.names, self.params)]
        self._float = [m.to(p.dtype) for m, p in zip(self.mask_list, self.params)]
        clear_optimizer_state_(self.optimizer, self.params, self._float)
        with torch.no_grad():
            torch._foreach_mul_(self.params, self._float)
        self.done += 1
        self._fwd = self._forward_flops()
        self.log.append({"iter": self.step_count, "density": density(self.mask)})

    # the trainer-updater protocol of ticketlab.train.train
    def step(self) -> None:
        if self.after_step:
            with torch.no_grad():
                torch._foreach_mul_(self.params, self._float)
        self.flops_per_example += self.passes * self._fwd
        self.step_count += 1
        self._maybe_prune()

    def observe(self, row: dict) -> None:
        pass

    def state_dict(self) -> tuple[dict, str]:
        tensors = {f"mask.{i}": m.cpu() for i, m in enumerate(self.mask_list)}
        meta = {
            "method": self.method,
            "step_count": self.step_count,
            "done": self.done,
            "log": self.log,
            "flops_per_example": self.flops_per_example,
        }
        return tensors, json.dumps(meta)

    def load_state_dict(self, tensors: dict, meta: str) -> None:
        m = json.loads(meta)
        self.mask_list = [tensors[f"mask.{i}"].to(p.device).bool() for i, p in enumerate(self.params)]
        self._float = [mk.to(p.dtype) for mk, p in zip(self.mask_list, self.params)]
        self.step_count, self.done, self.log = m["step_count"], m["done"], m["log"]
        self.flops_per_example = m["flops_per_example"]
        self._fwd = self._forward_flops()

    def detach(self) -> None:
        self._hook.remove()
