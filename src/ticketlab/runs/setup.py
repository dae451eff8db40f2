"""Setting a run up: config dataclasses' shared behaviour, the device, the data and seeded model, the run folder.

Every method's runner starts here (``start_run``); nothing in this package imports a method family.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, fields
from pathlib import Path

import torch
from torch import nn

from ..data import Dataset, load_dataset
from ..errors import UserError
from ..flags import check_types
from ..models import build_model
from ..train import TrainConfig
from .rundir import default_run_dir, open_run_dir


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device; CUDA asked for where there is none is a one-line error."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} requested but CUDA is not available here; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown --device {device!r}; use cpu or cuda") from None


def check_fits(model: nn.Module, data: Dataset) -> None:
    """Refuse (one line) a model that cannot take the dataset's inputs or does not give one logit per class."""
    try:
        with torch.no_grad():
            out = model.eval()(data.x_train[:2].to(next(model.parameters()).device))
    except Exception as e:
        raise UserError(
            f"the model does not accept {data.name}'s input shape {data.input_shape} "
            f"({str(e).splitlines()[0][:120]}); pick a model that fits"
        ) from None
    if out.shape != (2, data.num_classes):
        raise UserError(
            f"the model outputs shape {tuple(out.shape[1:])} but {data.name} has "
            f"{data.num_classes} classes; pick a model that fits"
        )


class RunConfig:
    """``to_dict`` / ``from_dict`` for dataclass configs (JSON in config.json; unknown keys refused)."""

    # --help: the settings every training command shares come first, under one heading (flags.help_section)
    HELP_SECTIONS = {n: "model and data" for n in ("model", "dataset", "seed", "label_noise")}

    def to_dict(self) -> dict:
        """The fields as a dict; a field marked ``metadata={"omit_at_default": True}`` is left out while it has
        its default, so adding a setting keeps the configs (and folder hashes) of runs made before it."""
        d = asdict(self)
        for f in fields(self):
            if f.metadata.get("omit_at_default") and getattr(self, f.name) == f.default:
                d.pop(f.name)
        if isinstance(getattr(self, "train", None), TrainConfig):
            d["train"] = self.train.to_dict()  # adversarial settings only when used (old hashes stay)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        train = d.pop("train", {})
        unknown = (set(d) - {f.name for f in fields(cls)}) | (set(train) - {f.name for f in fields(TrainConfig)})
        if unknown:
            raise UserError(f"unknown config keys {sorted(unknown)}")
        if not isinstance(train, dict):
            raise UserError(f"the training settings must be a table, got {train!r}")
        check_types(cls, d)
        check_types(TrainConfig, train)
        return cls(train=TrainConfig(**train), **d)


def prepare(cfg, device: str, data_dir: str | None, quiet: bool):
    """Validate ``cfg`` and build what every runner starts from: (device, dataset, model at its seeded init).

    ``cfg`` has ``model``, ``dataset`` and ``seed``; a model that does not fit the data is a UserError.
    """

    cfg.validate()
    dev = resolve_device(device)
    data = load_dataset(cfg.dataset, data_dir, quiet=quiet)
    model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed).to(dev)
    check_fits(model, data)
    return dev, data, model


def preflight(cfgs, check=None, data_dir: str | None = None) -> None:
    """Everything ``cfgs`` need, checked before any training: each config's values, its model on its data
    (built on the CPU; each dataset loaded once) and ``check(cfg, model, data)``, the method's own refusals."""

    datasets: dict = {}
    for cfg in cfgs:
        cfg.validate()
        if cfg.dataset not in datasets:
            datasets[cfg.dataset] = load_dataset(cfg.dataset, data_dir, quiet=True)
        data = datasets[cfg.dataset]
        model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed)
        check_fits(model, data)
        if check is not None:
            check(cfg, model, data)


def start_derived_run(cfg, kind: str, out, device: str, data_dir: str | None, quiet: bool, check):
    """``start_run`` for a run made from another run's model (``cfg.source``: compress, neurons, deadwood):
    ``check(cfg, model, data)`` refuses what does not fit before any folder is made, and the config records
    the source as an absolute path. Returns (device, data on the device, model, config, run directory,
    what ``check`` returned)."""

    dev, data, model = prepare(cfg, device, data_dir, quiet)
    checked = check(cfg, model, data)
    config = cfg.to_dict() | {"source": str(Path(cfg.source).resolve())}
    run_dir = open_run_dir(out if out is not None else default_run_dir(kind, config), kind, config)
    if not quiet:
        print(f"run directory: {run_dir}", file=sys.stderr)
    return dev, data.to(dev), model, config, run_dir, checked


def start_run(cfg, kind: str, out, device: str, data_dir: str | None, quiet: bool, normalize=None):
    """``prepare`` plus the run directory every runner opens: (device, dataset moved to the device, model,
    config dict, run directory). The directory is ``out`` or ``runs/<kind>-<config hash>``; a different
    config there is refused (``open_run_dir``, with ``normalize`` mapping an older stored config to today's
    schema)."""
    dev, data, model = prepare(cfg, device, data_dir, quiet)
    config = cfg.to_dict()
    run_dir = open_run_dir(out if out is not None else default_run_dir(kind, config), kind, config, normalize)
    if not quiet:
        print(f"run directory: {run_dir}", file=sys.stderr)
    return dev, data.to(dev), model, config, run_dir
