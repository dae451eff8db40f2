"""MNIST and Fashion-MNIST from the standard IDX ``.gz`` files (parsed strictly, no pickle)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import build_dataset
from .download import RemoteFile, locate_or_download
from .registry import DATASETS

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_SHA256 = (
    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
)
FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
FASHION_SHA256 = (
    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
)
# Where Debian's package ``dataset-fashion-mnist`` installs the files (recompressed, so their
# gzip checksums differ from the mirrors'; local files are checked by strict parsing instead).
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def remotes(mirrors: tuple[str, ...], sums: tuple[str, ...]) -> list[RemoteFile]:
    return [RemoteFile(f, s, tuple(m + f for m in mirrors)) for f, s in zip(IDX_FILES, sums)]


def read_idx(path: Path, expect_ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes; a corrupt, truncated or foreign file is a UserError."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path} is corrupt or truncated ({e}); delete it or replace it with a good copy") from None
    if len(raw) < 4:
        raise UserError(f"{path} is not an IDX file (too short); replace it with a good copy")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim != expect_ndim:
        raise UserError(f"{path} is not an IDX file of {expect_ndim}-d unsigned bytes; replace it with a good copy")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims))
    if len(raw) != header + count:
        raise UserError(
            f"{path} is truncated or corrupt (expected {header + count} bytes, found {len(raw)}); "
            "replace it with a good copy"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_folder(folder: Path, name: str, val_size: int = 5000):
    xtr, ytr, xte, yte = (read_idx(folder / f, nd) for f, nd in zip(IDX_FILES, (3, 1, 3, 1)))
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise UserError(f"{folder}: image and label counts differ; replace the files with good copies")
    if ytr.max(initial=0) > 9 or yte.max(initial=0) > 9:
        raise UserError(f"{folder}: labels outside 0..9; these are not {name} files")
    as_float = lambda a: (a.astype(np.float32) / 255.0)[:, None]  # noqa: E731  (N, 1, 28, 28)
    return build_dataset(
        name,
        as_float(xtr),
        ytr,
        as_float(xte),
        yte,
        val_size=min(val_size, len(ytr) // 10 or 1),
        num_classes=10,
        pixel_range=(0.0, 1.0),
    )


@DATASETS.register("mnist")
def load_mnist(data_dir: str | Path | None = None, quiet: bool = False):
    folder = locate_or_download("mnist", remotes(MNIST_MIRRORS, MNIST_SHA256), data_dir, quiet=quiet)
    return load_idx_folder(folder, "mnist")


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(data_dir: str | Path | None = None, quiet: bool = False):
    folder = locate_or_download(
        "fashion-mnist",
        remotes(FASHION_MIRRORS, FASHION_SHA256),
        data_dir,
        system_dirs=(DEBIAN_FASHION_DIR,),
        hint=", or `apt-get install dataset-fashion-mnist`",
        quiet=quiet,
    )
    return load_idx_folder(folder, "fashion-mnist")
