import numpy as np
import pytest
import torch

from ticketlab.data import build_dataset


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No test sees the user's data folders or cache, or changes torch's thread count."""
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("TICKETLAB_DATA", raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_data():
    """A small learnable 10-class problem: 1-D inputs (1, 16), labels from a fixed linear map."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 10))
    x = rng.normal(size=(400, 1, 16)).astype(np.float32)
    y = (x[:, 0] @ w).argmax(1)
    return build_dataset("tiny", x[:300], y[:300], x[300:], y[300:], val_size=50, num_classes=10)
