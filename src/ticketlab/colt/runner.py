"""``ticketlab colt``: cyclic overlapping lottery tickets (Hossain et al. 2022).

The training set is split into non-overlapping segments (by class, as the paper: classes 0-4 and 5-9
for two segments; or at random). Each round trains the current ticket - the initial weights under the
current mask - once on every segment, prunes each trained copy by layerwise magnitude at the round's
rates, and keeps only the weights every copy kept (the overlap). The overlap prunes faster than one
model would, so fewer rounds reach a density. The final ticket is trained on all the data from its
initial weights, and compared with IMP run to the same density with the same settings: accuracy and
total training iterations of each.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..data import Dataset
from ..errors import UserError
from ..flops import forward_flops
from ..io import save_tensors, write_json
from ..lottery import IMPConfig, IMPRun, layer_rates
from ..runs import Experiment, RunConfig, load_mask, load_state, register, start_run, train_cached
from ..seeding import generator
from ..sparse import density, layer_densities, layerwise_prune, magnitude_scores, ones_mask, prunable_names
from ..train import TrainConfig

SPLITS = ("classes", "random")


@dataclass
class COLTConfig(RunConfig):
    model: str = field(default="lenet300", metadata={"help": "model name"})
    dataset: str = field(
        default="fashion-mnist",
        metadata={"help": "dataset name, or npz:PATH for your own arrays (see `ticketlab list`)"},
    )
    seed: int = field(default=0, metadata={"help": "seed for init, data order, splits and ties"})
    segments: int = field(default=2, metadata={"help": "number of non-overlapping data segments"})
    split: str = field(default="classes", metadata={"help": "segments by class (the paper) or random"})
    rate: float = field(default=0.2, metadata={"help": "fraction of remaining weights each copy prunes per round"})
    target_density: float = field(default=0.1, metadata={"help": "stop when the overlap keeps at most this"})
    max_rounds: int = field(default=30, metadata={"help": "give up after this many rounds"})
    skip_imp: bool = field(default=False, metadata={"help": "do not run IMP to COLT's density for comparison"})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=60))

    def validate(self) -> None:
        self.train.validate()
        if self.segments < 2:
            raise UserError(f"--segments must be >= 2, got {self.segments}")
        if self.split not in SPLITS:
            raise UserError(f"unknown --split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        if not 0 < self.rate < 1:
            raise UserError(f"--rate must be in (0, 1), got {self.rate}")
        if not 0 < self.target_density < 1:
            raise UserError(f"--target-density must be in (0, 1), got {self.target_density}")
        if self.max_rounds < 1:
            raise UserError(f"--max-rounds must be >= 1, got {self.max_rounds}")


def split_segments(data: Dataset, segments: int, how: str, seed: int) -> list[Dataset]:
    """Non-overlapping training segments (validation and test sets are shared)."""
    y = data.y_train.cpu().numpy()
    if how == "classes":
        if segments > data.num_classes:
            raise UserError(f"--segments {segments} exceeds the {data.num_classes} classes; use --split random")
        groups = np.array_split(np.arange(data.num_classes), segments)
        parts = [np.flatnonzero(np.isin(y, g)) for g in groups]
    else:
        perm = torch.randperm(len(y), generator=generator(seed, "colt-split")).numpy()
        parts = [np.sort(p) for p in np.array_split(perm, segments)]
    out = []
    for p in parts:
        idx = torch.from_numpy(p).to(data.x_train.device)
        out.append(replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx]))
    return out


def run_colt(
    cfg: COLTConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    dev, data, model, config, run_dir = start_run(cfg, "colt", out, device, data_dir, quiet)
    segs = split_segments(data, cfg.segments, cfg.split, cfg.seed)
    names = prunable_names(model)
    if (run_dir / "init.safetensors").exists():
        init = load_state(run_dir / "init.safetensors", model)
    else:
        init = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save_tensors(run_dir / "init.safetensors", init)
    rates = layer_rates(model, names, IMPConfig(rate=cfg.rate))
    kw = dict(seed=cfg.seed, checkpoint_every=checkpoint_every, quiet=quiet)
    mask = ones_mask(model, names)
    rows, seg_iters, flops = [], 0, 0

    def cost(m, iterations: int) -> int:  # training FLOPs: 3 x sparse forward per example per step
        return 3 * sum(forward_flops(model, data.input_shape, m).values()) * cfg.train.batch_size * iterations

    for k in range(1, cfg.max_rounds + 1):
        rdir = run_dir / f"round_{k:02d}"
        seg_masks, accs = [], []
        for s, seg in enumerate(segs):
            total = cfg.train.total_iterations(len(seg.y_train))
            summary, _ = train_cached(
                rdir / f"segment_{s}",
                model,
                seg,
                cfg.train,
                mask=mask,
                start=init,
                start_iter=0,
                total=total,
                label=f"colt round {k} segment {s}",
                **kw,
            )
            final = load_state(rdir / f"segment_{s}" / "final.safetensors", model)
            dens = {n: d * (1 - rates[n]) for n, d in layer_densities(mask).items()}
            seg_masks.append(
                layerwise_prune(magnitude_scores(final, names), mask, dens, generator(cfg.seed, "colt", k, s))
            )
            accs.append(summary["test_acc"])
            seg_iters += total
            flops += cost(mask, total)
        overlap = {n: torch.stack([m[n] for m in seg_masks]).all(0) for n in names}
        if (rdir / "mask.safetensors").exists():
            overlap = load_mask(rdir / "mask.safetensors", mask)
        else:
            save_tensors(rdir / "mask.safetensors", overlap)
        mask = overlap
        rows.append({"round": k, "density": density(mask), "segment_test_acc": accs})
        write_json(run_dir / "rounds.json", rows)
        if density(mask) <= cfg.target_density:
            break
    else:
        if not quiet:
            print(f"stopped after --max-rounds {cfg.max_rounds} at density {density(mask):.4f}", file=sys.stderr)
    total = cfg.train.total_iterations(len(data.y_train))
    ticket, _ = train_cached(
        run_dir / "final",
        model,
        data,
        cfg.train,
        mask=mask,
        start=init,
        start_iter=0,
        total=total,
        label="colt ticket, all data",
        **kw,
    )
    result = {
        "config": config,
        "rounds": rows,
        "density": density(mask),
        "colt": {k: ticket[k] for k in ("test_acc", "early_stop_iter", "early_stop_test_acc")}
        | {
            "pruning_rounds": len(rows),
            "training_iterations": seg_iters + total,
            "training_flops": flops + cost(mask, total),
        },
    }
    if not cfg.skip_imp:
        imp_cfg = IMPConfig(
            model=cfg.model,
            dataset=cfg.dataset,
            seed=cfg.seed,
            train=cfg.train,
            rate=cfg.rate,
            target_density=density(mask),
        )
        imp = IMPRun(
            imp_cfg, run_dir / "imp", data=data, device=device, quiet=quiet, checkpoint_every=checkpoint_every
        ).run()
        last = imp["rounds"][-1]
        result["imp"] = {k: last[k] for k in ("density", "test_acc", "early_stop_iter", "early_stop_test_acc")} | {
            "pruning_rounds": len(imp["rounds"]) - 1,
            "training_iterations": imp["iterations"] * len(imp["rounds"]),
            "training_flops": sum(r["flops"]["training"] for r in imp["rounds"]),
        }
    write_json(run_dir / "summary.json", result)
    return result


def format_colt(r: dict) -> str:
    lines = [
        f"{'':<6} {'density':>8} {'test acc':>9} {'early stop @ it':>18} {'rounds':>7} {'train iters':>12} "
        f"{'train FLOPs':>12}"
    ]
    for name in ("colt", "imp"):
        if name in r:
            c = r[name]
            d = r["density"] if name == "colt" else c["density"]
            es = f"{c['early_stop_test_acc']:.4f} @ {c['early_stop_iter']}"
            lines.append(
                f"{name:<6} {100 * d:>7.2f}% {c['test_acc']:>9.4f} {es:>18} {c['pruning_rounds']:>7} "
                f"{c['training_iterations']:>12} {c['training_flops']:>12.3e}"
            )
    return "\n".join(lines)


def colt_headline(s: dict) -> dict:
    out = {"density": s["density"], "test_acc": s["colt"]["test_acc"], "rounds": s["colt"]["pruning_rounds"]}
    if "imp" in s:
        out |= {"imp_density": s["imp"]["density"], "imp_test_acc": s["imp"]["test_acc"]}
    return out


EXPERIMENT = register(
    Experiment(
        "colt",
        COLTConfig,
        run_colt,
        format_colt,
        colt_headline,
        description="Train the ticket on each data segment, keep the overlap of the pruned masks, rewind, cycle; then "
        "train it on all data and compare with IMP at that density.",
    )
)
