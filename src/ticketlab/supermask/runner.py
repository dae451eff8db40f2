"""``ticketlab supermask``: learn a mask over frozen weights and report its accuracy.

Untrained weights (Gaussian Glorot init, or the signed constant +/- layer std) for Zhou et al.'s
Bernoulli supermasks and edge-popup; trained weights from an IMP run's dense round for lottery jackpots and
hard-concrete robust tickets (with ``--adv pgd`` the gates learn on adversarial examples, Zheng et al.
2022). Results in a run directory with the same resume and refusal rules as IMP; ``ticket.safetensors``
holds the frozen weights times the final binary mask, as plain weights (what ``ticketlab robustness`` reads).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..io import read_json, save_tensors, write_json
from ..lottery import dense_parent
from ..runs import Experiment, RunConfig, default_run_dir, load_state, open_run_dir, prepare, register, train_cached
from ..runs.models import trained_model
from ..sparse import density, layer_densities, prunable_names
from ..train import TrainConfig, evaluate
from .learn import METHODS, WEIGHTS, attach, expected_density, hard_masks, set_eval_mode, signed_constant_
from .masks import L0Penalty


def _default_train() -> TrainConfig:
    return TrainConfig(optimizer="sgd", lr=100.0, momentum=0.9, batch_size=100, iterations=2000)


@dataclass
class SupermaskConfig(RunConfig):
    model: str = field(default="lenet300", metadata={"help": "model name"})
    dataset: str = field(
        default="fashion-mnist",
        metadata={"help": "dataset name, or npz:PATH for your own arrays (see `ticketlab list`)"},
    )
    seed: int = field(default=0, metadata={"help": "seed for the weights, the mask scores and sampling"})
    method: str = field(default="bernoulli", metadata={"help": f"one of {', '.join(METHODS)}"})
    weights: str = field(
        default="signed-constant",
        metadata={"help": f"frozen weights: {', '.join(WEIGHTS)} (jackpot: the pretrained ones)"},
    )
    density: float = field(default=0.5, metadata={"help": "fraction kept (edge-popup, jackpot, hard-concrete)"})
    init_logit: float = field(
        default=0.0, metadata={"help": "bernoulli: initial mask logit (0 = p 1/2); hard-concrete: initial log_alpha"}
    )
    hard_phase: float = field(
        default=0.0,
        metadata={
            "group": "hard-concrete",
            "help": "the last fraction of training learns through the binary ticket (straight-through)",
        },
    )
    l0_strength: float = field(
        default=100.0,
        metadata={"group": "hard-concrete", "help": "smoothed L0 penalty per unit of expected density above --density"},
    )
    eval_samples: int = field(default=10, metadata={"group": "bernoulli", "help": "sampled masks evaluated"})
    pretrained: str | None = field(
        default=None,
        metadata={"group": "jackpot", "help": "an IMP run directory; its dense trained weights are searched"},
    )
    train: TrainConfig = field(default_factory=_default_train)

    def validate(self) -> None:
        self.train.validate()
        if self.method not in METHODS:
            raise UserError(f"unknown supermask method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.weights not in WEIGHTS:
            raise UserError(f"unknown --weights {self.weights!r}; choose one of: {', '.join(WEIGHTS)}")
        if not 0 < self.density <= 1:
            raise UserError(f"--density must be in (0, 1], got {self.density}")
        if self.eval_samples < 1:
            raise UserError(f"--eval-samples must be >= 1, got {self.eval_samples}")
        if self.method in ("jackpot", "hard-concrete") and not self.pretrained:
            raise UserError(
                f"--method {self.method} needs --pretrained RUN (an IMP run directory with a finished round 0)"
            )
        if not 0 <= self.hard_phase < 1:
            raise UserError(f"--hard-phase must be in [0, 1), got {self.hard_phase}")
        if not self.l0_strength >= 0:
            raise UserError(f"--l0-strength must be >= 0, got {self.l0_strength}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        if self.method != "hard-concrete":
            d.pop("l0_strength")  # the runs made before hard-concrete keep their hash
        if not self.hard_phase:
            d.pop("hard_phase")  # and those made before the hard phase
        return d


PRESETS = {
    "zhou-supermask": {
        "method": "bernoulli",
        "weights": "signed-constant",
        "train": {"optimizer": "sgd", "lr": 100.0, "momentum": 0.9},
    },
    "edge-popup": {
        "method": "edge-popup",
        "weights": "signed-constant",
        "density": 0.5,
        "train": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine"},
    },
    "jackpot": {
        "method": "jackpot",
        "density": 0.1,
        "train": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "lr_schedule": "cosine"},
    },
    # ticketlab's choices for the robust tickets of Zheng et al. (their settings are for BERT): gates start
    # open (log_alpha 3: P(z > 0) = 0.99), Adam on log_alpha, PGD-10 examples at eps 0.1 (pixel units)
    "robust-ticket": {
        "method": "hard-concrete",
        "density": 0.1,
        "init_logit": 3.0,
        "l0_strength": 100.0,
        "train": {"optimizer": "adam", "lr": 0.05, "adv": "pgd", "adv_eps": 0.1},
    },
}


def run_supermask(
    cfg: SupermaskConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    """Learn the mask (or resume), evaluate it, and return ``summary.json``'s content."""
    dev, data, model = prepare(cfg, device, data_dir, quiet)
    names = prunable_names(model)
    config = cfg.to_dict()
    if cfg.method in ("jackpot", "hard-concrete"):
        src = Path(cfg.pretrained)
        src_cfg = read_json(src / "config.json") if (src / "config.json").exists() else None
        if not src_cfg or src_cfg.get("kind") != "imp":
            raise UserError(f"--pretrained {src} is not an IMP run directory; give one made by `ticketlab imp`")
        if (src_cfg["config"]["model"], src_cfg["config"]["dataset"]) != (cfg.model, cfg.dataset):
            raise UserError(
                f"--pretrained {src} trained {src_cfg['config']['model']} on "
                f"{src_cfg['config']['dataset']}; use the same --model and --dataset"
            )
        model.load_state_dict(load_state(src / "round_00" / "final.safetensors", model))
        config["pretrained"] = str(src.resolve())
    elif cfg.weights == "signed-constant":
        signed_constant_(model, names)
    run_dir = open_run_dir(out if out is not None else default_run_dir("supermask", config), "supermask", config)
    if (run_dir / "summary.json").exists():
        return read_json(run_dir / "summary.json")
    data = data.to(dev)
    frozen = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modules = attach(model, names, cfg.method, density=cfg.density, seed=cfg.seed, init_logit=cfg.init_logit)
    if not quiet:
        print(f"run directory: {run_dir}", file=sys.stderr)
    untrained = evaluate(model, data.x_test, data.y_test)[1]
    # The engine's cached unit, in the run folder itself: a finished training is loaded back, not redone.
    total = cfg.train.total_iterations(len(data.y_train))
    trained, _ = train_cached(
        run_dir,
        model,
        data,
        cfg.train,
        start=None,
        total=total,
        seed=cfg.seed,
        checkpoint_every=checkpoint_every,
        label=f"supermask {cfg.method}",
        quiet=quiet,
        reload_final=True,
        layout="result",
        sparse=(
            lambda opt: L0Penalty(
                opt,
                list(modules.values()),
                cfg.l0_strength,
                cfg.density,
                hard_from=(int(round((1 - cfg.hard_phase) * total)) if cfg.hard_phase else None),
            )
        )
        if cfg.method == "hard-concrete"
        else None,
    )
    summary = {
        "config": config,
        "method": cfg.method,
        "untrained_mask_test_acc": untrained,
        "expected_density": expected_density(modules),
        **trained,
    }
    masks = hard_masks(modules)
    if cfg.method == "hard-concrete":  # the ticket is the binary mask; training evaluated the soft gates
        summary["gate_test_acc"] = summary["test_acc"]
        set_eval_mode(modules, "binary")
        summary["test_acc"] = evaluate(model, data.x_test, data.y_test)[1]
        set_eval_mode(modules, "gate")
    summary["density"] = density(masks)
    summary["layer_densities"] = layer_densities(masks)
    if cfg.method == "bernoulli":
        set_eval_mode(modules, "expected")
        summary["expected_mask_test_acc"] = evaluate(model, data.x_test, data.y_test)[1]
        set_eval_mode(modules, "round")
        summary["rounded_mask_test_acc"] = evaluate(model, data.x_test, data.y_test)[1]
        set_eval_mode(modules, "sample")
        accs = [evaluate(model, data.x_test, data.y_test)[1] for _ in range(cfg.eval_samples)]
        summary["sampled_mask_test_acc"] = {
            "mean": statistics.mean(accs),
            "min": min(accs),
            "max": max(accs),
            "samples": len(accs),
        }
        set_eval_mode(modules, "expected")
    save_tensors(run_dir / "mask.safetensors", masks)
    save_tensors(
        run_dir / "ticket.safetensors", {k: v * masks[k].to(v.dtype) if k in masks else v for k, v in frozen.items()}
    )
    write_json(run_dir / "summary.json", summary)
    return summary


def format_summary(s: dict) -> str:
    lines = [
        f"supermask ({s['method']}) on {s['config']['model']} / {s['config']['dataset']}: "
        f"density {100 * s['density']:.2f}% (expected {100 * s['expected_density']:.2f}%)",
        f"  test accuracy before learning the mask: {s['untrained_mask_test_acc']:.4f}",
        f"  test accuracy of the learned mask: {s['test_acc']:.4f}",
    ]
    if "gate_test_acc" in s:
        lines.append(f"  soft gates (training's evaluation): {s['gate_test_acc']:.4f}")
    if "expected_mask_test_acc" in s:
        sm = s["sampled_mask_test_acc"]
        lines += [
            f"  expected mask sigmoid(s): {s['expected_mask_test_acc']:.4f}",
            f"  rounded mask (p > 1/2):   {s['rounded_mask_test_acc']:.4f}",
            f"  sampled masks: mean {sm['mean']:.4f} (min {sm['min']:.4f}, max {sm['max']:.4f}, "
            f"{sm['samples']} samples)",
        ]
    return "\n".join(lines)


def supermask_models(run: Path, summary: dict) -> list[dict]:
    """The ticket (mask times its weights), after its pretrained dense parent when it has one."""
    c = summary["config"]
    parent = [dense_parent(c["pretrained"])] if c.get("pretrained") else []
    return parent + [
        trained_model(f"{c['method']} ticket", c["method"], summary["density"], run / "ticket.safetensors")
    ]


EXPERIMENT = register(
    Experiment(
        "supermask",
        SupermaskConfig,
        run_supermask,
        format_summary,
        presets=PRESETS,
        headline=lambda s: {
            "density": s["density"],
            "test_acc": s["test_acc"],
            "untrained_mask_test_acc": s["untrained_mask_test_acc"],
        },
        models=supermask_models,
        description="Bernoulli supermasks (Zhou et al.), edge-popup (Ramanujan et al.) on untrained weights, or "
        "lottery jackpots (mask search on trained weights).",
    )
)
