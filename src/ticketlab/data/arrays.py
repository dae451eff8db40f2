"""Your own data: ``--dataset npz:PATH`` on every command, ``from_arrays(...)`` from Python.

An ``.npz`` file holds ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally ``x_val``, ``y_val``
(otherwise a fixed 10% of the training set, at most 5000 examples, is held out, as for the built-in
datasets). Inputs are (N, ...) of any shape, taken as given: (N, F) for features, (N, C, L) for signals,
(N, C, H, W) for images (a grayscale (N, H, W) array needs its channel axis, (N, 1, H, W): a 3-D array
is read as signals). Labels are integers 0..K-1 (K = the largest label +
1). Inputs are standardised per channel with training statistics like every dataset. The file is read with
``allow_pickle=False``: an object array (which would need unpickling) is refused, never loaded. The inputs'
valid range (for attacks and augmentations) is an optional ``pixel_range`` array [lo, hi]; without it,
inputs that all lie in [0, 1] are taken as images scaled to (0, 1), others have no pixel range.
"""

from __future__ import annotations

import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import Dataset, build_dataset

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


MAX_CLASSES = 100_000  # a label beyond this is a mistake (a model's output layer would be that wide)


def _fail(where: str, what: str) -> UserError:
    return UserError(f"{where}: {what}")


def from_arrays(
    x_train,
    y_train,
    x_test,
    y_test,
    x_val=None,
    y_val=None,
    *,
    name: str = "arrays",
    num_classes: int | None = None,
    pixel_range: tuple[float, float] | None = None,
) -> Dataset:
    """A ``Dataset`` from arrays (numpy or anything ``np.asarray`` takes), checked: matching lengths, one input
    shape, finite values, integer labels in [0, num_classes). Accepted wherever a loaded dataset is."""
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    if (x_val is None) != (y_val is None):
        raise _fail(name, "give both x_val and y_val, or neither")
    if x_val is not None:
        arrays |= {"x_val": x_val, "y_val": y_val}
    out = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise _fail(name, f"{k} is an object array; store numbers")
        out[k] = a
    for part in ("train", "test", "val"):
        if f"x_{part}" not in out:
            continue
        x, y = out[f"x_{part}"], out[f"y_{part}"]
        if x.ndim < 2:
            raise _fail(name, f"x_{part} must be (N, ...) with at least one feature axis, got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise _fail(
                name, f"y_{part} must be a vector of {len(x)} labels (one per row of x_{part}), got shape {y.shape}"
            )
        if len(x) == 0:
            raise _fail(name, f"x_{part} is empty")
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise _fail(name, f"x_{part} must hold finite numbers (NaN or inf found, or not numeric)")
        if not np.issubdtype(y.dtype, np.integer):
            if not (np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all()):
                raise _fail(name, f"y_{part} must hold integer class labels, got dtype {y.dtype}")
        if (y < 0).any():
            raise _fail(name, f"y_{part} has negative labels; labels are 0..K-1")
    shapes = {k: out[k].shape[1:] for k in out if k.startswith("x_")}
    if len(set(shapes.values())) != 1:
        raise _fail(name, f"inputs differ in shape: {shapes}")
    k = int(max(int(out[f"y_{p}"].max()) for p in ("train", "test", "val") if f"y_{p}" in out)) + 1
    if k > MAX_CLASSES and (num_classes is None or num_classes > MAX_CLASSES):
        raise _fail(
            name, f"labels go up to {k - 1:,}, more than {MAX_CLASSES:,} classes; labels are 0..K-1 (renumber them)"
        )
    if num_classes is not None:
        if k > num_classes:
            raise _fail(name, f"labels go up to {k - 1}, beyond num_classes {num_classes}")
        k = num_classes
    if k < 2:
        raise _fail(name, "a classification dataset needs at least 2 classes")

    xs = {p: out[f"x_{p}"].astype(np.float32) for p in ("train", "test", "val") if f"x_{p}" in out}
    ys = {p: out[f"y_{p}"].astype(np.int64) for p in xs}
    if "val" in xs:  # the given validation split: appended, then carved back out exactly
        n, v = len(ys["train"]), len(ys["val"])
        data = build_dataset(
            name,
            np.concatenate([xs["train"], xs["val"]]),
            np.concatenate([ys["train"], ys["val"]]),
            xs["test"],
            ys["test"],
            v,
            k,
            pixel_range,
            val_index=np.arange(n, n + v),
        )
    else:
        n = len(ys["train"])
        if n < 2:
            raise _fail(name, "x_train needs at least 2 examples to hold some out for validation")
        val = min(5000, max(1, n // 10))
        data = build_dataset(name, xs["train"], ys["train"], xs["test"], ys["test"], val, k, pixel_range)
    return data


def load_npz(path: str | Path) -> Dataset:
    """``npz:PATH``: the arrays of an .npz file as a dataset (see the module docstring)."""
    p = Path(path)
    where = f"npz:{path}"
    if not p.is_file():
        raise UserError(f"--dataset {where}: no such file")
    if not zipfile.is_zipfile(p):  # np.load would take anything else for a pickle (and refuse it)
        raise _fail(f"--dataset {where}", "is not a readable .npz file; write it with numpy.savez")
    try:
        with np.load(p, allow_pickle=False) as f:
            keys = set(f.files)
            missing = [k for k in REQUIRED if k not in keys]
            if missing:
                raise _fail(where, f"missing arrays {', '.join(missing)} (it has: {', '.join(sorted(keys)) or 'none'})")
            arrays = {k: f[k] for k in (*REQUIRED, "x_val", "y_val") if k in keys}
            rng = f["pixel_range"] if "pixel_range" in keys else None
    except UserError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):  # object arrays need pickle: refused
            raise _fail(
                where, f"cannot be read without unpickling ({str(e).splitlines()[0]}); store plain arrays"
            ) from None
        raise _fail(where, "is not a readable .npz file (ValueError); write it with numpy.savez") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, SyntaxError, tokenize.TokenError) as e:
        # a damaged file: a failed CRC, a truncated or garbled member, an array header that does not parse
        raise _fail(where, f"is not a readable .npz file ({type(e).__name__}); write it with numpy.savez") from None
    if rng is not None:
        if rng.shape != (2,) or not np.isfinite(rng).all() or not rng[0] < rng[1]:
            raise _fail(where, f"pixel_range must be two numbers lo < hi, got {rng.tolist()}")
        pixel_range = (float(rng[0]), float(rng[1]))
    else:  # inputs scaled to [0, 1], as images usually are: attacks and augmentations clamp to that range
        inside = all(
            float(a.min()) >= 0 and float(a.max()) <= 1
            for k, a in arrays.items()
            if k.startswith("x_") and np.issubdtype(a.dtype, np.number) and a.size  # (empty: refused below)
        )
        pixel_range = (0.0, 1.0) if inside else None
    return from_arrays(**arrays, name=where, pixel_range=pixel_range)
