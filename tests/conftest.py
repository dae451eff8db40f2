import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

from ticketlab.data import build_dataset

# Property tests: a fixed sequence of examples (repeatable in CI), no example database written to disk.
# TICKETLAB_HYPOTHESIS=explore draws 2000 fresh examples per property instead.
settings.register_profile(
    "ticketlab",
    derandomize=True,
    database=None,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore", database=None, max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("TICKETLAB_HYPOTHESIS", "ticketlab"))


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


def pytest_collection_modifyitems(config, items):
    """Under mutmut (``make mutation``), run a mutant's tests fastest first, so a killed mutant dies early."""
    if not os.environ.get("MUTANT_UNDER_TEST"):
        return
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from its mutants/ folder
    if stats.exists():
        duration = json.loads(stats.read_text()).get("duration_by_test", {})
        items.sort(key=lambda item: duration.get(item.nodeid, 0.0))
