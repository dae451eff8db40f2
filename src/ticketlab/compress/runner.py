"""``ticketlab compress``: prune a trained dense network with any pruner, one-shot or gradually, while
fine-tuning it - the setting of GAP (O'Brien Weiss et al. 2022: compress a trained model, then ask whether
it resists attacks transferred from its uncompressed parent) and of CARDs' baselines (fine-tuning after
one-shot pruning, gradual magnitude pruning).

The dense parent is an IMP run's round 0 (``--source RUN``; ``ticketlab imp --rounds 0`` trains just
that). Results in a run folder (hashed config, resume, refusal): ``mask.safetensors``,
``final.safetensors``, ``result.json`` / ``metrics.json`` and ``summary.json`` with the parent's and the
compressed net's accuracy, each step's iteration and density, and FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..flops import forward_flops
from ..io import read_json, save_tensors, write_json
from ..lottery import dense_parent, imp_parent
from ..pruners import PRUNERS
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
from ..sparse import density, layer_densities, ones_mask, parse_pattern, prunable_names
from ..sparse.distributions import DISTRIBUTIONS
from ..train import TrainConfig
from .gradual import SCHEDULES, GradualPruner, step_iterations


@dataclass
class CompressConfig(RunConfig):
    model: str = field(default="lenet300", metadata={"help": "model name (that of --source)"})
    dataset: str = field(default="fashion-mnist", metadata={"help": "dataset name or npz:PATH (that of --source)"})
    seed: int = field(default=0, metadata={"help": "seed for data order, scoring batches, attacks and ties"})
    source: str | None = field(
        default=None, metadata={"help": "an IMP run directory: its trained dense round 0 is compressed"}
    )
    method: str = field(
        default="magnitude",
        metadata={"help": "pruner scoring each step (see `ticketlab list`): magnitude, random, snip, gap, ..."},
    )
    density: float = field(default=0.1, metadata={"help": "fraction of prunable weights kept at the end"})
    steps: int = field(default=1, metadata={"help": "pruning steps (1: one-shot, then fine-tune)"})
    schedule: str = field(
        default="cubic",
        metadata={"help": f"density path over the steps: {', '.join(SCHEDULES)} (cubic + magnitude = GMP)"},
    )
    prune_end: float = field(
        default=0.5, metadata={"help": "fraction of the fine-tuning by which the last step prunes"}
    )
    scope: str = field(default="global", metadata={"help": "global or layerwise"})
    distribution: str = field(default="uniform", metadata={"help": f"layerwise scope: {', '.join(DISTRIBUTIONS)}"})
    prune_batches: int = field(default=1, metadata={"help": "labelled batches each scoring step uses"})
    gap_eps: float = field(default=0.1, metadata={"help": "gap: PGD eps (pixel units) of its adversarial inputs"})
    gap_steps: int = field(default=10, metadata={"help": "gap: PGD steps"})
    pattern: str | None = field(
        default=None,
        metadata={
            "omit_at_default": True,
            "help": "N:M semi-structured sparsity (e.g. 2:4): every step keeps the best max(N, round(M x density)) of "
            "each M consecutive weights along the input dimension, the last N; --density must be N/M",
        },
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=60, iterations=5000))

    def validate(self) -> None:
        self.train.validate()
        PRUNERS.get(self.method)
        if self.pattern is not None:
            parse_pattern(self.pattern, self.density)
        if not self.source:
            raise UserError("compress needs --source RUN (an IMP run directory with a trained round 0)")
        if not 0 < self.density <= 1:
            raise UserError(f"--density must be in (0, 1], got {self.density}")
        if self.steps < 1:
            raise UserError(f"--steps must be >= 1, got {self.steps}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown --schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if not 0 <= self.prune_end <= 1:
            raise UserError(f"--prune-end must be in [0, 1], got {self.prune_end}")
        if self.scope not in ("global", "layerwise"):
            raise UserError(f"unknown --scope {self.scope!r}; choose one of: global, layerwise")
        if self.distribution not in DISTRIBUTIONS:
            raise UserError(f"unknown --distribution {self.distribution!r}; choose one of: {', '.join(DISTRIBUTIONS)}")
        if self.prune_batches < 1:
            raise UserError(f"--prune-batches must be >= 1, got {self.prune_batches}")
        if not self.gap_eps >= 0 or self.gap_steps < 1:
            raise UserError(f"--gap-eps must be >= 0 and --gap-steps >= 1, got {self.gap_eps}, {self.gap_steps}")


def source_weights(cfg: CompressConfig) -> tuple[Path, dict]:
    """(the dense parent's weights file, the source run's summary), refused unless it fits ``cfg``."""
    return imp_parent(cfg.source, cfg.model, cfg.dataset)


def check_compress(cfg: CompressConfig, model, data) -> tuple[Path, dict]:
    """Refusals needing the data: the source run, and a schedule that fits the training (before any folder).
    Returns ``source_weights(cfg)``."""
    source = source_weights(cfg)
    step_iterations(cfg.train.total_iterations(len(data.y_train)), cfg.steps, cfg.prune_end)
    return source


def run_compress(
    cfg: CompressConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    dev, data, model, config, run_dir, (weights, src_summary) = start_derived_run(
        cfg, "compress", out, device, data_dir, quiet, check_compress
    )
    if (run_dir / "summary.json").exists():
        return read_json(run_dir / "summary.json")
    dense = load_state(weights, model)
    names = prunable_names(model)
    total = cfg.train.total_iterations(len(data.y_train))
    bs = cfg.train.batch_size

    def batches(k: int) -> list:
        idx = torch.randperm(len(data.y_train), generator=generator(cfg.seed, "compress-batches", k))
        idx = idx[: cfg.prune_batches * bs].to(dev)
        return [(data.x_train[c], data.y_train[c]) for c in idx.split(bs)]

    def pruner(opt):
        return GradualPruner(
            model,
            opt,
            names,
            PRUNERS.get(cfg.method),
            final_density=cfg.density,
            total=total,
            steps=cfg.steps,
            schedule=cfg.schedule,
            end_fraction=cfg.prune_end,
            scope=cfg.scope,
            distribution=cfg.distribution,
            batches=batches,
            seed=cfg.seed,
            context={"data": data, "eps": cfg.gap_eps, "steps": cfg.gap_steps},
            input_shape=data.input_shape,
            passes_per_example=cfg.train.passes_per_example(),
            after_step=False,
            pattern=parse_pattern(cfg.pattern) if cfg.pattern else None,
        )  # ticketlab's optimizers are elementwise (see MaskEnforcer)

    def record(result, u: GradualPruner) -> dict:
        save_tensors(run_dir / "mask.safetensors", {n: m.cpu() for n, m in u.mask.items()})
        return {"steps": u.log, "training_flops": u.flops_per_example * bs}

    trained, _ = train_cached(
        run_dir,
        model,
        data,
        cfg.train,
        start=dense,
        total=total,
        seed=cfg.seed,
        checkpoint_every=checkpoint_every,
        label=f"compress {cfg.method}",
        quiet=quiet,
        sparse=pruner,
        record=record,
        reload_final=True,
        layout="result",
    )
    mask = load_mask(run_dir / "mask.safetensors", ones_mask(model, names))
    dense_fwd = sum(forward_flops(model, data.input_shape).values())
    summary = {
        "config": config,
        "dense_test_acc": src_summary["rounds"][0]["test_acc"],
        "density": density(mask),
        "layer_densities": layer_densities(mask),
        **trained,
        "flops": {
            "forward_dense": dense_fwd,
            "forward_sparse": sum(forward_flops(model, data.input_shape, mask).values()),
            "training": trained["training_flops"],
            "training_dense": cfg.train.passes_per_example() * dense_fwd * bs * total,
        },
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def format_compress(s: dict) -> str:
    c, f = s["config"], s["flops"]
    how = "one-shot" if c["steps"] == 1 else f"{c['steps']} {c['schedule']} steps"
    return (
        f"{c['method']} ({how}, {c['scope']}) on {c['model']} / {c['dataset']}: density {100 * s['density']:.2f}%"
        f"  test acc {s['test_acc']:.4f} (dense parent {s['dense_test_acc']:.4f})  early stop "
        f"{s['early_stop_test_acc']:.4f} @ {s['early_stop_iter']}\n"
        f"forward FLOPs per example {f['forward_sparse']:.3e} (dense {f['forward_dense']:.3e}); "
        f"fine-tuning FLOPs {f['training']:.3e} (dense {f['training_dense']:.3e})"
    )


def compress_models(run: Path, summary: dict) -> list[dict]:
    """The dense parent and the compressed net."""
    c = summary["config"]
    return [
        dense_parent(c["source"]),
        trained_model(
            f"{c['method']} ({c['steps']} steps)", c["method"], summary["density"], run / "final.safetensors"
        ),
    ]


EXPERIMENT = register(
    Experiment(
        "compress",
        CompressConfig,
        run_compress,
        format_compress,
        check=check_compress,
        headline=lambda s: {"density": s["density"], "test_acc": s["test_acc"], "dense_test_acc": s["dense_test_acc"]},
        models=compress_models,
        description="Compress an IMP run's trained dense round 0 with a pruner (magnitude, random, snip, gap, ...): "
        "one-shot and fine-tune, or in --steps greedy steps on a schedule (cubic: Zhu & Gupta's GMP).",
    )
)
