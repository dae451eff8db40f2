"""``ticketlab runs``: the run store read from the run directories themselves."""

import json
import shutil

import pytest
from helpers import one_line_exit_2

from ticketlab.cli import main
from ticketlab.runs.store import list_runs

FAST = ["--dataset", "digits", "--model", "mlp1d", "--iterations", "20", "--batch-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    assert main(["prune-init", "--method", "magnitude", "--density", "0.3", *FAST, "--out", str(root / "pi")]) == 0
    assert main(["dst", "--method", "set", "--density", "0.5", *FAST, "--seeds", "2", "--out", str(root / "g")]) == 0
    assert (
        main(
            [
                "sweep",
                "prune-init",
                "--vary",
                "method=random,magnitude",
                "--density",
                "0.3",
                *FAST,
                "--out",
                str(root / "sw"),
            ]
        )
        == 0
    )
    assert main(["imp", "--rounds", "1", *FAST, "--out", str(root / "imp")]) == 0
    shutil.copytree(root / "imp", root / "imp-partial")
    (root / "imp-partial" / "accuracy_vs_density.png").unlink()  # as a run interrupted between rounds
    (root / "not-a-run").mkdir()
    return root


def by_path(entries):
    return {e["path"]: e for e in entries}


def test_the_store_lists_runs_groups_and_sweeps_with_state_and_headline(store):
    e = by_path(list_runs(store))
    assert set(e) == {"pi", "g", "sw", "imp", "imp-partial"}
    assert e["pi"]["kind"] == "prune-init" and e["pi"]["state"] == "done"
    assert e["pi"]["metrics"]["test_acc"] == json.loads((store / "pi" / "summary.json").read_text())["test_acc"]
    assert e["g"]["kind"] == "dst (seeds)" and e["g"]["settings"]["seeds"] == 2
    assert e["g"]["metrics"]["test_acc"]["n"] == 2
    assert e["sw"]["kind"] == "prune-init (sweep)" and e["sw"]["state"] == "done"
    assert "method" not in e["sw"]["settings"]  # an axis is not a fixed setting
    assert e["imp"]["state"] == "done" and e["imp-partial"]["state"] == "partial"


def test_a_sweep_folder_lists_its_points_and_recursive_lists_every_run(store):
    e = by_path(list_runs(store / "sw"))
    assert set(e) == {".", "method=random", "method=magnitude"}
    deep = by_path(list_runs(store, recursive=True))
    assert {"g/seed_0", "g/seed_1", "sw/method=random/seed_0"} <= set(deep)


def test_where_sort_and_json(store, capsys):
    assert main(["runs", str(store), "--recursive", "--where", "method=random", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert entries and all(e["config"]["method"] == "random" for e in entries)
    assert main(["runs", str(store), "--where", "density=0.30", "--sort", "test_acc"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["run", "kind", "state", "test_acc"]
    assert [line.split()[0] for line in out[1:]] == ["pi", "sw"]  # the sweep (fixed density 0.3) has no metric


def test_bad_store_input_is_one_line(tmp_path, capsys):
    one_line_exit_2(main(["runs", str(tmp_path / "missing")]), capsys.readouterr().err, "is not a directory")
    one_line_exit_2(main(["runs", str(tmp_path), "--where", "model"]), capsys.readouterr().err, "--where expects")
