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

import typing
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..flops import forward_flops
from ..io import read_json, save_tensors, write_json
from ..metrics import classification_metrics, ensemble_probs, predict_probs
from ..models import build_model
from ..plotting import plot_curves
from ..runs import Experiment, RunConfig, load_mask, load_state, lockstep, register, start_run, train_cached
from ..runs.models import trained_model
from ..seeding import derive_seed
from ..sparse import density, layer_densities, ones_mask, parse_pattern
from ..train import TrainConfig
from .base import PATTERN_METHODS
from .registry import SPARSE_TRAINERS, make


@dataclass
class _DSTSettings(RunConfig):
    """The settings every method shares; each method's own (its ``options``) are added below."""

    model: str = field(default="lenet300", metadata={"help": "model name"})
    dataset: str = field(
        default="fashion-mnist",
        metadata={"help": "dataset name, or npz:PATH for your own arrays (see `ticketlab list`)"},
    )
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
    ensemble: int = field(default=1, metadata={"help": "independent runs averaged as an ensemble (FreeTickets)"})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=60))

    def validate(self) -> None:
        self.train.validate()
        SPARSE_TRAINERS.get(self.method)
        if not 0 < self.density <= 1:
            raise UserError(f"--density must be in (0, 1], got {self.density}")
        if self.ensemble < 1:
            raise UserError(f"--ensemble must be >= 1, got {self.ensemble}")
        SPARSE_TRAINERS.get(self.method).check_config(self)
        for name in SPARSE_TRAINERS:
            SPARSE_TRAINERS.get(name).check_options(self)
        if self.pattern is not None:
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

    def resolved_step_on_update(self) -> bool:
        if self.step_on_update == "auto":
            return SPARSE_TRAINERS.get(self.method).step_on_update
        return self.step_on_update == "apply"

    def to_dict(self) -> dict:
        """As every config (settings at their defaults left out), with two rules the methods set: a method's
        ``omit_unless_chosen`` options only when it is the method, and a method that ``records_step_on_update``
        (rigl) always records whether it skips the optimizer step on mask updates - rigl's default changed to
        the reference's, so an older rigl folder is refused rather than silently reused."""
        d = super().to_dict()
        for name in SPARSE_TRAINERS:
            if name != self.method:
                for f in SPARSE_TRAINERS.get(name).omit_unless_chosen:
                    d.pop(f, None)
        if SPARSE_TRAINERS.get(self.method).records_step_on_update:
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
        kw |= SPARSE_TRAINERS.get(self.method).config_kwargs(self)
        return kw


def _with_method_options(base: type) -> type:
    """``base`` with every registered method's own options as fields (flags grouped under the method)."""
    extra, seen = [], set()
    for name in SPARSE_TRAINERS:
        opts = SPARSE_TRAINERS.get(name).options
        if opts is None or opts in seen:
            continue
        seen.add(opts)
        hints = typing.get_type_hints(opts)
        extra += [(f.name, hints[f.name], field(default=f.default, metadata=f.metadata)) for f in fields(opts)]
    cls = make_dataclass("DSTConfig", extra, bases=(base,))
    cls.__module__, cls.__doc__ = __name__, "The settings of `ticketlab dst`: the shared ones and each method's own."
    return cls


DSTConfig = _with_method_options(_DSTSettings)


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
    method = SPARSE_TRAINERS.get(cfg.method)
    kw |= method.run_inputs(cfg, data, seed)
    holder = {}

    def factory(opt):  # the trainer is kept for the snapshots taken during training
        holder["t"] = make(cfg.method, model, opt, **kw)
        return holder["t"]

    snaps = method.snapshots(cfg, total)

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

    snapshots = SPARSE_TRAINERS.get(cfg.method).ensemble_members(cfg)
    if snapshots is not None:  # one run's snapshots (edst)
        where = run_dir / "train_0"
        members = [member(where / f"{k}.safetensors", where / f"{k}_mask.safetensors", cfg.seed) for k in snapshots]
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
    if (run_dir / "train_0" / "dense.safetensors").exists():  # a method's dense snapshot (acdc)
        m = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed).to(dev)
        m.load_state_dict(load_state(run_dir / "train_0" / "dense.safetensors", m))
        summary["dense_model"] = classification_metrics(predict_probs(m, data.x_test), data.y_test)
    write_json(run_dir / "summary.json", summary)
    curves = [
        (f"run {i}", read_json(run_dir / f"train_{i}" / "metrics.json").get("history", [])) for i in range(len(runs))
    ]
    plot_curves(
        curves,
        run_dir / "test_acc_by_iteration.png",
        f"{cfg.method} at density {100 * summary['density']:.2f}%: {cfg.model} on {cfg.dataset}",
        "training run",
    )
    return summary


def format_dst(s: dict) -> str:
    """The command's table: a row per trained model (each member, the ensemble, AC/DC's dense model), then
    the FLOPs."""
    c, f = s["config"], s["flops"]
    head = (
        f"{c['method']} on {c['model']} / {c['dataset']}: density {100 * s['density']:.2f}% "
        f"({s.get('distribution') or c['distribution'] or 'default'} distribution)"
    )
    rows = [(f"member {i}", m["density"], m) for i, m in enumerate(s["members"])]
    e = s["ensemble"]
    if e["size"] > 1:
        rows.append((f"ensemble of {e['size']}", None, e))
    if "dense_model" in s:
        rows.append(("dense model (end of the last dense phase)", 1.0, s["dense_model"]))
    width = max(len("model"), *(len(r[0]) for r in rows))
    lines = [head, "", f"{'model':<{width}}  density  test acc     NLL     ECE", "-" * (width + 34)]
    for name, kept, m in rows:
        d = f"{100 * kept:6.2f}%" if kept is not None else f"{'':7}"
        lines.append(f"{name:<{width}}  {d}  {m['acc']:8.4f}  {m['nll']:6.4f}  {m['ece']:6.4f}")
    lines += [
        "",
        f"training FLOPs {f['training']:.3e} (dense training {f['training_dense']:.3e}, "
        f"ratio {f['training'] / f['training_dense']:.3f}); inference FLOPs per example "
        f"{f['inference']:.3e} (dense {f['forward_dense']:.3e})",
    ]
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
