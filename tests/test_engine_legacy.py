"""Run directories written before the engine issue (tests/fixtures/legacy, made by its make.py at commit
1f3b31b and cut back to an interrupted state) resume under today's code and finish to the summary the
earlier code gives on the same kind of machine, bitwise.

The training left to do runs on the test's machine, and float32 kernels give other last bits on CPUs with
other instruction sets, so the earlier code's summaries are recorded per machine (fixtures/legacy/record.py,
keyed by a probe of the machine's float arithmetic on the fixtures' own weights). On a machine whose probe
matches none, the test skips, saying how to record its summaries."""
import json
import shutil
import sys
from pathlib import Path

import pytest

from ticketlab.cli import main

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
RENAMED = {"sweep": "double-descent"}  # commands renamed since; their stored run kind is still accepted
sys.path.insert(0, str(LEGACY))
from record import probe  # noqa: E402

MACHINES = json.loads((LEGACY / "machines.json").read_text())


def expected_summary(name: str) -> dict:
    """The summary the earlier code finishes ``name`` to on a machine of this kind."""
    key = probe().hex()
    if key not in MACHINES:
        pytest.skip(f"this CPU's float arithmetic matches none of the machines the legacy summaries were recorded "
                    f"on (probe {key}); record them with tests/fixtures/legacy/record.py at commit 1f3b31b")
    return json.loads((LEGACY / "expected" / MACHINES[key] / f"{name}.json").read_text())


def test_the_machine_probe_tells_the_recorded_machines_apart():
    labels = set(MACHINES.values())
    assert len(labels) == len(MACHINES) and {"reference"} <= labels
    # the probe is the learning distance each machine's own sweep summary holds for the round it recomputes
    for key, label in MACHINES.items():
        summary = json.loads((LEGACY / "expected" / label / "sweep.json").read_text())
        assert summary["imp"][1]["learning_distance"] == float.fromhex(key)


@pytest.mark.parametrize("name", ["imp", "dst", "structured", "prune-init", "supermask", "sweep"])
def test_a_run_directory_from_before_the_engine_resumes_to_the_same_summary(tmp_path, name):
    expected = expected_summary(name)
    run = tmp_path / name
    shutil.copytree(LEGACY / name, run)
    argv = (LEGACY / f"{name}.argv").read_text().split()
    argv[0] = RENAMED.get(argv[0], argv[0])
    assert main([*argv, "--out", str(run)]) == 0
    got = json.loads((run / "summary.json").read_text())
    if name == "dst":  # its config in today's schema: an older rigl run resumes with the step applied on updates
        from ticketlab.dst.runner import normalize_dst

        expected["config"] = normalize_dst(expected["config"])
        assert expected["config"]["step_on_update"] == "apply"
    assert got == expected


def test_the_default_folder_of_a_renamed_kind_is_its_old_one_when_that_exists(tmp_path):
    from ticketlab.runs.rundir import default_run_dir, open_run_dir

    config = {"model": "mlp1d"}
    assert default_run_dir("double-descent", config, tmp_path, ("sweep",)).name.startswith("double-descent-")
    old = open_run_dir(default_run_dir("sweep", config, tmp_path), "sweep", config)
    assert default_run_dir("double-descent", config, tmp_path, ("sweep",)) == old
