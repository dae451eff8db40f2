"""Helpers shared by tests: writing small IDX files, dying after checkpoints, one-line errors."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np


def write_idx(path, array: np.ndarray, truncate: int = 0) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file; ``truncate`` drops that many trailing bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(raw[: len(raw) - truncate] if truncate else raw)


def write_idx_set(folder, n_train: int = 60, n_test: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_train))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n_test))


def die_after_checkpoints(monkeypatch, n: int = 1):
    """Make the n-th checkpoint save raise KeyboardInterrupt right after writing (a kill at that moment).

    Returns a function that restores normal saving.
    """
    from ticketlab.train import Checkpointer

    real = Checkpointer.save
    saves = {"n": 0}

    def dying(self, *a, **kw):
        real(self, *a, **kw)
        saves["n"] += 1
        if saves["n"] == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "save", dying)
    return lambda: monkeypatch.setattr(Checkpointer, "save", real)


def one_line_exit_2(code, err, expected):
    """A user error: exit code 2 and one line on stderr that says ``expected``, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err


def killed_then_resumed(run, cfg, where, monkeypatch, n: int = 1, **kw):
    """``run(cfg, where, **kw)`` killed right after its n-th checkpoint, then run again to the end; returns the
    resumed run's summary (to compare with an uninterrupted one)."""
    import pytest

    restore = die_after_checkpoints(monkeypatch, n)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, where, **kw)
    restore()
    return run(cfg, where, **kw)


def without_config(summary: dict) -> dict:
    """A summary without its config (which holds the run folder's own paths)."""
    return {k: v for k, v in summary.items() if k != "config"}


def write_imp_source(path, model: str = "mlp1d", dataset: str = "digits", seed: int = 0, test_acc: float = 0.5):
    """A finished IMP run's round 0 written by hand (config, summary and untrained weights): what the commands
    that start from a trained dense parent (compress, neurons, deadwood) read of ``--source``, without training
    it. Returns ``path``."""
    from ticketlab.data import load_dataset
    from ticketlab.io import save_tensors, write_json
    from ticketlab.models import build_model

    data = load_dataset(dataset, None, quiet=True)
    net = build_model(model, data.input_shape, data.num_classes, seed=seed)
    write_json(path / "config.json", {"kind": "imp", "config": {"model": model, "dataset": dataset, "seed": seed}})
    write_json(path / "summary.json", {"rounds": [{"round": 0, "density": 1.0, "test_acc": test_acc}]})
    save_tensors(path / "round_00" / "final.safetensors", net.state_dict())
    return path


FAULTS = Path(__file__).parent / "faults"  # sitecustomize.py: fault injection in child processes
FAULT_ENV = "TICKETLAB_TEST_KILL_AFTER_CHECKPOINT"


def fault_env(marker: Path) -> dict:
    """The environment under which the first child process to save a checkpoint creates ``marker`` and is
    killed (tests/faults/sitecustomize.py)."""
    path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH", "")) if p)
    return {FAULT_ENV: str(marker), "PYTHONPATH": path}


def arm_fault(monkeypatch, marker: Path) -> None:
    for k, v in fault_env(marker).items():
        monkeypatch.setenv(k, v)


# Chromium's flags on a closed network: no sandbox (root in CI), and none of its own background requests.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def chromium():
    """(playwright.sync_api, the chromium executable): Debian's headless Chromium (.ci/run installs it), driven
    by Playwright; the browser tests skip, saying why, without either."""
    import shutil

    import pytest

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    exe = os.environ.get("TICKETLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("no chromium here: apt-get install chromium (the browser tests skip without it)")
    return sync_api, exe
