"""A finished run's pruned model: the trained weights and mask of an IMP round, a DST run or a structured run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data import load_dataset
from ..errors import UserError
from ..io import load_tensors, read_json
from ..models import build_model
from ..sparse import Mask, apply_mask_


@dataclass
class RunModel:
    model: nn.Module  # the trained model with its mask applied, eval mode
    mask: Mask
    data: object  # the run's dataset
    recipe: dict  # model, input_shape, num_classes
    label: str  # e.g. "imp round 17"
    export_dir: Path


def _files(run: Path, kind: str, round: int | None) -> tuple[Path, Path, str, Path]:
    if kind == "imp":
        rounds = sorted(
            int(p.name[6:])
            for p in run.glob("round_*")
            if p.name[6:].isdigit() and (p / "final.safetensors").exists() and (p / "mask.safetensors").exists()
        )
        if not rounds:
            raise UserError(f"{run} has no finished IMP round yet; run or resume it first")
        k = rounds[-1] if round is None else round
        if k not in rounds:
            raise UserError(f"{run} has no finished round {k}; finished rounds: {rounds[0]}..{rounds[-1]}")
        d = run / f"round_{k:02d}"
        return d / "final.safetensors", d / "mask.safetensors", f"imp round {k}", run / "export" / f"round_{k:02d}"
    if round is not None:
        raise UserError("--round is for IMP runs")
    if kind == "structured":
        base = run
    elif kind == "dst":
        base = run / "train_0"
    else:
        raise UserError(f"{run} is a {kind} run; export and bench take imp, dst and structured runs")
    if not (base / "final.safetensors").exists() or not (run / "summary.json").exists():
        raise UserError(f"{run} has not finished yet; repeat its command to resume it")
    return base / "final.safetensors", base / "mask.safetensors", kind, run / "export"


def load_run(run_dir: str | Path, round: int | None = None, data_dir: str | None = None) -> RunModel:
    """The pruned model of a finished run (on CPU), its mask and dataset."""

    run = Path(run_dir)
    try:
        record = read_json(run / "config.json")
        kind, config = record["kind"], record["config"]
        name, dataset = config["model"], config["dataset"]
    except (UserError, KeyError, TypeError, FileNotFoundError):
        raise UserError(f"{run} is not a ticketlab run directory (no readable config.json)") from None
    state_file, mask_file, label, export_dir = _files(run, kind, round)
    data = load_dataset(dataset, data_dir, quiet=True)
    model = build_model(name, data.input_shape, data.num_classes, seed=0)
    state, mask = load_tensors(state_file), load_tensors(mask_file)
    ref = model.state_dict()
    params = dict(model.named_parameters())
    if (
        set(state) != set(ref)
        or any(state[k].shape != ref[k].shape for k in ref)
        or any(n not in params or m.shape != params[n].shape or m.dtype != torch.bool for n, m in mask.items())
    ):
        raise UserError(f"{state_file} or {mask_file} does not match model {name}; the run is damaged")
    model.load_state_dict(state)
    apply_mask_(model, mask)
    recipe = {"model": name, "input_shape": list(data.input_shape), "num_classes": data.num_classes}
    return RunModel(model.eval(), mask, data, recipe, label, export_dir)
