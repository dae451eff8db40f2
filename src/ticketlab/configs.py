"""Shared behaviour of the run configs: a dataclass with a nested ``train: TrainConfig`` field."""
from __future__ import annotations

from dataclasses import asdict, fields

from .errors import UserError
from .train import TrainConfig


class RunConfig:
    """``to_dict`` / ``from_dict`` for dataclass configs (JSON in config.json; unknown keys refused)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        train = d.pop("train", {})
        unknown = (set(d) - {f.name for f in fields(cls)}) | (set(train) - {f.name for f in fields(TrainConfig)})
        if unknown:
            raise UserError(f"unknown config keys {sorted(unknown)}")
        return cls(train=TrainConfig(**train), **d)


def prepare(cfg, device: str, data_dir: str | None, quiet: bool):
    """Validate ``cfg`` and build what every runner starts from: (device, dataset, model at its seeded init).

    ``cfg`` has ``model``, ``dataset`` and ``seed``; a model that does not fit the data is a UserError.
    """
    from .data import load_dataset
    from .lottery.imp_runner import check_fits, resolve_device
    from .models import build_model

    cfg.validate()
    dev = resolve_device(device)
    data = load_dataset(cfg.dataset, data_dir, quiet=quiet)
    model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed).to(dev)
    check_fits(model, data)
    return dev, data, model


def start_run(cfg, kind: str, out, device: str, data_dir: str | None, quiet: bool):
    """``prepare`` plus the run directory every runner opens: (device, dataset moved to the device, model,
    config dict, run directory). The directory is ``out`` or ``runs/<kind>-<config hash>``; a different
    config there is refused (``open_run_dir``)."""
    import sys

    from .lottery.rundir import default_run_dir, open_run_dir

    dev, data, model = prepare(cfg, device, data_dir, quiet)
    config = cfg.to_dict()
    run_dir = open_run_dir(out if out is not None else default_run_dir(kind, config), kind, config)
    if not quiet:
        print(f"run directory: {run_dir}", file=sys.stderr)
    return dev, data.to(dev), model, config, run_dir
