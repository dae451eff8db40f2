"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

Round 0 trains the dense net. Round k >= 1 prunes the previous round's trained ticket by magnitude to the
plan's densities, rewinds the kept weights (to init, to iteration K, or not at all) and trains again.
Controls train on each round's mask (random reinit) or per-layer densities (random mask).

Everything lands in a run directory, written atomically; rerunning resumes after the last finished
training (and inside a training from its checkpoint), bitwise identical to an uninterrupted run on CPU.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..criteria import criterion_mask, criterion_scores
from ..data import Dataset, load_dataset, with_label_noise
from ..errors import UserError
from ..flops import forward_flops
from ..io import read_json, read_json_or_none, save_tensors, write_json
from ..models import build_model, glorot_normal_init
from ..runs import (
    FINAL,
    MASK,
    Experiment,
    check_fits,
    check_run_files,
    default_run_dir,
    load_mask,
    load_state,
    lockstep,
    open_run_dir,
    register,
    resolve_device,
    train_cached,
)
from ..runs.models import trained_model
from ..seeding import derive_seed, generator
from ..sparse import (
    Mask,
    density,
    global_prune,
    layer_densities,
    nm_prune,
    ones_mask,
    parse_pattern,
    prunable_names,
    random_mask_like,
)
from ..sparse.values import kept_values, pruned_values
from ..train import TrainConfig, lr_at
from .config import PRESETS, IMPConfig
from .plan import Plan, make_plan
from .plots import plot_accuracy_vs_density, plot_test_acc_curves
from .report import format_layers, format_table


class IMPRun:
    """One IMP run bound to a directory; ``run()`` executes (or resumes) it and returns the summary."""

    def __init__(
        self,
        cfg: IMPConfig,
        out: str | Path | None = None,
        *,
        model: nn.Module | None = None,
        data: Dataset | None = None,
        device: str = "cpu",
        data_dir: str | None = None,
        quiet: bool = False,
        checkpoint_every: int = 2000,
        runs_root: str | Path = "runs",
    ):
        cfg.validate()
        self.cfg, self.quiet, self.checkpoint_every = cfg, quiet, checkpoint_every
        self.device = resolve_device(device)
        data = data if data is not None else load_dataset(cfg.dataset, data_dir, quiet=quiet)
        data = with_label_noise(data, cfg.label_noise, derive_seed(cfg.seed, "label-noise"))
        config = cfg.to_dict()
        if model is None:
            model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed)
        else:  # a user's module: its architecture is part of what identifies the run
            cfg.model = config["model"] = f"custom:{type(model).__name__}"
            config["architecture"] = [[n, list(p.shape)] for n, p in model.named_parameters()]
        self.model = model.to(self.device)
        check_fits(self.model, data)
        self.data = data.to(self.device)
        self.names = prunable_names(model, cfg.prune_include, cfg.prune_exclude)
        if not self.names:
            raise UserError("no prunable parameters: check --prune-include / --prune-exclude patterns")
        self.total = cfg.train.total_iterations(len(data.y_train))
        k = cfg.rewind_iter
        if k is not None and k >= self.total:
            raise UserError(f"--rewind {k} is not before the end of training ({self.total} iterations)")
        self.plan: Plan = make_plan(model, self.names, cfg)
        self.config = config
        where = Path(out) if out is not None else default_run_dir("imp", config, runs_root)
        check_run_files(where, "imp")  # before extend_rounds' write: a damaged run is refused as it is
        extend_rounds(where, config)
        self.dir = open_run_dir(where, "imp", config, normalize=normalize_config, check=False)
        if not quiet:
            print(f"run directory: {self.dir}", file=sys.stderr)

    # -- small helpers ---------------------------------------------------------------------------------
    def round_dir(self, k: int) -> Path:
        return self.dir / f"round_{k:02d}"

    def snapshot(self, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in (self.model if model is None else model).state_dict().items()}

    def init_state(self) -> dict[str, torch.Tensor]:
        path = self.dir / "init.safetensors"
        if path.exists():
            return load_state(path, self.model)
        state = self.snapshot()
        save_tensors(path, state)
        return state

    def reinit_state(self, *tags: object, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """A fresh Gaussian Glorot draw (seeded by the run seed and ``tags``), drawn in ``model`` (default:
        the run's)."""
        model = self.model if model is None else model
        glorot_normal_init(model, derive_seed(self.cfg.seed, "reinit", *tags))
        return self.snapshot(model)

    # -- one training ----------------------------------------------------------------------------------
    def train_one(
        self,
        where: Path,
        mask: Mask,
        start: dict,
        start_iter: int,
        label: str,
        snapshot_at: int | None = None,
        frozen: dict | None = None,
        train_cfg: TrainConfig | None = None,
        save_final: bool = True,
        model: nn.Module | None = None,
    ) -> tuple[dict, list[dict]]:
        """Train ``model`` (default: the run's) from ``start`` under ``mask``; cached in ``where`` (final
        weights + metrics). ``train_cfg`` overrides the run's training settings (its budget included).
        """
        train_cfg = train_cfg or self.cfg.train
        total = self.total if train_cfg is self.cfg.train else train_cfg.total_iterations(len(self.data.y_train))
        rewind_path = self.dir / "rewind.safetensors"

        def save_rewind(it: int, model: nn.Module) -> None:
            save_tensors(rewind_path, model.state_dict())

        return train_cached(
            where,
            self.model if model is None else model,
            self.data,
            train_cfg,
            mask=mask,
            start=start,
            start_iter=start_iter,
            total=total,
            seed=self.cfg.seed,
            checkpoint_every=self.checkpoint_every,
            label=label,
            quiet=self.quiet,
            frozen=frozen,
            snapshot_at=snapshot_at,
            on_snapshot=save_rewind if snapshot_at else None,
            save_final=save_final,
        )

    def train_control(self, c: str, k: int, rdir: Path, mask: Mask, start: dict, start_iter: int):
        """Round k's control ``c``: the ticket's mask from a fresh init (reinit), or a random mask of the same
        layer densities from the ticket's start (random-prune). Trained on a copy of the model when in
        lockstep (the ticket may be training on the run's own at the same time)."""
        cfg, label = self.cfg, f"round {k}/{self.plan.rounds} {c}"
        model = lockstep.own_model(self.model)
        if c == "reinit":
            return self.train_one(rdir / c, mask, self.reinit_state(k, model=model), start_iter, label, model=model)
        rmask = random_mask_like(mask, generator(cfg.seed, "random-mask", k))
        return self.train_one(rdir / c, rmask, start, start_iter, label, model=model)

    # -- the rounds ------------------------------------------------------------------------------------
    def round_mask(self, k: int, prev: Mask, init: dict) -> Mask:
        path = self.round_dir(k) / MASK
        if path.exists():
            return load_mask(path, prev)
        if k == 0:
            mask = prev
        else:
            final = load_state(self.round_dir(k - 1) / FINAL, self.model)
            g = generator(self.cfg.seed, "prune", k)
            if self.cfg.pattern is not None:  # N:M: each group keeps max(N, round(M x the round's density))
                n, m = parse_pattern(self.cfg.pattern)
                scores = criterion_scores(self.cfg.criterion, init, final, prev, g)
                keep = max(n, min(m, int(round(m * self.plan.expected_density(k)))))
                mask = nm_prune(scores, prev, keep, m, g)
            elif self.plan.global_rate is not None:
                scores = criterion_scores(self.cfg.criterion, init, final, prev, g)
                mask = global_prune(scores, prev, self.plan.global_density(k), g)
            else:
                mask = criterion_mask(self.cfg.criterion, init, final, prev, self.plan.layer_densities(k), g)
        save_tensors(path, mask)
        return mask

    def finetune_cfg(self) -> TrainConfig:
        """Fine-tuning (Renda et al.'s baseline): the same budget at the schedule's final learning rate."""

        t = self.cfg.train
        return replace(
            t,
            lr=lr_at(t, self.total - 1, self.total),
            lr_schedule="constant",
            warmup=0,
            milestones=[],
            iterations=self.total,
            epochs=None,
        )

    def start_point(self, k: int, init: dict) -> tuple[dict, int]:
        rw = self.cfg.rewind_iter
        if k == 0 or rw == 0:
            return init, 0
        if rw is None:  # LR rewinding or fine-tuning: continue from the previous round's trained weights
            return load_state(self.round_dir(k - 1) / FINAL, self.model), 0
        return load_state(self.dir / "rewind.safetensors", self.model), rw

    def flops(self, mask: Mask, iterations: int) -> dict[str, int]:
        """Forward FLOPs per example (sparse) and the training FLOPs of ``iterations`` steps."""
        fwd = sum(forward_flops(self.model, self.data.input_shape, mask).values())
        passes = self.cfg.train.passes_per_example()  # 3, plus an adversarial attack's passes
        return {"forward": fwd, "training": passes * fwd * self.cfg.train.batch_size * iterations}

    def learning_distance(self, rdir: Path, start: dict, mask: Mask) -> float:
        """||w_final - w_start||_2 over the prunable weights (start under the mask), as He et al. (2022)."""
        final = load_state(rdir / FINAL, self.model)
        return float(torch.sqrt(sum(((final[n] - start[n] * mask[n]) ** 2).sum() for n in self.names)))

    def ticket_values(self, k: int, start: dict, init: dict, mask: Mask) -> tuple[dict, dict | None]:
        """Apply --reinit/--signed to the kept weights and --mask-zero to the pruned ones (round k >= 1)."""
        cfg = self.cfg
        if k == 0 or (cfg.reinit == "original" and cfg.mask_zero == "zero"):
            return start, None
        start = dict(start)
        if cfg.reinit != "original":
            fresh = self.reinit_state("values", k) if cfg.reinit == "reinit" else {}
            start.update(kept_values(cfg.reinit, cfg.signed, start, mask, fresh, generator(cfg.seed, "values", k)))
        final = load_state(self.round_dir(k - 1) / FINAL, self.model) if cfg.mask_zero == "toward-zero" else None
        return start, pruned_values(cfg.mask_zero, init, final, mask)

    def run(self) -> dict:
        cfg, plan = self.cfg, self.plan
        init = self.init_state()
        mask = ones_mask(self.model, self.names)
        rows, curves = [], []
        stored = read_json_or_none(self.dir / "summary.json")  # rows of rounds ahead stay until redone
        n = plan.rounds
        for k in range(n + 1):
            rdir = self.round_dir(k)
            mask = self.round_mask(k, mask, init)
            start, start_iter = self.start_point(k, init)
            snap = cfg.rewind_iter if (k == 0 and cfg.rewind_iter) else None
            ticket_start, frozen = self.ticket_values(k, start, init, mask)
            controls = cfg.controls if k > 0 else []
            # the ticket and its controls do not depend on each other: handed in together, they share a
            # vectorised pack under --replicates vectorized (each on a model object of its own)
            ticket_fn = lambda: self.train_one(  # noqa: E731
                rdir,
                mask,
                ticket_start,
                start_iter,
                f"round {k}/{n} ticket",
                snapshot_at=snap,
                frozen=frozen,
                train_cfg=self.finetune_cfg() if cfg.rewind == "finetune" and k else None,
            )
            (ticket, hist), *done = lockstep.together(
                [ticket_fn] + [lambda c=c: self.train_control(c, k, rdir, mask, start, start_iter) for c in controls]
            )
            row = {
                "round": k,
                "density": density(mask),
                "layer_densities": layer_densities(mask),
                **ticket,
                "learning_distance": self.learning_distance(rdir, ticket_start, mask),
                "flops": self.flops(mask, self.total - start_iter),
                "controls": {c: s for c, (s, _) in zip(controls, done)},
            }
            curves.append((row["density"], hist))
            rows.append(row)
            ahead = (
                stored["rounds"][len(rows) :]
                if isinstance(stored, dict) and isinstance(stored.get("rounds"), list)
                else []
            )
            if self.summary(rows + ahead) != stored:
                write_json(self.dir / "summary.json", self.summary(rows + ahead))
        self.write_plots(self.summary(rows), curves)
        return read_json(self.dir / "summary.json")

    def summary(self, rows: list[dict]) -> dict:
        return {"config": self.config, "iterations": self.total, "rounds": rows}

    def write_plots(self, summary: dict, curves) -> None:
        """Plots are drawn once at the end (``ticketlab show`` prints the table of a run in progress)."""
        plot_accuracy_vs_density(summary, self.dir / "accuracy_vs_density.png")
        plot_test_acc_curves(
            curves,
            self.dir / "test_acc_by_round.png",
            f"IMP tickets: {self.config['model']} on {self.config['dataset']}",
        )


def extend_rounds(run_dir: Path, config: dict) -> None:
    """Let a run continue with more ``--rounds``: rounds already trained do not depend on how many follow
    (with ``--rounds``, not ``--target-density`` or ``--one-shot``), so only the count in config.json changes."""
    cfg_file = run_dir / "config.json"
    if not cfg_file.exists():
        return
    stored = read_json(cfg_file)
    try:
        old = normalize_config(stored["config"])
    except (UserError, TypeError, KeyError, AttributeError):
        return  # open_run_dir reports what is wrong with it
    fixed = ("target_density", "one_shot")
    if (
        stored.get("kind") == "imp"
        and old.get("rounds")
        and config.get("rounds")
        and config["rounds"] > old["rounds"]
        and not any(old.get(k) or config.get(k) for k in fixed)
        and {k: v for k, v in old.items() if k != "rounds"} == {k: v for k, v in config.items() if k != "rounds"}
    ):
        write_json(cfg_file, {**stored, "config": {**stored["config"], "rounds": config["rounds"]}})


def normalize_config(stored: dict) -> dict:
    """A stored IMP config in the current schema (settings added since at their defaults)."""
    stored = dict(stored)
    extra = {k: stored.pop(k) for k in ("architecture",) if k in stored}
    return IMPConfig.from_dict(stored).to_dict() | extra


def imp(config: IMPConfig | dict | None = None, out: str | Path | None = None, **kwargs) -> dict:
    """Run (or resume) IMP and return ``summary.json``'s content. See ``IMPRun`` for keyword arguments.

    >>> summary = imp(IMPConfig(model="lenet300", dataset="fashion-mnist", rounds=3), out="runs/demo")
    """
    if config is None:
        config = IMPConfig()
    elif isinstance(config, dict):
        config = IMPConfig.from_dict(config)
    return IMPRun(config, out, **kwargs).run()


def round_weights(run: str | Path, k: int) -> Path:
    """The trained weights file of round ``k`` of an IMP run (round 0: the dense net)."""
    return Path(run) / f"round_{k:02d}" / "final.safetensors"


def dense_parent(source: str | Path) -> dict:
    """The trained dense round 0 of the IMP run ``source``, as a trained model of a run built on it (compress,
    neurons, deadwood, a jackpot supermask): its weights beside the derived run's own in robustness and verify."""
    return trained_model("dense parent", "dense", 1.0, round_weights(source, 0))


def imp_parent(source: str | Path, model: str, dataset: str) -> tuple[Path, dict]:
    """(the trained dense round 0's weights file, the IMP run's summary) of ``--source``, refused in one line
    unless it is a finished round 0 of ``model`` on ``dataset``: the dense parent that compress, neurons and
    deadwood start from."""
    src = Path(source)
    rec = read_json(src / "config.json") if (src / "config.json").exists() else None
    if not isinstance(rec, dict) or rec.get("kind") != "imp":
        raise UserError(f"--source {src} is not an IMP run directory; give one made by `ticketlab imp`")
    c = rec["config"]
    if (c["model"], c["dataset"]) != (model, dataset):
        raise UserError(f"--source {src} trained {c['model']} on {c['dataset']}; use the same --model and --dataset")
    weights = round_weights(src, 0)
    summary = read_json(src / "summary.json") if (src / "summary.json").exists() else None
    if not weights.exists() or not summary or not summary.get("rounds"):
        raise UserError(f"--source {src} has no trained round 0 yet; finish it first (rerun its command)")
    return weights, summary


def run_table(run_dir: str | Path, layers: bool = False) -> str:
    """The per-round table of a run directory (``ticketlab show``); ``layers``: per-layer densities."""
    path = Path(run_dir) / "summary.json"
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir} is not a directory; give a run directory made by `ticketlab imp`")
    if not path.exists():
        raise UserError(f"{run_dir} has no summary.json; it is not a ticketlab run (or no round has finished)")
    s = read_json(path)
    if not isinstance(s, dict) or not isinstance(s.get("rounds"), list) or "config" not in s:
        raise UserError(f"{path} is not a ticketlab summary; give a run directory made by `ticketlab imp`")
    try:
        return format_layers(s) if layers else format_table(s)
    except (KeyError, TypeError, ValueError):
        raise UserError(
            f"{path} is corrupt or from another program; give a run directory made by `ticketlab imp`"
        ) from None


def imp_headline(s: dict) -> dict:
    """The last round's density and accuracies (the ticket's and each control's)."""
    last = s["rounds"][-1]
    return {
        "density": last["density"],
        "test_acc": last["test_acc"],
        "early_stop_test_acc": last["early_stop_test_acc"],
        **{f"{c}_test_acc": v["test_acc"] for c, v in last["controls"].items()},
    }


def imp_models(run: Path, summary: dict) -> list[dict]:
    """Every round's ticket and each of its controls."""
    out = []
    for r in summary["rounds"]:
        d = run / f"round_{r['round']:02d}"
        out.append(trained_model(f"round {r['round']} ticket", "ticket", r["density"], d / "final.safetensors"))
        for c in r["controls"]:
            out.append(trained_model(f"round {r['round']} {c}", c, r["density"], d / c / "final.safetensors"))
    return out


EXPERIMENT = register(
    Experiment(
        "imp",
        IMPConfig,
        imp,
        format_table,
        imp_headline,
        presets=PRESETS,
        table=run_table,
        done_file="accuracy_vs_density.png",  # drawn once the last round is done
        plot_group=lambda s, folder: plot_accuracy_vs_density(s, folder / "accuracy_vs_density.png"),
        models=imp_models,
        description="Rounds of train -> prune -> rewind. Round 0 is the dense net; --rounds N adds N pruning rounds.",
    )
)
