"""Small datasets that need no files: MNIST-1D (generated) and scikit-learn's 8x8 digits."""

from __future__ import annotations

import gzip
import importlib.util
import random
from pathlib import Path

import numpy as np

from .base import build_dataset
from .registry import DATASETS


@DATASETS.register("mnist1d")
def load_mnist1d(data_dir=None, quiet: bool = False):
    """MNIST-1D (Greydanus 2020), generated with its default arguments (seed 42): 4000 train, 1000 test, length 40.

    The generator reseeds Python's and NumPy's global RNGs; their states are restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # mnist1d: a second of imports, only for its data

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.asarray(d["x"], dtype=np.float32)[:, None]  # (N, 1, 40)
    xt = np.asarray(d["x_test"], dtype=np.float32)[:, None]
    return build_dataset("mnist1d", x, np.asarray(d["y"]), xt, np.asarray(d["y_test"]), val_size=400, num_classes=10)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) in 0..16 as float64, labels) of scikit-learn's bundled digits, read from its data
    file directly: importing sklearn.datasets costs most of a second, more than a small run itself. Falls back
    to sklearn's loader where the file is not where scikit-learn has always kept it."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits as sk_load  # the same data, the slow way

        d = sk_load()
        return d.images, d.target
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


@DATASETS.register("digits")
def load_digits(data_dir=None, quiet: bool = False):
    """scikit-learn's bundled 8x8 digits (1797 images): a fixed 360-image test split, 144 for validation."""
    images, target = digits_arrays()
    x = (images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    test, train = perm[:360], perm[360:]
    return build_dataset(
        "digits", x[train], y[train], x[test], y[test], val_size=144, num_classes=10, pixel_range=(0.0, 1.0)
    )
