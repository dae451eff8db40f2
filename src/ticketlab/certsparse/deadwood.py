"""``ticketlab deadwood``: Deadwooding (Kaur, Fioretto & Salekin 2022), global pruning as a constrained problem
solved by a Lagrangian dual method.

The student starts as the dense parent (the teacher, frozen) and minimises the mean |w| of its prunable
weights - the sparsity objective - subject to two constraints, each a loss that must stay under a tolerance:

- accuracy: KL(teacher(x) || student(x)) <= ``acc_tol`` (knowledge distillation keeps the parent's function);
- robustness: KL(teacher(x) || student(x_adv)) <= ``rob_tol``, x_adv a PGD example against the student in the
  L-inf ball of radius ``rob_eps`` (pixel units).

Following the Lagrangian dual framework of Fioretto et al. (2020) that Deadwooding builds on, the primal
loss is ``l1 * mean|w| + sum_i lambda_i * max(0, g_i)`` (g_i a constraint's loss minus its tolerance,
max(0, g_i) its violation) minimised by the run's optimizer every step, and every ``dual_every`` steps the
multipliers take a dual-ascent step ``lambda_i += dual_lr * mean violation`` since the last update: a
multiplier rises while its constraint is violated and stays put once it holds. At ``prune_at`` of training
the weights are pruned globally by magnitude to ``density`` (the L1 pressure has moved the dispensable ones
toward zero); the rest of training keeps that mask exactly and the constrained loss without the objective
(the density is fixed), recovering what pruning cost.

The paper's text is not available to this project (no reference code is public); this formulation follows
its abstract ("a Lagrangian Dual method to encourage model sparsity while retaining accuracy and ensuring
robustness") and the dual-ascent scheme of Fioretto et al.; the README says so.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import AttackConfig, PixelSpace, from_pixels, pgd, to_pixels
from ..errors import UserError
from ..io import read_json, save_tensors, write_json
from ..lottery import dense_parent, imp_parent
from ..runs import (
    Experiment,
    RunConfig,
    load_mask,
    load_state,
    register,
    start_derived_run,
    train_cached,
)
from ..runs.models import trained_model
from ..seeding import generator
from ..sparse import NamedMasks, density, global_prune, ones_mask, prunable_names
from ..sparse.enforce import clear_optimizer_state_, mask_grads_
from ..train import TrainConfig

CONSTRAINTS = ("accuracy", "robustness")


class Deadwooding(NamedMasks):
    """A trainer updater (``ticketlab.train.train(..., sparse=...)``) that also supplies the loss.

    ``loss(model, x, y, it)`` is the Lagrangian at the current multipliers; ``step()`` after every optimizer
    step does the dual update every ``dual_every`` steps and the global pruning at step ``prune_step``."""

    method = "deadwooding"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        names: list[str],
        teacher: nn.Module,
        data,
        *,
        density: float,
        prune_step: int,
        l1: float = 1.0,
        acc_tol: float = 0.05,
        rob_tol: float = 0.3,
        dual_lr: float = 1.0,
        dual_every: int = 100,
        rob_eps: float = 0.1,
        rob_steps: int = 5,
        seed: int = 0,
    ):
        if not 0 < density <= 1:
            raise UserError(f"--density must be in (0, 1], got {density}")
        self.model, self.optimizer, self.names, self.teacher, self.data = model, optimizer, list(names), teacher, data
        params = dict(model.named_parameters())
        self.params = [params[n] for n in self.names]
        self.final_density, self.prune_step = density, prune_step
        self.l1, self.tol = l1, {"accuracy": acc_tol, "robustness": rob_tol}
        self.dual_lr, self.dual_every = dual_lr, dual_every
        self.rob_eps, self.rob_steps, self.seed = rob_eps, rob_steps, seed
        self.lam = {c: 0.0 for c in CONSTRAINTS}
        self._sum = {c: 0.0 for c in CONSTRAINTS}
        self._n = 0
        self.mask_list = [torch.ones_like(p, dtype=torch.bool) for p in self.params]
        self._float = [m.to(p.dtype) for m, p in zip(self.mask_list, self.params)]
        self.step_count, self.pruned, self.log = 0, False, []
        self._hook = optimizer.register_step_pre_hook(lambda *_: mask_grads_(self.params, self._float))
        if prune_step == 0:
            self.prune()

    # ---- the Lagrangian --------------------------------------------------------------------------------
    def constraint_losses(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, it: int) -> dict:
        with torch.no_grad():
            t = F.softmax(self.teacher(x), dim=1)
        out = {"accuracy": F.kl_div(F.log_softmax(model(x), dim=1), t, reduction="batchmean")}
        if self.rob_eps > 0:
            net = PixelSpace(model, self.data.mean, self.data.std)
            adv = pgd(
                net,
                to_pixels(x, self.data),
                y,
                AttackConfig(eps=self.rob_eps, steps=self.rob_steps),
                pixel_range=self.data.pixel_range,
                generator=generator(self.seed, "deadwood-pgd", it),
            )
            model.train()
            out["robustness"] = F.kl_div(
                F.log_softmax(model(from_pixels(adv, self.data)), dim=1), t, reduction="batchmean"
            )
        else:
            out["robustness"] = out["accuracy"]
        return out

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, it: int) -> torch.Tensor:
        losses = self.constraint_losses(model, x, y, it)
        total = x.new_zeros(())
        for c in CONSTRAINTS:
            violation = F.relu(losses[c] - self.tol[c])
            self._sum[c] += float(violation.detach())
            total = total + self.lam[c] * violation
        self._n += 1
        if not self.pruned:  # the sparsity objective, until the density is fixed by pruning
            total = total + self.l1 * torch.cat([p.abs().flatten() for p in self.params]).mean()
        return total

    def dual_update(self) -> None:
        """lambda_i += dual_lr * mean violation of constraint i since the last update (never below 0)."""
        if self._n == 0:
            return
        for c in CONSTRAINTS:
            self.lam[c] = max(0.0, self.lam[c] + self.dual_lr * self._sum[c] / self._n)
        self.log.append(
            {
                "iter": self.step_count,
                **{f"lambda_{c}": self.lam[c] for c in CONSTRAINTS},
                **{f"violation_{c}": self._sum[c] / self._n for c in CONSTRAINTS},
            }
        )
        self._sum = {c: 0.0 for c in CONSTRAINTS}
        self._n = 0

    def prune(self) -> None:
        """Global magnitude pruning of the prunable weights to the final density; optimizer state cleared."""
        scores = {n: p.detach().abs() for n, p in zip(self.names, self.params)}
        new = global_prune(scores, self.mask, self.final_density, generator(self.seed, "deadwood-prune"))
        self.mask_list = [new[n].to(p.device) for n, p in zip(self.names, self.params)]
        self._float = [m.to(p.dtype) for m, p in zip(self.mask_list, self.params)]
        clear_optimizer_state_(self.optimizer, self.params, self._float)
        with torch.no_grad():
            torch._foreach_mul_(self.params, self._float)
        self.pruned = True

    # ---- the trainer-updater protocol ------------------------------------------------------------------
    def step(self) -> None:
        self.step_count += 1
        if self.step_count % self.dual_every == 0:
            self.dual_update()
        if not self.pruned and self.step_count >= self.prune_step:
            self.prune()

    def observe(self, row: dict) -> None:
        pass

    def state_dict(self) -> tuple[dict, str]:
        tensors = {f"mask.{i}": m.cpu() for i, m in enumerate(self.mask_list)}
        meta = {
            "method": self.method,
            "step_count": self.step_count,
            "pruned": self.pruned,
            "log": self.log,
            "lam": self.lam,
            "sum": self._sum,
            "n": self._n,
        }
        return tensors, json.dumps(meta)

    def load_state_dict(self, tensors: dict, meta: str) -> None:
        m = json.loads(meta)
        self.mask_list = [tensors[f"mask.{i}"].to(p.device).bool() for i, p in enumerate(self.params)]
        self._float = [mk.to(p.dtype) for mk, p in zip(self.mask_list, self.params)]
        self.step_count, self.pruned, self.log = m["step_count"], m["pruned"], m["log"]
        self.lam, self._sum, self._n = m["lam"], m["sum"], m["n"]

    def detach(self) -> None:
        self._hook.remove()


@dataclass
class DeadwoodConfig(RunConfig):
    """A Deadwooding run: a trained source run pruned by Lagrangian dual ascent to ``density`` under accuracy
    and robustness constraints. The flags of ``ticketlab deadwood``."""

    model: str = field(default="lenet300", metadata={"help": "model name (that of --source)"})
    dataset: str = field(default="fashion-mnist", metadata={"help": "dataset name or npz:PATH (that of --source)"})
    seed: int = field(default=0, metadata={"help": "seed for data order, attacks and ties"})
    source: str | None = field(
        default=None,
        metadata={"help": "an IMP run directory: its trained dense round 0 is the teacher and the starting point"},
    )
    density: float = field(default=0.1, metadata={"help": "fraction of prunable weights kept (global pruning)"})
    prune_at: float = field(default=0.5, metadata={"help": "fraction of training at which the weights are pruned"})
    l1: float = field(default=1.0, metadata={"help": "weight of the sparsity objective, mean |w|"})
    acc_tol: float = field(default=0.05, metadata={"help": "accuracy constraint: KL(teacher || student) <= this"})
    rob_tol: float = field(
        default=0.3, metadata={"help": "robustness constraint: KL(teacher(x) || student(x_adv)) <= this"}
    )
    dual_lr: float = field(default=1.0, metadata={"help": "dual ascent step size of the multipliers"})
    dual_every: int = field(default=100, metadata={"help": "steps between dual updates"})
    rob_eps: float = field(
        default=0.1, metadata={"help": "robustness constraint's PGD radius (pixel units; 0: no robustness constraint)"}
    )
    rob_steps: int = field(default=5, metadata={"help": "PGD steps of the robustness constraint"})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=60, iterations=3000))

    def validate(self) -> None:
        self.train.validate()
        if not self.source:
            raise UserError("deadwood needs --source RUN (an IMP run directory with a trained round 0)")
        if self.train.adv != "none" or self.train.certified != "none":
            raise UserError("deadwood sets its own loss (the Lagrangian); drop --adv / --certified")
        if not 0 < self.density <= 1:
            raise UserError(f"--density must be in (0, 1], got {self.density}")
        if not 0 <= self.prune_at <= 1:
            raise UserError(f"--prune-at must be in [0, 1], got {self.prune_at}")
        for name in ("l1", "acc_tol", "rob_tol", "dual_lr", "rob_eps"):
            if not getattr(self, name) >= 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.dual_every < 1 or self.rob_steps < 1:
            raise UserError(f"--dual-every and --rob-steps must be >= 1, got {self.dual_every}, {self.rob_steps}")


def check_deadwood(cfg: DeadwoodConfig, model, data):
    return imp_parent(cfg.source, cfg.model, cfg.dataset)


def run_deadwood(
    cfg: DeadwoodConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    """Deadwooding of ``cfg.source``'s trained weights into the run folder ``out`` (resumable). Returns the summary."""
    dev, data, model, config, run_dir, (weights, src_summary) = start_derived_run(
        cfg, "deadwood", out, device, data_dir, quiet, check_deadwood
    )
    if (run_dir / "summary.json").exists():
        return read_json(run_dir / "summary.json")
    model.load_state_dict(load_state(weights, model))
    teacher = copy.deepcopy(model).eval()  # frozen: run under no_grad only, and no optimizer holds it
    names = prunable_names(model)
    total = cfg.train.total_iterations(len(data.y_train))

    def updater(opt):
        return Deadwooding(
            model,
            opt,
            names,
            teacher,
            data,
            density=cfg.density,
            prune_step=int(round(cfg.prune_at * total)),
            l1=cfg.l1,
            acc_tol=cfg.acc_tol,
            rob_tol=cfg.rob_tol,
            dual_lr=cfg.dual_lr,
            dual_every=cfg.dual_every,
            rob_eps=cfg.rob_eps,
            rob_steps=cfg.rob_steps,
            seed=cfg.seed,
        )

    def record(result, u: Deadwooding) -> dict:
        save_tensors(run_dir / "mask.safetensors", {n: m.cpu() for n, m in u.mask.items()})
        return {"duals": u.log, "multipliers": u.lam}

    trained, _ = train_cached(
        run_dir,
        model,
        data,
        cfg.train,
        start=None,  # the dense weights, loaded above
        total=total,
        seed=cfg.seed,
        checkpoint_every=checkpoint_every,
        label="deadwood",
        quiet=quiet,
        sparse=updater,
        record=record,
        layout="result",
    )
    mask = load_mask(run_dir / "mask.safetensors", ones_mask(model))
    summary = {
        "config": config,
        "dense_test_acc": src_summary["rounds"][0]["test_acc"],
        "density": density(mask),
        **trained,
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def format_deadwood(s: dict) -> str:
    """The table ``ticketlab deadwood`` prints."""
    c, lam = s["config"], s["multipliers"]
    return (
        f"deadwooding on {c['model']} / {c['dataset']}: density {100 * s['density']:.2f}%  test acc "
        f"{s['test_acc']:.4f} (dense parent {s['dense_test_acc']:.4f})\nmultipliers: "
        + "  ".join(f"{k} {v:.3g}" for k, v in lam.items())
    )


def deadwood_models(run: Path, summary: dict) -> list[dict]:
    """The dense parent and the deadwooded net."""
    return [
        dense_parent(summary["config"]["source"]),
        trained_model("deadwooding", "deadwood", summary["density"], run / "final.safetensors"),
    ]


EXPERIMENT = register(
    Experiment(
        "deadwood",
        DeadwoodConfig,
        run_deadwood,
        format_deadwood,
        check=check_deadwood,
        headline=lambda s: {"density": s["density"], "test_acc": s["test_acc"], "dense_test_acc": s["dense_test_acc"]},
        models=deadwood_models,
        description="Prune an IMP run's trained dense round 0 by minimising mean |w| subject to distillation and "
        "adversarial-distillation constraints, with multipliers raised by dual ascent (Kaur et al. 2022).",
    )
)
