"""Datasets as in-memory tensors with a fixed validation split (a registry: ``DATASETS``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from . import cifar10, idx, synthetic  # noqa: F401  (registrations)
from .arrays import from_arrays, load_npz
from .base import Dataset, build_dataset, with_label_noise
from .registry import DATASETS

_CACHE: dict[tuple, Dataset] = {}


def load_dataset(name: str, data_dir: str | Path | None = None, quiet: bool = False) -> Dataset:
    """Load a registered dataset, or your own arrays as ``npz:PATH`` (cached in memory per process)."""
    if name.startswith("npz:"):
        p = Path(name[4:])
        key = (name, p.stat().st_mtime_ns if p.is_file() else None)
        if key not in _CACHE:
            _CACHE[key] = load_npz(name[4:])
        return _CACHE[key]
    loader = DATASETS.get(name)
    key = (name, str(data_dir) if data_dir else None)
    if key not in _CACHE:
        _CACHE[key] = loader(data_dir=data_dir, quiet=quiet)
    return _CACHE[key]


def register_dataset(name: str, data: Dataset) -> str:
    """Make an in-memory dataset (``from_arrays(...)``) loadable by name for this process, so every runner
    and config (``IMPConfig(dataset=name)``, ``run_dst``, ...) takes it. Returns the name. A name taken by a
    built-in dataset, or by another dataset, is refused."""

    if name in DATASETS or name.startswith("npz:"):
        raise UserError(f"dataset name {name!r} is taken; pick another")
    DATASETS.register(name)(lambda data_dir=None, quiet=False: data)
    return name


__all__ = [
    "DATASETS",
    "Dataset",
    "build_dataset",
    "from_arrays",
    "load_dataset",
    "load_npz",
    "register_dataset",
    "with_label_noise",
]
