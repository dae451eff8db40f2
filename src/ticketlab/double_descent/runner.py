"""``ticketlab double-descent``: test accuracy and learning distance over a fine grid of densities (He et al. 2022).

One IMP run with a small pruning rate down to ``--min-density`` gives the iterative curve (each round a
grid point); one-shot masks from the dense net at the same per-layer densities give the one-shot curve.
Both retrain with ``--retrain``: ``rewind`` (from the initial weights, the lottery-ticket setting) or
``finetune`` (from the dense trained weights). Training labels can carry symmetric noise
(``--label-noise``), which is what exposes the second descent. Each point records test accuracy and the
learning distance ||w_final - w_start||_2; ``double_descent.png`` plots both against density.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..flops import forward_flops
from ..io import write_json
from ..lottery import IMPConfig, IMPRun
from ..plotting import density_axis, plt, save_figure
from ..runs import (
    Experiment,
    RunConfig,
    default_run_dir,
    load_state,
    open_run_dir,
    register,
)
from ..seeding import generator
from ..sparse import density, layerwise_prune, magnitude_scores, ones_mask
from ..train import TrainConfig

KIND = "double-descent"
LEGACY_KINDS = ("sweep",)  # the command's name before the general grid runner took it
MODES = ("imp", "one-shot")
RETRAIN = ("rewind", "finetune")


@dataclass
class DoubleDescentConfig(RunConfig):
    model: str = field(default="lenet300", metadata={"help": "model name"})
    dataset: str = field(
        default="fashion-mnist",
        metadata={"help": "dataset name, or npz:PATH for your own arrays (see `ticketlab list`)"},
    )
    seed: int = field(default=0, metadata={"help": "seed"})
    label_noise: float = field(default=0.2, metadata={"help": "fraction of noisy training labels"})
    rate: float = field(default=0.2, metadata={"help": "IMP pruning rate per round: the grid's step"})
    min_density: float = field(default=0.01, metadata={"help": "the sweep's sparsest point"})
    retrain: str = field(default="rewind", metadata={"help": f"one of {', '.join(RETRAIN)}"})
    imp_only: bool = field(default=False, metadata={"help": "skip the one-shot curve"})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=60))

    def validate(self) -> None:
        self.train.validate()
        if not 0 <= self.label_noise < 1:
            raise UserError(f"--label-noise must be in [0, 1), got {self.label_noise}")
        if not 0 < self.rate < 1:
            raise UserError(f"--rate must be in (0, 1), got {self.rate}")
        if not 0 < self.min_density < 1:
            raise UserError(f"--min-density must be in (0, 1), got {self.min_density}")
        if self.retrain not in RETRAIN:
            raise UserError(f"unknown --retrain {self.retrain!r}; choose one of: {', '.join(RETRAIN)}")


def run_double_descent(
    cfg: DoubleDescentConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    cfg.validate()
    config = cfg.to_dict()
    if out is None:
        out = default_run_dir(KIND, config, legacy_kinds=LEGACY_KINDS)
    run_dir = open_run_dir(out, KIND, config, legacy_kinds=LEGACY_KINDS)
    if not quiet:
        print(f"run directory: {run_dir}", file=sys.stderr)
    imp_cfg = IMPConfig(
        model=cfg.model,
        dataset=cfg.dataset,
        seed=cfg.seed,
        label_noise=cfg.label_noise,
        train=cfg.train,
        rate=cfg.rate,
        target_density=cfg.min_density,
        rewind="0" if cfg.retrain == "rewind" else "none",
    )
    run = IMPRun(
        imp_cfg, run_dir / "imp", device=device, data_dir=data_dir, quiet=quiet, checkpoint_every=checkpoint_every
    )
    imp = run.run()

    def point(r: dict) -> dict:
        keys = ("density", "test_acc", "early_stop_test_acc", "learning_distance")
        return {k: r[k] for k in keys} | {"training_flops": r["flops"]["training"]}

    result = {"config": config, "imp": [point(r) for r in imp["rounds"]], "one-shot": []}
    if not cfg.imp_only:
        init = load_state(run.dir / "init.safetensors", run.model)
        dense = load_state(run.dir / "round_00" / "final.safetensors", run.model)
        ones = ones_mask(run.model, run.names)
        result["one-shot"].append(result["imp"][0])
        for r in imp["rounds"][1:]:
            k = r["round"]
            mask = layerwise_prune(
                magnitude_scores(dense, run.names), ones, r["layer_densities"], generator(cfg.seed, "sweep-one-shot", k)
            )
            start = init if cfg.retrain == "rewind" else dense
            s, _ = run.train_one(run_dir / "one-shot" / f"round_{k:02d}", mask, start, 0, f"one-shot {k}")
            final = load_state(run_dir / "one-shot" / f"round_{k:02d}" / "final.safetensors", run.model)
            dist = float(torch.sqrt(sum(((final[n] - start[n] * mask[n]) ** 2).sum() for n in run.names)))
            fwd = sum(forward_flops(run.model, run.data.input_shape, mask).values())
            result["one-shot"].append(
                {
                    "density": density(mask),
                    "test_acc": s["test_acc"],
                    "early_stop_test_acc": s["early_stop_test_acc"],
                    "learning_distance": dist,
                    "training_flops": 3 * fwd * cfg.train.batch_size * run.total,
                }
            )
    write_json(run_dir / "summary.json", result)
    plot_double_descent(result, run_dir / "double_descent.png")
    result["dir"] = str(run_dir)
    return result


def plot_double_descent(result: dict, path: Path) -> None:
    c = result["config"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True)
    for mode in MODES:
        pts = result.get(mode) or []
        if pts:
            x = [100 * p["density"] for p in pts]
            a1.plot(x, [p["test_acc"] for p in pts], "o-", markersize=3, label=mode)
            a2.plot(x, [p["learning_distance"] for p in pts], "o-", markersize=3, label=mode)
    density_axis(a2, [100 * p["density"] for p in result["imp"]])
    a1.set_ylabel("test accuracy")
    a2.set_ylabel("learning distance ||w_f - w_0||")
    a1.set_title(f"{c['model']} on {c['dataset']}, {100 * c['label_noise']:.0f}% label noise, retrain: {c['retrain']}")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def format_double_descent(result: dict) -> str:
    lines = [
        f"{'density':>8}  {'train FLOPs':>11}  {'imp acc':>8} {'distance':>9}  {'one-shot acc':>12} {'distance':>9}"
    ]
    one = {round(p["density"], 6): p for p in result["one-shot"]}
    for p in result["imp"]:
        o = one.get(round(p["density"], 6))
        tail = f"  {o['test_acc']:>12.4f} {o['learning_distance']:>9.3f}" if o else ""
        lines.append(
            f"{100 * p['density']:>7.2f}%  {p['training_flops']:>11.3e}  {p['test_acc']:>8.4f} "
            f"{p['learning_distance']:>9.3f}{tail}"
        )
    return "\n".join(lines)


__all__ = ["MODES", "RETRAIN", "DoubleDescentConfig", "format_double_descent", "run_double_descent"]


def double_descent_headline(s: dict) -> dict:
    """Accuracy at the sparsest point and the best accuracy over the grid, per curve."""
    out = {}
    for mode in MODES:
        pts = s.get(mode) or []
        if pts:
            key = mode.replace("-", "_")
            out |= {
                f"{key}_min_density": pts[-1]["density"],
                f"{key}_test_acc_at_min": pts[-1]["test_acc"],
                f"{key}_best_test_acc": max(p["test_acc"] for p in pts),
            }
    return out


EXPERIMENT = register(
    Experiment(
        KIND,
        DoubleDescentConfig,
        run_double_descent,
        format_double_descent,
        double_descent_headline,
        legacy_kinds=LEGACY_KINDS,
        description="IMP at a small rate down to --min-density, and one-shot masks at the same densities, optionally "
        "with label noise (He et al. 2022).",
    )
)
