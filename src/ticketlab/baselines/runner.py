"""``ticketlab baselines RUN``: train what a mask must beat, beside the method's own result.

For each mask of an IMP run (chosen rounds) or a prune-init run:

- ``shuffle`` (Frankle et al. 2021): the mask shuffled at random within each layer (same per-layer
  densities), trained from the same initial weights. Matching it means the method found no more than
  per-layer densities.
- ``reinit`` = Scratch-E (Liu et al. 2019; Frankle et al. 2021): the same mask, kept weights drawn
  afresh from the init distribution, the same number of iterations.
- ``scratch-b``: as reinit, trained for the dense run's training FLOPs: iterations x dense/sparse
  forward FLOPs, capped at ``--scratch-b-cap`` x (default 2) to bound the cost.
- ``finetune`` (IMP runs): the dense trained weights (round 0) under the mask, trained the same budget.

Every result carries its training FLOPs. Cells are cached in ``RUN/baselines-<hash>/`` (rerun resumes).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from ..data import load_dataset
from ..errors import UserError
from ..flops import forward_flops, training_flops
from ..io import read_json, write_json
from ..lottery import normalize_config
from ..models import build_model, glorot_normal_init
from ..runs import config_hash, load_mask, load_state, lockstep, open_run_dir, resolve_device, train_cached
from ..seeding import derive_seed, generator
from ..sparse import Mask, ones_mask, prunable_names, random_mask_like
from ..train import TrainConfig

BASELINES = ("shuffle", "reinit", "scratch-b", "finetune")


def _masks_of(run_dir: Path, kind: str, stored: dict, rounds: list[int] | None) -> dict[str, tuple[Path, dict]]:
    """label -> (mask file, the method's own result) for the run's masks."""
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else None
    if summary is None:
        raise UserError(f"{run_dir} has no finished result yet; finish the run first (rerun its command)")
    if kind == "prune-init":
        return {"mask": (run_dir / "mask.safetensors", summary)}
    by_round = {r["round"]: r for r in summary["rounds"]}
    use = rounds or [k for k in by_round if k > 0]
    bad = [k for k in use if k not in by_round or k == 0]
    if bad:
        raise UserError(f"round {bad[0]} is not a finished pruned round of {run_dir}")
    return {f"round {k}": (run_dir / f"round_{k:02d}" / "mask.safetensors", by_round[k]) for k in use}


def run_baselines(
    run_dir: str | Path,
    rounds: list[int] | None = None,
    which: list[str] | None = None,
    scratch_b_cap: float = 2.0,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    run_dir = Path(run_dir)
    stored = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else None
    kind = stored.get("kind") if isinstance(stored, dict) else None
    if kind not in ("imp", "prune-init"):
        raise UserError(f"{run_dir} is not an IMP or prune-init run directory; give one made by ticketlab")
    which = which or [b for b in BASELINES if kind == "imp" or b != "finetune"]
    bad = [b for b in which if b not in BASELINES]
    if bad:
        raise UserError(f"unknown baseline {bad[0]!r}; choose from: {', '.join(BASELINES)}")
    if "finetune" in which and kind != "imp":
        raise UserError("finetune needs a dense trained net: it is available for IMP runs only")
    if not scratch_b_cap >= 1:
        raise UserError(f"--scratch-b-cap must be >= 1, got {scratch_b_cap}")
    cfg = stored["config"]
    if str(cfg["model"]).startswith("custom:"):
        raise UserError(f"{run_dir} was made with a custom nn.Module; run baselines from Python")
    masks = _masks_of(run_dir, kind, cfg, rounds)
    dev = resolve_device(device)
    data = load_dataset(cfg["dataset"], data_dir, quiet=quiet).to(dev)
    model = build_model(cfg["model"], data.input_shape, data.num_classes, seed=cfg["seed"]).to(dev)
    tcfg = TrainConfig(**cfg["train"])
    total = tcfg.total_iterations(len(data.y_train))
    names = prunable_names(model, cfg.get("prune_include"), cfg.get("prune_exclude"))
    own = {"rounds": rounds, "which": which, "scratch_b_cap": scratch_b_cap}
    config = {"run": normalize_config(cfg) if kind == "imp" else cfg, "kind": kind, **own}
    out = open_run_dir(
        run_dir / f"baselines-{config_hash(own)}",
        "baselines",
        config,
        normalize=lambda c: {**c, "run": normalize_config(c["run"])} if kind == "imp" else c,
    )
    if not quiet:
        print(f"baselines directory: {out}", file=sys.stderr)
    init = load_state(run_dir / "init.safetensors", model)
    dense_final = load_state(run_dir / "round_00" / "final.safetensors", model) if kind == "imp" else None
    dense_fwd = sum(forward_flops(model, data.input_shape).values())
    seed = cfg["seed"]
    result: dict = {"config": config, "dense_training_flops": 3 * dense_fwd * tcfg.batch_size * total, "rows": []}
    cells = []  # (index, row, baseline, mask, start, iterations, FLOPs), prepared first: the trainings are
    # independent, and the threads that may train them together then only read ``model`` (to copy it)
    for i, (label, (mask_path, own)) in enumerate(masks.items()):
        mask: Mask = load_mask(mask_path, ones_mask(model, names))
        sparse_fwd = sum(forward_flops(model, data.input_shape, mask).values())
        row = {
            "label": label,
            "density": own["density"],
            "method": {k: own[k] for k in ("test_acc", "early_stop_iter", "early_stop_test_acc")}
            | {"training_flops": training_flops(model, data.input_shape, total, tcfg.batch_size, mask)},
            "baselines": {},
        }
        result["rows"].append(row)
        for b in which:
            start, m, iters = init, mask, total
            if b == "shuffle":
                m = random_mask_like(mask, generator(seed, "shuffle", i))
            elif b in ("reinit", "scratch-b"):
                glorot_normal_init(model, derive_seed(seed, "baseline-reinit", i))
                start = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if b == "scratch-b":
                    iters = int(round(total * min(scratch_b_cap, dense_fwd / max(sparse_fwd, 1))))
            else:
                start = dense_final
            flops = training_flops(model, data.input_shape, iters, tcfg.batch_size, m)  # here: it runs the model
            cells.append((i, row, b, m, start, iters, flops))

    def train_cell(i: int, row: dict, b: str, m: Mask, start: dict, iters: int, flops: float) -> dict:
        net = lockstep.own_model(model)  # the cells may train together
        s, _ = train_cached(
            out / f"{i:02d}_{b}",
            net,
            data,
            TrainConfig(**{**asdict(tcfg), "iterations": iters, "epochs": None}),
            mask=m,
            start=start,
            start_iter=0,
            total=iters,
            seed=seed,
            checkpoint_every=checkpoint_every,
            label=f"{row['label']} {b}",
            quiet=quiet,
            save_final=False,
        )
        return {k: s[k] for k in ("test_acc", "early_stop_iter", "early_stop_test_acc")} | {
            "iterations": iters,
            "training_flops": flops,
        }

    done = lockstep.together([lambda c=c: train_cell(*c) for c in cells])
    for (_, row, b, *_), r in zip(cells, done):
        row["baselines"][b] = r
    write_json(out / "summary.json", result)
    result["dir"] = str(out)
    return result


def format_baselines(result: dict) -> str:
    which = result["config"]["which"]
    head = f"{'mask':<10} {'density':>8}  {'method':>16}" + "".join(f"  {b:>16}" for b in which)
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        cell = lambda c: f"{c['test_acc']:.4f} ({c['training_flops']:.1e})"  # noqa: E731
        lines.append(
            f"{r['label']:<10} {100 * r['density']:>7.2f}%  {cell(r['method']):>16}"
            + "".join(f"  {cell(r['baselines'][b]):>16}" for b in which)
        )
    lines.append(f"\ntest accuracy (training FLOPs); dense training: {result['dense_training_flops']:.2e} FLOPs")
    return "\n".join(lines)
