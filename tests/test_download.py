import hashlib
import http.server
import threading
from functools import partial

import pytest
from helpers import write_idx_set

from ticketlab.data import download as dl
from ticketlab.data import idx
from ticketlab.errors import UserError


def remote_for(path, sha=None, urls=None):
    data = path.read_bytes()
    return dl.RemoteFile(path.name, sha or hashlib.sha256(data).hexdigest(), tuple(urls or [path.as_uri()]))


def test_download_from_file_url_verifies_and_caches(tmp_path):
    src = tmp_path / "src" / "f.bin"
    src.parent.mkdir()
    src.write_bytes(b"hello" * 1000)
    dest = dl.download(remote_for(src), tmp_path / "cache", quiet=True)
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["f.bin"]


def test_checksum_mismatch_leaves_nothing_in_cache(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"hello")
    with pytest.raises(UserError, match="SHA-256 mismatch"):
        dl.download(remote_for(src, sha="0" * 64), tmp_path / "cache", quiet=True)
    assert list((tmp_path / "cache").iterdir()) == []


def test_next_mirror_is_tried_when_one_fails(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"data")
    r = remote_for(src, urls=[(tmp_path / "missing" / "f.bin").as_uri(), src.as_uri()])
    assert dl.download(r, tmp_path / "cache", quiet=True).read_bytes() == b"data"


def test_corrupt_cached_file_is_reported(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"data")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "f.bin").write_bytes(b"dat")
    with pytest.raises(UserError, match="corrupt.*delete it"):
        dl.download(remote_for(src), tmp_path / "cache", quiet=True)


@pytest.fixture
def loopback_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_mnist_downloaded_from_loopback_mirror(loopback_server, monkeypatch, tmp_path):
    root, url = loopback_server
    write_idx_set(root)
    sums = tuple(dl.sha256_file(root / f) for f in idx.IDX_FILES)
    monkeypatch.setattr(idx, "MNIST_MIRRORS", (url,))
    monkeypatch.setattr(idx, "MNIST_SHA256", sums)
    d = idx.load_mnist(quiet=True)
    assert len(d.y_test) == 20
    assert sorted(p.name for p in (dl.cache_dir() / "mnist").iterdir()) == sorted(idx.IDX_FILES)
    # A second load uses the verified cache (the server is not needed any more).
    monkeypatch.setattr(idx, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))
    assert len(idx.load_mnist(quiet=True).y_test) == 20


def test_truncated_download_is_rejected_and_not_cached(loopback_server, monkeypatch):
    root, url = loopback_server
    write_idx_set(root)
    sums = tuple(dl.sha256_file(root / f) for f in idx.IDX_FILES)
    full = (root / idx.IDX_FILES[0]).read_bytes()
    (root / idx.IDX_FILES[0]).write_bytes(full[: len(full) // 2])  # the server now sends half a file
    monkeypatch.setattr(idx, "MNIST_MIRRORS", (url,))
    monkeypatch.setattr(idx, "MNIST_SHA256", sums)
    with pytest.raises(UserError, match="SHA-256 mismatch"):
        idx.load_mnist(quiet=True)
    cached = dl.cache_dir() / "mnist"
    assert not (cached / idx.IDX_FILES[0]).exists()
    assert not any(p.name.endswith(".part") for p in cached.iterdir())


def test_missing_dataset_names_the_ways_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.setattr(idx, "FASHION_MIRRORS", ((tmp_path / "nowhere").as_uri() + "/",))
    monkeypatch.setattr(idx, "DEBIAN_FASHION_DIR", str(tmp_path / "no-debian"))
    with pytest.raises(UserError) as e:
        idx.load_fashion_mnist(quiet=True)
    msg = str(e.value)
    assert "--data-dir" in msg and "TICKETLAB_DATA" in msg and "apt-get install dataset-fashion-mnist" in msg
