"""Gibbs pruning (Labach & Valaee): train under masks sampled from a Gibbs distribution, annealed.

Every training forward samples a fresh mask for each pruned layer from p(x) ~ exp(-beta H(x)), spins
x in {-1 (pruned), +1 (kept)}, and computes with ``w * mask`` (so pruned weights get no gradient in that
step). The inverse temperature beta rises log-linearly from ``beta_start`` (1) to ``beta_end`` (1e4) over
the first ``anneal_fraction`` (0.64 = the reference's 128 of 200 epochs) of training, then stays; as it
rises the masks freeze into the deterministic one. Hamiltonians (``p`` = fraction pruned):

- ``unstructured``: H = sum_i (Q_p - w_i^2) x_i with Q_p the p-quantile of w^2 in the layer. Spins are
  independent: P(pruned_i) = 1 / (1 + exp(beta (w_i^2 - Q_p))).
- ``filter``: the same field with Q_p the p-quantile of the filters' mean w^2, plus a coupling
  -c/2 sum_{i != j in one filter} x_i x_j that makes a filter's weights agree, so whole filters (conv
  output channels, MLP neurons) are pruned. Sampled, as in the reference code, by a few sweeps of
  chromatic Gibbs sampling (two colours: even and odd input channels), starting from the state where a
  filter is kept iff its mean w^2 >= Q_p. A "filter" is a channel of a channel group (all the layers
  producing it, across residual adds), so what is pruned can be removed by compaction.

Evaluation uses the deterministic mask (the reference's "filter"/"kernel" test modes): the p fraction of
filters (or weights) with the smallest mean w^2, exactly counted. ``final_mask()`` returns it.
The output layer is never pruned.
"""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..seeding import derive_seed
from ..sparse import Mask
from ..sparse.groups import ChannelGroup, output_layer

HAMILTONIANS = ("unstructured", "filter")


def beta_at(
    step: int, total: int, beta_start: float = 1.0, beta_end: float = 1e4, anneal_fraction: float = 0.64
) -> float:
    """Log-linear annealing of beta from ``beta_start`` to ``beta_end`` over ``anneal_fraction`` of training."""
    end = max(1, int(round(anneal_fraction * total)))
    f = min(1.0, step / end)
    return float(10 ** (math.log10(beta_start) + f * (math.log10(beta_end) - math.log10(beta_start))))


def _kth(values: torch.Tensor, p: float) -> torch.Tensor:
    """The p-quantile by nearest rank (k = ceil(p n), at least 1)."""
    flat = values.flatten()
    k = min(len(flat), max(1, math.ceil(p * len(flat))))
    return flat.kthvalue(k).values


def lowest_mask(values: torch.Tensor, p: float) -> torch.Tensor:
    """Bool keep mask removing exactly round(p n) of the smallest values (ties: lower position first)."""
    flat = values.flatten()
    k = int(round(p * len(flat)))
    keep = torch.ones(len(flat), dtype=torch.bool, device=flat.device)
    keep[torch.sort(flat, stable=True).indices[:k]] = False
    return keep.view_as(values)


class GibbsPruning:
    """Gibbs pruning of ``model``'s layers during training (the trainer-updater protocol of
    ``ticketlab.train.train``: ``step()`` after each optimizer step, state checkpointed)."""

    method = "gibbs"

    def __init__(
        self,
        model: nn.Module,
        groups: list[ChannelGroup] | None,
        *,
        p: float,
        total_steps: int,
        hamiltonian: str = "unstructured",
        c: float = 1.0,
        mcmc_steps: int = 20,
        beta_start: float = 1.0,
        beta_end: float = 1e4,
        anneal_fraction: float = 0.64,
        seed: int = 0,
    ):
        if hamiltonian not in HAMILTONIANS:
            raise ValueError(f"hamiltonian must be one of {HAMILTONIANS}, got {hamiltonian!r}")
        if not 0 <= p < 1:
            raise ValueError(f"p (fraction pruned) must be in [0, 1), got {p}")
        self.model, self.p, self.total, self.hamiltonian = model, float(p), int(total_steps), hamiltonian
        self.c, self.mcmc_steps, self.seed = float(c), int(mcmc_steps), int(seed)
        self.beta_start, self.beta_end, self.anneal_fraction = beta_start, beta_end, anneal_fraction
        self.step_count = 0
        last = output_layer(model)
        layers = {
            n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and n != last
        }
        if hamiltonian == "filter":
            if groups is None:
                raise ValueError("the filter Hamiltonian needs the model's channel groups")
            self.units = [(g.name, g.producers) for g in groups if g.producers]
        else:
            self.units = [(n, [n]) for n in layers]
        self.layers = {n: layers[n] for _, names in self.units for n in names}
        self._masks: dict[str, torch.Tensor] = {}
        self._mask_step = -1
        for name, layer in self.layers.items():
            layer.forward = self._forward_of(name, layer)

    # -- masks ---------------------------------------------------------------------------------------
    def beta(self) -> float:
        return beta_at(self.step_count, self.total, self.beta_start, self.beta_end, self.anneal_fraction)

    def _rows(self, names: list[str]) -> torch.Tensor:
        """w^2 of a unit's filters side by side: (channels, weights per channel over its producers)."""
        return torch.cat([self.layers[n].weight.detach().flatten(1) ** 2 for n in names], dim=1)

    def _split(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for n in names:
            w = self.layers[n].weight
            width = w[0].numel()
            out[n] = x[:, start : start + width].reshape(w.shape)
            start += width
        return out

    @torch.no_grad()
    def sampled_masks(self) -> dict[str, torch.Tensor]:
        """Float masks for this step's training forward (drawn once per step, reproducibly)."""
        if self._mask_step == self.step_count:
            return self._masks
        beta, masks = self.beta(), {}
        for i, (_unit, names) in enumerate(self.units):
            g = torch.Generator(device=self.layers[names[0]].weight.device)
            g.manual_seed(derive_seed(self.seed, "gibbs", self.step_count, i))
            w2 = self._rows(names)
            if self.hamiltonian == "unstructured":
                q = _kth(w2, self.p)
                p_pruned = torch.sigmoid(-beta * (w2 - q))
                keep = torch.rand(w2.shape, generator=g, device=w2.device) > p_pruned
            else:
                keep = self._sample_filters(w2, beta, g)
            masks |= self._split(keep.to(w2.dtype), names)
        self._masks, self._mask_step = masks, self.step_count
        return masks

    def _sample_filters(self, w2: torch.Tensor, beta: float, g: torch.Generator) -> torch.Tensor:
        q = _kth(w2.mean(1), self.p)
        field = w2 - q  # -b_i: positive favours keeping
        x = torch.where(w2.mean(1, keepdim=True) >= q, 1.0, -1.0).expand_as(w2).clone()
        colour = (torch.arange(w2.shape[1], device=w2.device) % 2).bool()
        for _ in range(self.mcmc_steps):
            for c in (False, True):
                cols = colour == c
                others = x.sum(1, keepdim=True) - x[:, cols]  # sum of the other spins of the filter
                p_keep = torch.sigmoid(2 * beta * (field[:, cols] + self.c * others))
                x[:, cols] = torch.where(torch.rand(p_keep.shape, generator=g, device=w2.device) < p_keep, 1.0, -1.0)
        return x > 0

    @torch.no_grad()
    def test_masks(self) -> dict[str, torch.Tensor]:
        """The deterministic masks (bool): exactly round(p n) weights, or filters, removed per unit."""
        masks = {}
        for _unit, names in self.units:
            w2 = self._rows(names)
            if self.hamiltonian == "unstructured":
                keep = lowest_mask(w2, self.p)
            else:
                keep = lowest_mask(w2.mean(1), self.p)[:, None].expand_as(w2)
            masks |= self._split(keep, names)
        return masks

    def channel_keep(self) -> dict[str, torch.Tensor]:
        """Filter Hamiltonian: the deterministic keep vector of each group (for ``group_mask``)."""
        return {unit: lowest_mask(self._rows(names).mean(1), self.p).cpu() for unit, names in self.units}

    def final_mask(self) -> Mask:
        """Unstructured: the deterministic weight masks by parameter name."""
        return {f"{n}.weight": m for n, m in self.test_masks().items()}

    def _forward_of(self, name: str, layer: nn.Module):
        structured = self.hamiltonian == "filter"

        def forward(x: torch.Tensor) -> torch.Tensor:
            m = self.sampled_masks()[name] if layer.training else self._eval_mask(name)
            w = layer.weight * m
            b = layer.bias
            if structured and b is not None:
                b = b * m.flatten(1)[:, 0]
            if isinstance(layer, nn.Linear):
                return F.linear(x, w, b)
            return layer._conv_forward(x, w, b)

        return forward

    def _eval_mask(self, name: str) -> torch.Tensor:
        key = ("eval", self.step_count)
        if getattr(self, "_eval_key", None) != key:
            self._eval = {n: m.to(self.layers[n].weight.dtype) for n, m in self.test_masks().items()}
            self._eval_key = key
        return self._eval[name]

    # -- the trainer-updater protocol ----------------------------------------------------------------
    def step(self) -> None:
        self.step_count += 1

    def observe(self, row: dict) -> None:
        pass

    def state_dict(self) -> tuple[dict, str]:
        return {}, json.dumps({"method": self.method, "step": self.step_count})

    def load_state_dict(self, tensors: dict, meta: str) -> None:
        self.step_count = int(json.loads(meta)["step"])

    def detach(self) -> None:
        """Give the layers their own forward back."""
        for layer in self.layers.values():
            if "forward" in layer.__dict__:
                del layer.forward


__all__ = ["GibbsPruning", "HAMILTONIANS", "beta_at", "lowest_mask"]
