"""The in-memory dataset every trainer consumes, and the fixed validation split."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch


@dataclass
class Dataset:
    """Float inputs (N, *input_shape) and int64 labels for train, validation and test, all in memory."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    # The standardisation the inputs went through (x = (pixels - mean) / std, per channel, shaped like one
    # input with singleton non-channel dimensions) and the pixels' valid range: what attacks need to work
    # in pixel units. None where the data has no pixels (a signal like MNIST-1D: no range to clamp to).
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    pixel_range: tuple[float, float] | None = None
    # its tensor fields (mean and std may be None): what moves to a device, is sent to other ranks, is compared
    TENSORS: ClassVar[tuple[str, ...]] = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "mean", "std")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: str | torch.device) -> Dataset:
        return replace(self, **{k: getattr(self, k).to(device) for k in self.TENSORS if getattr(self, k) is not None})

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name}: train {len(self.y_train)}, val {len(self.y_val)}, "
            f"test {len(self.y_test)}, input {self.input_shape}, {self.num_classes} classes)"
        )


# The validation split never depends on the run's seed: every run of a dataset sees the same one.
VAL_SPLIT_SEED = 1234


def build_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    val_size: int,
    num_classes: int,
    pixel_range: tuple[float, float] | None = None,
    val_index: np.ndarray | None = None,
) -> Dataset:
    """Carve a fixed validation set from the training set and standardise per channel with train statistics.

    Inputs arrive as (N, C, ...) float arrays; channel statistics are over the training part only.
    ``pixel_range``: the raw inputs' valid range ((0, 1) for images scaled to [0, 1]), kept for attacks.
    """
    n = len(y_train)
    if not 0 < val_size < n:
        raise ValueError(f"val_size {val_size} must be in (0, {n})")
    if val_index is not None:  # a validation split given with the data (``from_arrays``)
        chosen = np.zeros(n, dtype=bool)
        chosen[val_index] = True
        val_idx, train_idx = np.flatnonzero(chosen), np.flatnonzero(~chosen)
    else:
        perm = np.random.default_rng(VAL_SPLIT_SEED).permutation(n)
        val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    xt, xv = x_train[train_idx], x_train[val_idx]
    axes = (0,) + tuple(range(2, x_train.ndim))
    mean = xt.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = xt.std(axis=axes, keepdims=True, dtype=np.float64) + 1e-8

    def norm(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    def lab(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    stats = lambda a: torch.from_numpy(a[0].astype(np.float32))  # noqa: E731  (C, 1, ...): one input's shape
    return Dataset(
        name,
        norm(xt),
        lab(y_train[train_idx]),
        norm(xv),
        lab(y_train[val_idx]),
        norm(x_test),
        lab(y_test),
        num_classes,
        mean=stats(mean),
        std=stats(std),
        pixel_range=pixel_range,
    )


def with_label_noise(data: Dataset, fraction: float, seed: int) -> Dataset:
    """A copy whose training labels are, for a fixed random ``fraction`` of examples, replaced by a uniformly
    drawn different class (symmetric noise, as in the sparse double descent experiments). Validation and
    test labels stay clean."""
    if fraction <= 0:
        return data
    g = torch.Generator().manual_seed(int(seed))
    y = data.y_train.clone().cpu()
    n = len(y)
    idx = torch.randperm(n, generator=g)[: int(round(fraction * n))]
    shift = torch.randint(1, data.num_classes, (len(idx),), generator=g)
    y[idx] = (y[idx] + shift) % data.num_classes
    return replace(data, y_train=y.to(data.y_train.device))
