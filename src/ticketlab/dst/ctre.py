"""``ctre`` (Atashgahi et al.): grow connections between neurons whose activations are most similar.

A connection from input neuron i to output neuron j scores |cos(a_i, h_j)|: the cosine similarity, over
a set of examples, of the two neurons' activations. No dense gradient is needed. Activations are the
layer's input (a_i) and its output after ReLU (h_j); the last layer's output is its softmax, as in the
reference code. Without a ``probe`` the examples are the training batch of the step before the update
(captured by forward hooks in training mode only); with one, the probe inputs are run through the model
(in eval mode, in chunks) at each update, as the paper does with the training set.

Two variants (``mode``):

- ``seq`` (CTRE_seq): cosine growth until the validation accuracy has not improved for ``patience``
  evaluations (``observe``), random growth from then on;
- ``sim`` (CTRE_sim): cosine growth, except that connections dropped in this very update and chosen
  again are replaced by random ones, so each update explores.

For convolutions the neurons are channels: each channel's activation per example is its mean over
spatial positions, and the (out, in) score is shared by the kernel's positions (ties broken at random).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..hooks import observes_only
from ..seeding import generator
from ..sparse import select_topk_mask
from .base import SparseTrainer
from .registry import SPARSE_TRAINERS

MODES = ("seq", "sim")


def neuron_activations(
    module: nn.Module, inp: torch.Tensor, out: torch.Tensor, last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(examples x inputs, examples x outputs) activations of one Linear/Conv layer's neurons."""
    act = torch.softmax(out, dim=1 if isinstance(module, nn.modules.conv._ConvNd) else -1) if last else F.relu(out)
    if isinstance(module, nn.Linear):
        return inp.reshape(-1, inp.shape[-1]), act.reshape(-1, act.shape[-1])
    spatial_in, spatial_out = tuple(range(2, inp.dim())), tuple(range(2, act.dim()))
    return inp.mean(spatial_in) if spatial_in else inp, act.mean(spatial_out) if spatial_out else act


def similarity(num: torch.Tensor, sq_in: torch.Tensor, sq_out: torch.Tensor) -> torch.Tensor:
    """|cos| from accumulated sums: ``num`` = H^T A (outputs x inputs), ``sq_in`` / ``sq_out`` the squared
    norms of each input / output neuron's activations. 0 for a neuron that never fires."""
    den = sq_out.sqrt()[:, None] * sq_in.sqrt()[None, :]
    return torch.where(den > 0, num.abs() / den.clamp_min(1e-300), torch.zeros_like(num)).float()


def cosine_scores(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """|cos| between every output column of ``h`` and input column of ``a`` (both examples x neurons)."""
    a, h = a.double(), h.double()
    return similarity(h.T @ a, (a * a).sum(0), (h * h).sum(0))


@dataclass
class CTREOptions:
    ctre_mode: str = field(default="sim", metadata={"help": "sim or seq", "group": "ctre"})
    ctre_probe: int = field(
        default=1000,
        metadata={
            "help": "training examples whose activations score growth (0: the update step's batch)",
            "group": "ctre",
        },
    )
    ctre_patience: int = field(
        default=5, metadata={"help": "seq: evaluations without improvement before random growth", "group": "ctre"}
    )


@SPARSE_TRAINERS.register("ctre")
class CTRE(SparseTrainer):
    name = "ctre"
    updates = True
    options = CTREOptions

    @classmethod
    def check_options(cls, cfg) -> None:
        if cfg.ctre_probe < 0:
            raise UserError(f"--ctre-probe must be >= 0, got {cfg.ctre_probe}")

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(mode=cfg.ctre_mode, patience=cfg.ctre_patience)

    @classmethod
    def run_inputs(cls, cfg, data, seed: int) -> dict:
        """The probe: a seeded draw of ``ctre_probe`` training examples whose activations score growth."""
        if not cfg.ctre_probe:
            return {}
        n = min(cfg.ctre_probe, len(data.y_train))
        pick = torch.randperm(len(data.y_train), generator=generator(seed, "ctre-probe"))[:n]
        return {"probe": data.x_train[pick.to(data.x_train.device)]}

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        density: float = 0.1,
        distribution: str | None = None,
        *,
        mode: str = "sim",
        probe: torch.Tensor | None = None,
        probe_batch: int = 1000,
        patience: int = 5,
        **kwargs,
    ):
        if mode not in MODES:
            raise UserError(f"unknown CTRE mode {mode!r}; choose one of: {', '.join(MODES)}")
        if patience < 1:
            raise UserError(f"--ctre-patience must be >= 1, got {patience}")
        self.mode, self.probe, self.probe_batch, self.patience = mode, probe, max(1, int(probe_batch)), patience
        self.best, self.stall, self.random_growth = -math.inf, 0, False
        self._stats: dict[int, list[torch.Tensor]] = {}
        self._armed = False
        super().__init__(model, optimizer, density, distribution, **kwargs)
        modules = dict(model.named_modules())
        self.modules = []
        for n in self.names:
            mod = modules.get(n.rsplit(".", 1)[0] if "." in n else "")
            if not isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) or n.rsplit(".", 1)[-1] != "weight":
                raise UserError(f"ctre needs Linear/Conv weights; {n!r} is not one")
            if isinstance(mod, nn.modules.conv._ConvNd) and mod.groups != 1:
                raise UserError(f"ctre does not support grouped convolutions ({n!r})")
            self.modules.append(mod)
        self._handles = [m.register_forward_hook(self._capture(i)) for i, m in enumerate(self.modules)]
        self._armed = self.probe is None and self.is_update(1)

    def _capture(self, i: int):
        last = i == len(self.names) - 1

        def hook(module, inputs, out):
            if not self._armed or (self.probe is None and not module.training):
                return
            a, h = neuron_activations(module, inputs[0].detach(), out.detach(), last)
            a, h = a.double(), h.double()
            s = self._stats.get(i)
            parts = [h.T @ a, (a * a).sum(0), (h * h).sum(0), a.shape[0]]
            self._stats[i] = parts if s is None else [x + y for x, y in zip(s, parts)]

        return observes_only(hook)  # records activations, returns nothing

    def end_step(self, t: int) -> None:
        self._armed = self.probe is None and self.is_update(t + 1)

    def observe(self, row: dict) -> None:
        if self.mode != "seq" or self.random_growth:
            return
        if row["val_acc"] > self.best:
            self.best, self.stall = row["val_acc"], 0
        else:
            self.stall += 1
            self.random_growth = self.stall >= self.patience

    @torch.no_grad()
    def _run_probe(self) -> None:
        was = self.model.training
        self.model.eval()
        self._armed = True
        try:
            for chunk in self.probe.split(self.probe_batch):
                self.model(chunk)
        finally:
            self._armed = False
            self.model.train(was)
        self.extra_flops += self.probe.shape[0] * self.forward_flops()

    def grow_scores(self, t: int, g: torch.Generator) -> list[torch.Tensor]:
        if self.random_growth:
            return self.random_scores(g)
        if self.probe is not None:
            self._run_probe()
        scores = []
        for i, p in enumerate(self.params):
            s = self._stats.get(i)
            if s is None:  # no forward was seen: every position ties, so growth is random
                scores.append(torch.zeros_like(p))
                continue
            num, na, nh, n = s
            sim = similarity(num, na, nh)
            self.extra_flops += 2.0 * n * sim.numel()
            scores.append(sim.reshape(sim.shape + (1,) * (p.dim() - 2)).expand(p.shape).to(p.device))
        self._stats = {}
        return scores

    def choose_growth(self, i, scores, keep, old, k, g):
        grown = super().choose_growth(i, scores, keep, old, k, g)
        if self.mode != "sim" or self.random_growth:
            return grown
        dropped = old & ~keep
        redo = grown & dropped
        r = int(redo.sum())
        if r == 0:
            return grown
        grown = grown & ~redo
        fresh = ~(keep | grown | dropped)
        r = min(r, int(fresh.sum()))
        pick = select_topk_mask(
            torch.where(
                fresh,
                torch.rand(fresh.shape, generator=g).to(fresh.device),
                torch.full(fresh.shape, -1.0, device=fresh.device),
            ),
            r,
            g,
        )
        out = grown | pick
        if int(out.sum()) < k:  # too few fresh positions: keep some regrown ones
            out |= select_topk_mask(
                torch.where(redo, scores.float(), torch.full_like(scores, -1.0, dtype=torch.float)),
                k - int(out.sum()),
                g,
            )
        return out

    def extra_state(self) -> dict:
        return {"best": self.best, "stall": self.stall, "random_growth": self.random_growth}

    def load_extra_state(self, state: dict) -> None:
        self.best, self.stall, self.random_growth = state["best"], state["stall"], state["random_growth"]

    def after_load(self) -> None:
        self._armed = self.probe is None and self.is_update(self.step_count + 1)

    def detach(self) -> None:
        super().detach()
        for h in self._handles:
            h.remove()
