"""A refusal changes nothing: every file of a finished run damaged in each way, every command that reads it
re-run: exit 0 or 2, one line and no traceback, and on exit 2 the folder byte for byte as it was."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ticketlab.cli import main

TINY = ["--dataset", "digits", "--model", "lenet300", "--iterations", "20", "--eval-every", "10", "--quiet"]
RUNS = {
    "imp": ["imp", *TINY, "--rounds", "1", "--control", "reinit"],
    "dst": ["dst", *TINY, "--method", "rigl", "--density", "0.2", "--delta-t", "5"],
    "supermask": ["supermask", *TINY],
    "seeds": ["imp", *TINY, "--rounds", "1", "--seeds", "2"],
    "sweep": ["sweep", "imp", "--vary", "rate=0.2,0.3", *TINY, "--rounds", "1"],
}
# the commands that read a finished run, beside resuming it ({run}: its folder)
READERS = {
    "imp": [["robustness", "{run}", "--samples", "20", "--quiet"], ["verify", "{run}", "--samples", "4", "--quiet"]],
    "dst": [["show", "{run}"]],
    "supermask": [["show", "{run}"]],
    "seeds": [["show", "{run}"]],
    "sweep": [["show", "{run}"], ["runs", "{run}"]],
}


def folder_hash(folder: Path) -> dict[str, str]:
    """Every file's hash, but the lock's (runs.lock: it holds the pid of the last process in the folder)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run of each kind (made once for this module)."""
    root = tmp_path_factory.mktemp("finished")
    for name, argv in RUNS.items():
        assert main([*argv, "--out", str(root / name)]) == 0
    for argv in READERS["imp"]:
        assert main([a.format(run=root / "imp") for a in argv]) == 0
    return root


def _tensors_damage(path: Path, how: str) -> None:
    t = load_file(str(path))
    if how == "nan":
        t = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in t.items()}
    else:  # another model's shapes under the same names
        t = {k: torch.zeros([s + 1 for s in v.shape] or [2], dtype=v.dtype) for k, v in t.items()}
    save_file(t, str(path))


def damage(path: Path, how: str) -> bool:
    """Damage ``path`` in place in the way ``how``; False where that way does not apply to its kind."""
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(bytes((b * 37 + 11) % 256 for b in data))
    elif how in ("list", "wrong-types"):
        if path.suffix != ".json":
            return False
        obj = json.loads(data)
        if how == "list":
            obj = [obj]
        else:  # every number a string, every list a number
            obj = _retype(obj)
        path.write_text(json.dumps(obj))
    elif how in ("nan", "shapes"):
        if path.suffix != ".safetensors":
            return False
        _tensors_damage(path, how)
    return True


def _retype(obj):
    if isinstance(obj, dict):
        return {k: _retype(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return 7
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, (int, float)):
        return "x"
    return obj


DAMAGES = ["empty", "truncated", "garbage", "list", "wrong-types", "nan", "shapes"]


def _cases():
    files = {
        "imp": [
            "config.json",
            "summary.json",
            "init.safetensors",
            "round_00/final.safetensors",
            "round_00/metrics.json",
            "round_01/mask.safetensors",
            "round_01/final.safetensors",
            "round_01/metrics.json",
            "round_01/reinit/final.safetensors",
            "round_01/reinit/metrics.json",
        ],
        "dst": ["config.json", "summary.json", "train_0/final.safetensors", "train_0/mask.safetensors"]
        + ["train_0/metrics.json", "train_0/result.json"],
        "supermask": ["config.json", "summary.json", "final.safetensors", "mask.safetensors", "result.json"],
        "seeds": ["config.json", "summary.json", "seed_1/config.json", "seed_1/round_01/final.safetensors"]
        + ["seed_1/round_01/metrics.json", "seed_1/summary.json"],
        "sweep": ["config.json", "sweep.json", "rate=0.2/config.json", "rate=0.2/summary.json"]
        + ["rate=0.3/seed_0/round_01/final.safetensors", "rate=0.3/seed_0/summary.json"],
    }
    for kind, names in files.items():
        for name in names:
            for how in DAMAGES:
                yield kind, name, how


def rerun(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err

    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    return code, err


@pytest.mark.parametrize(("kind", "name", "how"), list(_cases()), ids=["-".join(c) for c in _cases()])
def test_a_refused_rerun_of_a_damaged_run_leaves_every_byte_as_it_was(finished, tmp_path, capsys, kind, name, how):
    run = tmp_path / kind
    shutil.copytree(finished / kind, run)
    if not (run / name).exists():
        pytest.skip(f"{name} not written by this run")
    if not damage(run / name, how):
        pytest.skip(f"{how} does not apply to {name}")
    commands = [[*RUNS[kind], "--out", str(run)]] + [[a.format(run=run) for a in r] for r in READERS[kind]]
    for argv in commands:
        before = folder_hash(run)
        code, err = rerun(argv, capsys)
        if code == 2:
            assert folder_hash(run) == before, f"{argv[0]} refused ({err.strip()}) but changed files"


def _random_damage(path: Path, rng) -> None:
    data = bytearray(path.read_bytes())
    how = rng.integers(3)
    if how == 0 and data:  # a few bytes overwritten
        for _ in range(int(rng.integers(1, 9))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
    elif how == 1:  # cut short
        del data[int(rng.integers(len(data) + 1)) :]
    else:  # garbage appended
        data += bytes(rng.integers(0, 256, int(rng.integers(1, 64))).tolist())
    path.write_bytes(bytes(data))


def test_random_byte_damage_to_any_file_of_a_finished_run_is_survived_or_refused_changing_nothing(
    finished, tmp_path, capsys
):
    """300 seeded cases: a random file of a random finished run damaged at random, then one command that reads
    the run: exit 0 or 2, never a traceback, and a refusal leaves the folder as it found it."""
    import numpy as np

    rng = np.random.default_rng(29)
    outcomes = {0: 0, 2: 0}
    for case in range(300):
        kind = list(RUNS)[int(rng.integers(len(RUNS)))]
        run = tmp_path / f"{case}" / kind
        shutil.copytree(finished / kind, run)
        files = sorted(p for p in run.rglob("*") if p.is_file() and p.name != ".lock")
        _random_damage(files[int(rng.integers(len(files)))], rng)
        commands = [[*RUNS[kind], "--out", str(run)]] + [[a.format(run=run) for a in r] for r in READERS[kind]]
        argv = commands[int(rng.integers(len(commands)))]
        before = folder_hash(run)
        code, err = rerun(argv, capsys)
        outcomes[code] += 1
        if code == 2:
            assert folder_hash(run) == before, f"case {case}: {argv[0]} refused ({err.strip()}) but changed files"
        shutil.rmtree(tmp_path / f"{case}")
    assert outcomes[0] > 30 and outcomes[2] > 30, outcomes  # both kinds of outcome are exercised
