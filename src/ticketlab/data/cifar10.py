"""CIFAR-10 from the binary-format archive (``cifar-10-binary.tar.gz``), parsed without pickle."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import build_dataset
from .download import RemoteFile, find_files, locate_or_download
from .registry import DATASETS

ARCHIVE = RemoteFile(
    "cifar-10-binary.tar.gz",
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
)
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH = "test_batch.bin"
RECORD = 1 + 3 * 32 * 32


def parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(raw) == 0 or len(raw) % RECORD:
        raise UserError(f"{where} is truncated or not a CIFAR-10 binary batch; replace the dataset files")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise UserError(f"{where}: labels outside 0..9; not a CIFAR-10 binary batch")
    return rec[:, 1:].reshape(-1, 3, 32, 32), labels


def read_archive(path: Path) -> dict[str, bytes]:
    wanted = set(TRAIN_BATCHES + (TEST_BATCH,))
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:
                    out[base] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path} is corrupt or truncated ({e}); delete it to re-download") from None
    missing = wanted - out.keys()
    if missing:
        raise UserError(f"{path} lacks {', '.join(sorted(missing))}; it is not the CIFAR-10 binary archive")
    return out


def load_batches(batches: dict[str, bytes]):
    parts = [parse_batch(batches[b], b) for b in TRAIN_BATCHES]
    xtr = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = parse_batch(batches[TEST_BATCH], TEST_BATCH)
    return build_dataset(
        "cifar10", xtr, ytr, xte.astype(np.float32) / 255.0, yte, val_size=5000, num_classes=10, pixel_range=(0.0, 1.0)
    )


@DATASETS.register("cifar10")
def load_cifar10(data_dir: str | Path | None = None, quiet: bool = False):
    # An already-extracted ``cifar-10-batches-bin/`` folder is used as is.
    names = TRAIN_BATCHES + (TEST_BATCH,)
    for sub in ("cifar-10-batches-bin", "."):
        found = find_files("cifar10", [f"{sub}/{n}" for n in names], data_dir)
        if found is not None:
            return load_batches({n: (found / sub / n).read_bytes() for n in names})
    folder = locate_or_download("cifar10", [ARCHIVE], data_dir, quiet=quiet)
    return load_batches(read_archive(folder / ARCHIVE.filename))
