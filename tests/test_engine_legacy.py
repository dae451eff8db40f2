"""Run directories written before the engine issue (tests/fixtures/legacy, made by its make.py at commit
1f3b31b and cut back to an interrupted state) resume under today's code and finish to the summary the
earlier code wrote, bitwise."""
import json
import shutil
from pathlib import Path

import pytest

from ticketlab.cli import main

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
RENAMED = {"sweep": "double-descent"}  # commands renamed since; their stored run kind is still accepted


@pytest.mark.parametrize("name", ["imp", "dst", "structured", "prune-init", "supermask", "sweep"])
def test_a_run_directory_from_before_the_engine_resumes_to_the_same_summary(tmp_path, name):
    run = tmp_path / name
    shutil.copytree(LEGACY / name, run)
    argv = (LEGACY / f"{name}.argv").read_text().split()
    argv[0] = RENAMED.get(argv[0], argv[0])
    assert main([*argv, "--out", str(run)]) == 0
    got = json.loads((run / "summary.json").read_text())
    expected = json.loads((LEGACY / f"{name}_expected_summary.json").read_text())
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
