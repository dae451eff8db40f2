"""Datasets as in-memory tensors with a fixed validation split (a registry: ``DATASETS``)."""
from __future__ import annotations

from pathlib import Path

from . import cifar10, idx, synthetic  # noqa: F401  (registrations)
from .base import Dataset, build_dataset, with_label_noise
from .registry import DATASETS

_CACHE: dict[tuple, Dataset] = {}


def load_dataset(name: str, data_dir: str | Path | None = None, quiet: bool = False) -> Dataset:
    """Load a registered dataset (cached in memory per process)."""
    loader = DATASETS.get(name)
    key = (name, str(data_dir) if data_dir else None)
    if key not in _CACHE:
        _CACHE[key] = loader(data_dir=data_dir, quiet=quiet)
    return _CACHE[key]


__all__ = ["DATASETS", "Dataset", "build_dataset", "load_dataset", "with_label_noise"]
