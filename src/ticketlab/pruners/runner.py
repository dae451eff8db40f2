"""``ticketlab prune-init``: prune at initialization, then train the sparse net once.

A run directory like IMP's (hashed config, atomic files, resume inside training, refusal of a
different config): ``init.safetensors``, ``mask.safetensors``, ``final.safetensors``, ``metrics.json``
and ``summary.json`` with accuracy, early stopping and FLOPs (dense and sparse forward per example,
training total).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..flops import forward_flops, training_flops
from ..io import read_json, save_tensors, write_json
from ..runs import Experiment, RunConfig, load_mask, load_state, register, start_run, train_cached
from ..runs.models import trained_model
from ..seeding import generator
from ..sparse import density, layer_densities, ones_mask, parse_pattern, prunable_names
from ..sparse.distributions import DISTRIBUTIONS
from ..train import TrainConfig
from .prune import DEFAULT_ROUNDS, SCOPES, prune_at_init
from .registry import PRUNERS


@dataclass
class PruneInitConfig(RunConfig):
    """A pruning-at-initialization run: the pruner, density, scope and schedule, then training of the mask
    from the initial weights. The flags of ``ticketlab prune-init``."""

    model: str = field(default="lenet300", metadata={"help": "model name"})
    dataset: str = field(
        default="fashion-mnist",
        metadata={"help": "dataset name, or npz:PATH for your own arrays (see `ticketlab list`)"},
    )
    seed: int = field(default=0, metadata={"help": "seed for init, data order, scoring batches and ties"})
    method: str = field(default="snip", metadata={"help": "random, magnitude, snip, grasp, synflow or gap"})
    density: float = field(default=0.1, metadata={"help": "fraction of prunable weights kept"})
    scope: str = field(default="global", metadata={"help": f"one of {', '.join(SCOPES)}"})
    distribution: str = field(default="uniform", metadata={"help": f"layerwise scope: {', '.join(DISTRIBUTIONS)}"})
    prune_rounds: int | None = field(
        default=None, metadata={"help": "scoring rounds, exponential schedule (default: synflow 100, others 1)"}
    )
    prune_batches: int = field(default=1, metadata={"help": "labelled batches used by snip/grasp"})
    override: list[str] = field(
        default_factory=list,
        metadata={
            "help": "layerwise scope: fix a layer's density, NAME=D (repeatable), "
            "e.g. 5.weight=1.0 keeps lenet300's output layer dense"
        },
    )
    pattern: str | None = field(
        default=None,
        metadata={
            "omit_at_default": True,
            "help": "N:M semi-structured sparsity (e.g. 2:4): the N best of every M consecutive weights along the "
            "input dimension; --density must be N/M",
        },
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=60))

    def validate(self) -> None:
        self.train.validate()
        PRUNERS.get(self.method)
        if self.pattern is not None:
            parse_pattern(self.pattern, self.density)
        if self.scope not in SCOPES:
            raise UserError(f"unknown --scope {self.scope!r}; choose one of: {', '.join(SCOPES)}")
        if self.distribution not in DISTRIBUTIONS:
            raise UserError(f"unknown --distribution {self.distribution!r}; choose one of: {', '.join(DISTRIBUTIONS)}")
        if not 0 < self.density <= 1:
            raise UserError(f"--density must be in (0, 1], got {self.density}")
        if self.prune_rounds is not None and self.prune_rounds < 1:
            raise UserError(f"--prune-rounds must be >= 1, got {self.prune_rounds}")
        if self.prune_batches < 1:
            raise UserError(f"--prune-batches must be >= 1, got {self.prune_batches}")
        self.overrides()

    def overrides(self) -> dict[str, float]:
        out = {}
        for item in self.override:
            name, sep, value = item.partition("=")
            try:
                d = float(value)
            except ValueError:
                d = -1.0
            if not sep or not name or not 0 < d <= 1:
                raise UserError(f"--override expects NAME=DENSITY with DENSITY in (0, 1], got {item!r}")
            out[name] = d
        if out and self.scope != "layerwise":
            raise UserError("--override needs --scope layerwise")
        return out


def run_prune_init(
    cfg: PruneInitConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    """Score the initial weights, keep ``cfg.density`` of them, train the mask from the initial weights, in
    the run folder ``out`` (resumable; a finished run returns its summary at once). Returns the summary."""
    dev, data, model, config, run_dir = start_run(cfg, "prune-init", out, device, data_dir, quiet)
    if (run_dir / "summary.json").exists():
        return read_json(run_dir / "summary.json")
    names = prunable_names(model)
    if (run_dir / "init.safetensors").exists():
        model.load_state_dict(load_state(run_dir / "init.safetensors", model))
    else:
        save_tensors(run_dir / "init.safetensors", model.state_dict())
    if (run_dir / "mask.safetensors").exists():
        mask = load_mask(run_dir / "mask.safetensors", ones_mask(model, names))
    else:
        g = generator(cfg.seed, "prune-init")
        n = len(data.y_train)
        idx = torch.randperm(n, generator=g)[: cfg.prune_batches * cfg.train.batch_size].to(dev)
        batches = [(data.x_train[c], data.y_train[c]) for c in idx.split(cfg.train.batch_size)]
        mask = prune_at_init(
            model,
            names,
            cfg.method,
            cfg.density,
            batches,
            g,
            scope=cfg.scope,
            rounds=cfg.prune_rounds,
            distribution=cfg.distribution,
            overrides=cfg.overrides(),
            context={"data": data},
            pattern=cfg.pattern,
        )
        save_tensors(run_dir / "mask.safetensors", mask)
    total = cfg.train.total_iterations(len(data.y_train))
    # The run's one training, in the run folder itself (result.json beside summary.json).
    trained, _ = train_cached(
        run_dir,
        model,
        data,
        cfg.train,
        start=None,
        mask=mask,
        total=total,
        seed=cfg.seed,
        checkpoint_every=checkpoint_every,
        label=f"prune-init {cfg.method}",
        quiet=quiet,
        layout="result",
    )
    dense_fwd = sum(forward_flops(model, data.input_shape).values())
    sparse_fwd = sum(forward_flops(model, data.input_shape, mask).values())
    summary = {
        "config": config,
        "density": density(mask),
        "layer_densities": layer_densities(mask),
        **trained,
        "flops": {
            "forward_dense": dense_fwd,
            "forward_sparse": sparse_fwd,
            "training": training_flops(
                model, data.input_shape, total, cfg.train.batch_size, mask, cfg.train.passes_per_example()
            ),
            "training_dense": training_flops(model, data.input_shape, total, cfg.train.batch_size),
        },
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def format_prune_init(s: dict) -> str:
    """The table ``ticketlab prune-init`` prints: the pruner, scope and density, accuracy and FLOPs."""
    f = s["flops"]
    return (
        f"{s['config']['method']} ({s['config']['scope']}) on {s['config']['model']} / {s['config']['dataset']}: "
        f"density {100 * s['density']:.2f}%  test acc {s['test_acc']:.4f}  early stop "
        f"{s['early_stop_test_acc']:.4f} @ {s['early_stop_iter']}\n"
        f"forward FLOPs per example {f['forward_sparse']:.3e} (dense {f['forward_dense']:.3e}); "
        f"training FLOPs {f['training']:.3e} (dense {f['training_dense']:.3e})"
    )


__all__ = ["DEFAULT_ROUNDS", "PruneInitConfig", "format_prune_init", "run_prune_init"]


def prune_init_models(run: Path, summary: dict) -> list[dict]:
    return [trained_model(summary["config"]["method"], "prune-init", summary["density"], run / "final.safetensors")]


EXPERIMENT = register(
    Experiment(
        "prune-init",
        PruneInitConfig,
        run_prune_init,
        format_prune_init,
        headline=lambda s: {
            "density": s["density"],
            "test_acc": s["test_acc"],
            "early_stop_test_acc": s["early_stop_test_acc"],
        },
        models=prune_init_models,
        description="Score the initial weights, keep the top --density, train the sparse net.",
    )
)
