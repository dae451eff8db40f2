"""``ticketlab dst``: dynamic sparse training on ticketlab's models and datasets, single runs or ensembles.

A run directory like the other runners' (hashed config, atomic files, resume inside every training,
refusal of a different config). ``--ensemble M`` trains M independent runs from derived seeds (FreeTickets'
DST ensemble; run i uses seed ``derive_seed(seed, "member", i)`` for i > 0, the run's seed for i = 0);
``--method edst`` gets its members from one run. Layout::

    RUN/config.json, summary.json
    RUN/train_<i>/checkpoint.safetensors (while training), final.safetensors, mask.safetensors,
                  metrics.json, result.json, member_<m>.safetensors + member_<m>_mask.safetensors (edst),
                  dense.safetensors (acdc: the end of its last dense phase)

The summary holds, per member and for the ensemble (softmax outputs averaged): test accuracy, NLL and
expected calibration error; density; training FLOPs (as the steps happened: sparse steps, RigL's dense
gradients, AC/DC's dense phases, CTRE's similarity passes) and inference FLOPs, next to dense training's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..flops import forward_flops
from ..io import read_json, save_tensors, write_json
from ..metrics import classification_metrics, ensemble_probs, predict_probs
from ..models import build_model
from ..runs import Experiment, RunConfig, load_mask, load_state, lockstep, register, start_run, train_cached
from ..runs.models import trained_model
from ..seeding import derive_seed, generator
from ..sparse import density, layer_densities, ones_mask, parse_pattern
from ..train import TrainConfig
from .acdc import ACDCPhases
from .edst import edst_phases
from .registry import SPARSE_TRAINERS, make


@dataclass
class DSTConfig(RunConfig):
    model: str = field(default="lenet300", metadata={"help": "model name"})
    dataset: str = field(default="fashion-mnist", metadata={"help": "dataset name"})
    seed: int = field(default=0, metadata={"help": "seed for init, masks, data order and growth"})
    method: str = field(
        default="rigl", metadata={"help": "static, set, rigl, snfs, sparsevlr, ctre, acdc, edst or gmp"}
    )
    density: float = field(default=0.1, metadata={"help": "fraction of prunable weights kept"})
    distribution: str | None = field(
        default=None, metadata={"help": "uniform, er or erk (default erk); acdc also global (its default)"}
    )
    delta_t: int | None = field(default=None, metadata={"help": "steps between mask updates (default 100)"})
    drop_fraction: float | None = field(
        default=None, metadata={"help": "fraction of active weights replaced per update (default 0.3; edst 0.5)"}
    )
    drop_decay: str | None = field(
        default=None, metadata={"help": "cosine, linear or constant (default cosine; edst constant)"}
    )
    end_fraction: float | None = field(
        default=None, metadata={"help": "stop updating the mask after this fraction of training (default 0.75; edst 1)"}
    )
    erk_power_scale: float = field(
        default=1.0,
        metadata={
            "omit_at_default": True,
            "help": "RigL's erk_power_scale: the ER/ERK proportion raised to this power (1: the paper's; 0: uniform)",
        },
    )
    step_on_update: str = field(
        default="auto",
        metadata={
            "omit_at_default": True,
            "help": "apply the optimizer step on a mask-update iteration: skip (RigL's reference code), apply, or "
            "auto (the method's: rigl skips; set, ctre, sparsevlr and the rest apply)",
        },
    )
    pattern: str | None = field(
        default=None,
        metadata={
            "omit_at_default": True,
            "help": "N:M semi-structured masks (e.g. 2:4) for static, set, rigl and sparsevlr: N of every M "
            "consecutive inputs, kept through every drop and grow; --density N/M, --distribution uniform",
        },
    )
    gmp_start: float = field(
        default=0.1,
        metadata={
            "help": "gmp: fraction of training before the first pruning step (it ends at --end-fraction, default 0.75)"
        },
    )
    ensemble: int = field(default=1, metadata={"help": "independent runs averaged as an ensemble (FreeTickets)"})
    members: int = field(default=3, metadata={"help": "edst: refinement phases = ensemble members"})
    explore_fraction: float = field(default=1 / 3, metadata={"help": "edst: exploration share of training"})
    large_drop: float = field(default=0.8, metadata={"help": "edst: drop fraction opening each refinement phase"})
    edst_grow: str = field(default="random", metadata={"help": "edst: random or gradient growth"})
    lr_drop: float = field(
        default=0.1, metadata={"help": "edst: lr factor in each phase's first half (squared in the second)"}
    )
    ctre_mode: str = field(default="sim", metadata={"help": "ctre: sim or seq"})
    ctre_probe: int = field(
        default=1000,
        metadata={"help": "ctre: training examples whose activations score growth (0: the update step's batch)"},
    )
    ctre_patience: int = field(
        default=5, metadata={"help": "ctre seq: evaluations without improvement before random growth"}
    )
    acdc_warmup: float = field(default=0.1, metadata={"help": "acdc: dense warm-up share of training"})
    acdc_phase: float = field(default=0.05, metadata={"help": "acdc: length of each sparse/dense phase"})
    acdc_final: float = field(default=0.1, metadata={"help": "acdc: final sparse phase share"})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=60))

    def validate(self) -> None:
        self.train.validate()
        SPARSE_TRAINERS.get(self.method)
        if not 0 < self.density <= 1:
            raise UserError(f"--density must be in (0, 1], got {self.density}")
        if self.ensemble < 1:
            raise UserError(f"--ensemble must be >= 1, got {self.ensemble}")
        if self.method == "edst":
            if self.ensemble != 1:
                raise UserError("edst is an ensemble from one run: set its size with --members, not --ensemble")
            if self.train.lr_schedule != "constant" or self.train.warmup:
                raise UserError("edst restarts the learning rate itself: use --lr-schedule constant, no --warmup")
        if self.method == "sparsevlr" and self.train.certified == "none":
            raise UserError(
                "sparsevlr trains on a verified-robust loss: give --certified crown-ibp (or ibp) --cert-eps E"
            )
        if self.method == "gmp" and not 0 <= self.gmp_start < (self.end_fraction or 0.75) <= 1:
            raise UserError(
                f"gmp prunes from --gmp-start to --end-fraction: need 0 <= {self.gmp_start} < "
                f"{self.end_fraction or 0.75} <= 1"
            )
        if self.pattern is not None:
            from .base import PATTERN_METHODS

            n, m = parse_pattern(self.pattern)
            if (
                self.method not in PATTERN_METHODS
                or abs(self.density - n / m) > 1e-9
                or (self.distribution or "uniform") != "uniform"
            ):
                raise UserError(
                    f"--pattern {self.pattern} takes {', '.join(PATTERN_METHODS)} with --density "
                    f"{n / m:g} and --distribution uniform"
                )
        if self.step_on_update not in ("auto", "skip", "apply"):
            raise UserError(f"unknown --step-on-update {self.step_on_update!r}; choose one of: auto, skip, apply")
        if not self.erk_power_scale >= 0:
            raise UserError(f"--erk-power-scale must be >= 0, got {self.erk_power_scale}")
        if self.ctre_probe < 0:
            raise UserError(f"--ctre-probe must be >= 0, got {self.ctre_probe}")

    def resolved_step_on_update(self) -> bool:
        if self.step_on_update == "auto":
            return SPARSE_TRAINERS.get(self.method).step_on_update
        return self.step_on_update == "apply"

    def to_dict(self) -> dict:
        """As every config (settings at their defaults left out), with two rules of their own: gmp_start only
        for gmp, and a rigl run always records whether it skips the optimizer step on mask updates - rigl's
        default changed to the reference's, so an older rigl folder is refused rather than silently reused."""
        d = super().to_dict()
        if self.method != "gmp":
            d.pop("gmp_start")
        if self.method == "rigl":
            d["step_on_update"] = "apply" if self.resolved_step_on_update() else "skip"
        return d

    def trainer_kwargs(self) -> dict:
        """Keyword arguments of the method's SparseTrainer (beyond model, optimizer and total steps)."""
        kw = dict(
            density=self.density,
            distribution=self.distribution,
            delta_t=self.delta_t,
            drop_fraction=self.drop_fraction,
            drop_decay=self.drop_decay,
            end_fraction=self.end_fraction,
            erk_power_scale=self.erk_power_scale,
            step_on_update=self.resolved_step_on_update(),
            pattern=parse_pattern(self.pattern) if self.pattern else None,
        )
        if self.method == "edst":
            kw |= dict(
                members=self.members,
                explore_fraction=self.explore_fraction,
                large_drop=self.large_drop,
                grow=self.edst_grow,
                lr_drop=self.lr_drop,
            )
        elif self.method == "ctre":
            kw |= dict(mode=self.ctre_mode, patience=self.ctre_patience)
        elif self.method == "gmp":
            kw |= dict(start_fraction=self.gmp_start)
        elif self.method == "acdc":
            kw |= dict(warmup_fraction=self.acdc_warmup, phase_fraction=self.acdc_phase, final_fraction=self.acdc_final)
        return kw


def normalize_dst(stored: dict) -> dict:
    """A stored dst config in today's schema: a rigl run made before rigl followed its reference code's
    update rule applied the optimizer step on mask updates, so it resumes under ``--step-on-update apply``."""
    if stored.get("method") == "rigl" and "step_on_update" not in stored:
        return {**stored, "step_on_update": "apply"}
    return stored


def member_seed(seed: int, i: int) -> int:
    return seed if i == 0 else derive_seed(seed, "member", i)


def _masked_state(model, trainer) -> dict[str, torch.Tensor]:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if trainer.sparse_phase():
        for n, m in trainer.mask.items():
            state[n] = state[n] * m.to(state[n].dtype)
    return state


def _train_one(
    where: Path, cfg: DSTConfig, data, dev, seed: int, total: int, *, quiet: bool, checkpoint_every: int, label: str
) -> dict:
    """One DST training in ``where`` (resumable); returns its result.json."""
    if (where / "result.json").exists():  # before building the model: a finished training costs nothing
        return read_json(where / "result.json")
    model = build_model(cfg.model, data.input_shape, data.num_classes, seed=seed).to(dev)
    # after_step=False: the trainer's optimizers are elementwise, so masked gradients and cleared state keep
    # pruned weights exactly zero without a second pass (the tests check every weight after every step).
    kw = cfg.trainer_kwargs() | {
        "total_steps": total,
        "seed": seed,
        "input_shape": data.input_shape,
        "after_step": False,
        "attack_passes": cfg.train.passes_per_example() - 3,
    }
    if cfg.method == "ctre" and cfg.ctre_probe:
        n = min(cfg.ctre_probe, len(data.y_train))
        kw["probe"] = data.x_train[
            torch.randperm(len(data.y_train), generator=generator(seed, "ctre-probe"))[:n].to(data.x_train.device)
        ]
    holder = {}

    def factory(opt):  # the trainer is kept for the snapshots taken during training
        holder["t"] = make(cfg.method, model, opt, **kw)
        return holder["t"]

    snaps: dict[int, str] = {}
    if cfg.method == "edst":
        _, ends = edst_phases(total, cfg.members, cfg.explore_fraction)
        snaps = {t: f"member_{m}" for m, t in enumerate(ends)}
    elif cfg.method == "acdc":
        t_dense = ACDCPhases(total, cfg.acdc_warmup, cfg.acdc_phase, cfg.acdc_final).dense_snapshot_step
        if t_dense is not None:
            snaps = {t_dense: "dense"}

    def on_snapshot(it: int, m) -> None:
        t = holder["t"]
        save_tensors(where / f"{snaps[it]}.safetensors", _masked_state(m, t))
        if snaps[it] != "dense":
            save_tensors(where / f"{snaps[it]}_mask.safetensors", t.mask)

    def record(result, t) -> dict:
        save_tensors(where / "mask.safetensors", t.mask)
        return {
            "seed": seed,
            "distribution": t.distribution,
            "density": density(t.mask),
            "layer_densities": layer_densities(t.mask),
            "flops": {
                "training": t.training_flops(cfg.train.batch_size),
                "forward": t.forward_flops(),
                "forward_dense": t.forward_flops(dense=True),
            },
        }

    summary, _ = train_cached(
        where,
        model,
        data,
        cfg.train,
        start=None,
        total=total,
        seed=seed,
        sparse=factory,
        checkpoint_every=checkpoint_every,
        label=label,
        quiet=quiet,
        snapshot_at=list(snaps),
        on_snapshot=on_snapshot if snaps else None,
        record=record,
        layout="result",
    )
    return summary


def run_dst(
    cfg: DSTConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    dev, data, model, config, run_dir = start_run(cfg, "dst", out, device, data_dir, quiet, normalize=normalize_dst)
    if (run_dir / "summary.json").exists():
        return read_json(run_dir / "summary.json")
    total = cfg.train.total_iterations(len(data.y_train))
    # the ensemble's trainings are independent: handed in together, they share a vectorised pack (each its own
    # model, mask, drop and grow) under --replicates vectorized
    runs = lockstep.together(
        [
            lambda i=i: _train_one(
                run_dir / f"train_{i}",
                cfg,
                data,
                dev,
                member_seed(cfg.seed, i),
                total,
                quiet=quiet,
                checkpoint_every=checkpoint_every,
                label=f"dst {cfg.method}" + (f" {i + 1}/{cfg.ensemble}" if cfg.ensemble > 1 else ""),
            )
            for i in range(cfg.ensemble)
        ]
    )

    names = list(ones_mask(model))
    reference = ones_mask(model, names)

    def member(state_file: Path, mask_file: Path, seed: int) -> dict:
        m = build_model(cfg.model, data.input_shape, data.num_classes, seed=seed).to(dev)
        m.load_state_dict(load_state(state_file, m))
        mask = load_mask(mask_file, reference)
        probs = predict_probs(m, data.x_test)
        return {
            "probs": probs,
            "density": density(mask),
            "forward": sum(forward_flops(m, data.input_shape, mask).values()),
            **classification_metrics(probs, data.y_test),
        }

    if cfg.method == "edst":
        where = run_dir / "train_0"
        members = [
            member(where / f"member_{k}.safetensors", where / f"member_{k}_mask.safetensors", cfg.seed)
            for k in range(cfg.members)
        ]
    else:
        members = [
            member(run_dir / f"train_{i}" / "final.safetensors", run_dir / f"train_{i}" / "mask.safetensors", r["seed"])
            for i, r in enumerate(runs)
        ]
    ens = classification_metrics(ensemble_probs([m["probs"] for m in members]), data.y_test)
    dense_fwd = runs[0]["flops"]["forward_dense"]
    summary = {
        "config": config,
        "distribution": runs[0].get("distribution"),
        "density": runs[0]["density"],
        "layer_densities": runs[0]["layer_densities"],
        "runs": runs,
        "members": [{k: v for k, v in m.items() if k != "probs"} for m in members],
        "ensemble": ens | {"size": len(members)},
        "test_acc": runs[0]["test_acc"],
        "flops": {
            "training": sum(r["flops"]["training"] for r in runs),
            "training_dense": cfg.train.passes_per_example() * dense_fwd * cfg.train.batch_size * total,
            "inference": sum(m["forward"] for m in members),
            "forward_dense": dense_fwd,
        },
    }
    if cfg.method == "acdc" and (run_dir / "train_0" / "dense.safetensors").exists():
        m = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed).to(dev)
        m.load_state_dict(load_state(run_dir / "train_0" / "dense.safetensors", m))
        summary["dense_model"] = classification_metrics(predict_probs(m, data.x_test), data.y_test)
    write_json(run_dir / "summary.json", summary)
    return summary


def format_dst(s: dict) -> str:
    c, f = s["config"], s["flops"]
    lines = [
        f"{c['method']} on {c['model']} / {c['dataset']}: density {100 * s['density']:.2f}% "
        f"({s.get('distribution') or c['distribution'] or 'default'} distribution), "
        f"{len(s['runs'])} training run(s)"
    ]
    for i, m in enumerate(s["members"]):
        lines.append(
            f"  member {i}: test acc {m['acc']:.4f}  NLL {m['nll']:.4f}  ECE {m['ece']:.4f}  "
            f"density {100 * m['density']:.2f}%"
        )
    e = s["ensemble"]
    if e["size"] > 1:
        lines.append(f"  ensemble of {e['size']}: test acc {e['acc']:.4f}  NLL {e['nll']:.4f}  ECE {e['ece']:.4f}")
    if "dense_model" in s:
        d = s["dense_model"]
        lines.append(
            f"  dense model (end of the last dense phase): test acc {d['acc']:.4f}  NLL {d['nll']:.4f}  "
            f"ECE {d['ece']:.4f}"
        )
    lines.append(
        f"training FLOPs {f['training']:.3e} (dense training {f['training_dense']:.3e}, "
        f"ratio {f['training'] / f['training_dense']:.3f}); inference FLOPs per example "
        f"{f['inference']:.3e} (dense {f['forward_dense']:.3e})"
    )
    return "\n".join(lines)


__all__ = ["DSTConfig", "format_dst", "run_dst"]


def dst_headline(s: dict) -> dict:
    e, f = s["ensemble"], s["flops"]
    out = {
        "density": s["density"],
        "test_acc": s["test_acc"],
        "nll": s["members"][0]["nll"],
        "ece": s["members"][0]["ece"],
        "training_flops_ratio": f["training"] / f["training_dense"],
    }
    if e["size"] > 1:
        out |= {"ensemble_acc": e["acc"], "ensemble_nll": e["nll"], "ensemble_ece": e["ece"]}
    return out


def dst_models(run: Path, summary: dict) -> list[dict]:
    """Each run of the ensemble, then (with more than one) the ensemble itself, attacked as one model."""
    method = summary["config"]["method"]
    out = [
        trained_model(f"{method} run {i}", "dst", m["density"], run / f"train_{i}" / "final.safetensors")
        for i, m in enumerate(summary["runs"])
    ]
    if len(out) > 1:  # the mean softmax of the members
        ens = trained_model("ensemble", "ensemble", out[0]["density"], out[0]["weights"])
        out.append(ens | {"members": [m["weights"] for m in out]})
    return out


EXPERIMENT = register(
    Experiment(
        "dst",
        DSTConfig,
        run_dst,
        format_dst,
        dst_headline,
        models=dst_models,
        description="Train sparse from scratch at a fixed density while the mask evolves; --ensemble M averages M "
        "independent runs, --method edst gets an ensemble from one run. Reports accuracy, NLL, ECE and "
        "training/inference FLOPs.",
    )
)
