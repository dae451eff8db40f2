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
