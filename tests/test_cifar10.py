import io
import tarfile

import numpy as np
import pytest

from ticketlab.data import cifar10
from ticketlab.errors import UserError


def batch_bytes(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1)
    return rec.astype(np.uint8).tobytes()


def write_archive(path, n=8, drop=None):
    with tarfile.open(path, "w:gz") as tar:
        for i, name in enumerate(cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,)):
            if name == drop:
                continue
            data = batch_bytes(n, i)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_binary_archive_parsed_without_pickle(tmp_path):
    write_archive(tmp_path / "cifar-10-binary.tar.gz", n=1200)
    d = cifar10.load_cifar10(data_dir=tmp_path)
    assert d.input_shape == (3, 32, 32)
    assert len(d.y_train) + len(d.y_val) == 6000 and len(d.y_test) == 1200


def test_extracted_folder_is_used(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i, name in enumerate(cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,)):
        (folder / name).write_bytes(batch_bytes(1200, i))
    assert len(cifar10.load_cifar10(data_dir=tmp_path).y_test) == 1200


def test_record_layout_label_then_channel_major_pixels():
    raw = bytes([7]) + bytes(range(256)) * 12
    x, y = cifar10.parse_batch(raw, "b")
    assert y.tolist() == [7] and x.shape == (1, 3, 32, 32) and x[0, 0, 0, 1] == 1 and x[0, 1, 0, 0] == 0


def test_truncated_batch_is_a_clear_error():
    with pytest.raises(UserError, match="truncated"):
        cifar10.parse_batch(batch_bytes(2, 0)[:-5], "data_batch_1.bin")


def test_archive_missing_a_batch_is_foreign(tmp_path):
    write_archive(tmp_path / "a.tar.gz", drop="test_batch.bin")
    with pytest.raises(UserError, match="lacks test_batch.bin"):
        cifar10.read_archive(tmp_path / "a.tar.gz")


def test_corrupt_archive_is_a_clear_error(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(UserError, match="corrupt"):
        cifar10.read_archive(tmp_path / "a.tar.gz")
