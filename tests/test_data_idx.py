from pathlib import Path

import numpy as np
import pytest
from helpers import write_idx, write_idx_set

from ticketlab.data.idx import DEBIAN_FASHION_DIR, load_fashion_mnist, load_mnist, read_idx
from ticketlab.errors import UserError


def test_idx_files_from_data_dir(tmp_path):
    write_idx_set(tmp_path / "mnist", n_train=60, n_test=20)
    d = load_mnist(data_dir=tmp_path)  # found in <data-dir>/mnist/
    assert d.input_shape == (1, 28, 28)
    assert len(d.y_train) + len(d.y_val) == 60 and len(d.y_test) == 20


def test_idx_from_env_var(tmp_path, monkeypatch):
    write_idx_set(tmp_path)
    monkeypatch.setenv("TICKETLAB_DATA", str(tmp_path))
    assert len(load_mnist().y_test) == 20


def test_truncated_idx_is_a_clear_error(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((5, 28, 28)), truncate=100)
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_idx(tmp_path / "a.gz", 3)


def test_broken_gzip_is_a_clear_error(tmp_path):
    (tmp_path / "a.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(UserError, match="corrupt"):
        read_idx(tmp_path / "a.gz", 3)


def test_foreign_idx_is_rejected(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((5,)))
    with pytest.raises(UserError, match="not an IDX file of 3-d"):
        read_idx(tmp_path / "a.gz", 3)


@pytest.mark.skipif(not Path(DEBIAN_FASHION_DIR).is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package():
    d = load_fashion_mnist()
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (55000, 5000, 10000)
    assert d.input_shape == (1, 28, 28)
