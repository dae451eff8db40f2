"""``ticketlab sweep``: grids of ordinary run directories, local and Ray backends, resume and bad input."""

import json
import os
import sys
from pathlib import Path

import pytest
from helpers import FAULT_ENV, arm_fault, one_line_exit_2

from ticketlab.cli import main
from ticketlab.dst.runner import DSTConfig
from ticketlab.runs.sweep import format_sweep, grid, point_name, set_field

FAST = [
    "prune-init",
    "--dataset",
    "digits",
    "--model",
    "mlp1d",
    "--iterations",
    "30",
    "--checkpoint-every",
    "10",
    "--batch-size",
    "32",
]
GRID = ["--vary", "method=magnitude,random", "--vary", "density=0.2,0.5", "--seeds", "2"]


def summaries(root: Path) -> dict:
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.glob("*/seed_*/summary.json"))}


def test_point_names_follow_the_axes_in_order_and_keep_only_safe_characters():
    assert point_name({"method": "rigl", "density": 0.1}) == "method=rigl,density=0.1"
    assert point_name({"data_dir": "a/b c"}) == "data_dir=a_b_c"


def test_grid_sets_typed_values_on_the_config_and_its_training_settings():
    pts = grid(DSTConfig(), {"method": ["set", "rigl"], "lr": [0.1, 0.2]})
    assert [p.name for p in pts] == [
        "method=set,lr=0.1",
        "method=set,lr=0.2",
        "method=rigl,lr=0.1",
        "method=rigl,lr=0.2",
    ]
    assert pts[3].cfg.method == "rigl" and pts[3].cfg.train.lr == 0.2 and DSTConfig().train.lr != 0.2


def test_an_axis_named_as_its_flag_sets_the_underscored_field_of_the_config_or_its_training():
    cfg = set_field(set_field(DSTConfig(), "delta-t", 7), "weight-decay", 0.25)
    assert cfg.delta_t == 7 and cfg.train.weight_decay == 0.25
    assert DSTConfig().delta_t != 7 and DSTConfig().train.weight_decay != 0.25


def test_setting_an_unknown_field_is_a_user_error():
    from ticketlab.errors import UserError

    with pytest.raises(UserError, match="unknown axis"):
        set_field(DSTConfig(), "nonsense", 1)


def test_the_table_has_a_row_per_point_with_mean_and_std_over_seeds():
    def stat(*v):
        return {"mean": sum(v) / len(v), "std": 0.5, "min": min(v), "max": max(v), "n": len(v), "values": list(v)}

    r = {
        "points": [
            {"point": "a=1", "values": {"a": "1"}, "state": "done", "headline": {"test_acc": stat(1, 2)}},
            {"point": "a=2", "values": {"a": "2"}, "state": "partial", "headline": {}},
        ]
    }
    lines = format_sweep(r).splitlines()
    assert lines[0].split() == ["a", "test_acc", "state"]
    assert lines[1].split() == ["1", "1.5000", "±", "0.5000", "done"] and lines[2].split() == ["2", "partial"]


def test_every_point_is_an_ordinary_run_and_a_finished_sweep_is_not_rerun(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", *FAST, *GRID, "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "8 to run" in printed.err and "sweep.png" in printed.out
    s = json.loads((out / "sweep.json").read_text())
    assert [p["point"] for p in s["points"]] == [
        "method=magnitude,density=0.2",
        "method=magnitude,density=0.5",
        "method=random,density=0.2",
        "method=random,density=0.5",
    ]
    assert all(p["state"] == "done" and p["seeds"] == [0, 1] for p in s["points"])
    assert (out / "sweep.png").stat().st_size > 0
    one = out / "method=random,density=0.5" / "seed_1"
    assert (
        main(
            [
                *FAST,
                "--method",
                "random",
                "--density",
                "0.5",
                "--seed",
                "1",
                "--out",
                str(tmp_path / "single"),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((one / "summary.json").read_text()) == json.loads(
        (tmp_path / "single" / "summary.json").read_text()
    )
    assert main(["show", str(out / "method=random,density=0.5")]) == 0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0  # the sweep's table again
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["method", "density"]
    before = summaries(out)
    mtime = (one / "summary.json").stat().st_mtime_ns
    assert main(["sweep", *FAST, *GRID, "--threads", "1", "--out", str(out)]) == 0
    assert "0 to run" in capsys.readouterr().err
    assert summaries(out) == before and (one / "summary.json").stat().st_mtime_ns == mtime


def test_a_spec_file_is_the_same_sweep_as_its_flags(tmp_path, capsys):
    spec = tmp_path / "grid.toml"
    spec.write_text(
        'command = "prune-init"\nseeds = 1\n[fixed]\ndataset = "digits"\nmodel = "mlp1d"\n'
        'iterations = 30\nbatch_size = 32\n[vary]\nmethod = ["magnitude"]\ndensity = [0.2, 0.5]\n'
    )
    assert main(["sweep", "--spec", str(spec), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    flags = [
        "sweep",
        "prune-init",
        "--dataset",
        "digits",
        "--model",
        "mlp1d",
        "--iterations",
        "30",
        "--batch-size",
        "32",
        "--vary",
        "method=magnitude",
        "--vary",
        "density=0.2,0.5",
        "--seeds",
        "1",
        "--quiet",
    ]
    assert main([*flags, "--out", str(tmp_path / "a")]) == 0  # the same sweep: its folder accepts it
    assert json.loads((tmp_path / "a" / "config.json").read_text())["config"]["axes"] == [
        ["method", ["magnitude"]],
        ["density", ["0.2", "0.5"]],
    ]


@pytest.mark.slow
def test_local_jobs_give_the_sequential_summaries_bitwise_and_a_killed_worker_resumes(tmp_path, monkeypatch, capsys):
    seq, par = tmp_path / "seq", tmp_path / "par"
    assert main(["sweep", *FAST, *GRID, "--threads", "1", "--out", str(seq), "--quiet"]) == 0
    arm_fault(monkeypatch, tmp_path / "killed-once")
    assert main(["sweep", *FAST, *GRID, "--jobs", "2", "--threads", "1", "--out", str(par), "--quiet"]) == 1
    assert (tmp_path / "killed-once").exists()
    assert "run the same command again" in capsys.readouterr().err
    assert json.loads((par / "sweep.json").read_text())["points"]  # the sweep's files stay readable
    code = main(["sweep", *FAST, *GRID, "--jobs", "2", "--threads", "1", "--out", str(par), "--quiet"])
    assert code == 0, json.loads((par / "sweep.json").read_text())["failed"]  # (why a resumed point failed)
    assert summaries(par) == summaries(seq) and len(summaries(seq)) == 8


@pytest.mark.slow
def test_ray_runs_the_grid_to_the_local_summaries_bitwise_retrying_a_killed_worker(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    arm_fault(monkeypatch, tmp_path / "killed-once")
    grid_ = ["--vary", "method=magnitude,random", "--vary", "density=0.3", "--seeds", "2"]
    assert (
        main(["sweep", *FAST, *grid_, "--backend", "ray", "--jobs", "2", "--out", str(tmp_path / "ray"), "--quiet"])
        == 0
    )
    assert (tmp_path / "killed-once").exists()  # a worker was killed mid-point (after a checkpoint) and retried
    monkeypatch.delenv(FAULT_ENV)  # (PYTHONPATH may keep the folder: nothing is armed without the marker)
    assert main(["sweep", *FAST, *grid_, "--threads", "1", "--out", str(tmp_path / "local"), "--quiet"]) == 0
    assert summaries(tmp_path / "ray") == summaries(tmp_path / "local") and len(summaries(tmp_path / "local")) == 4
    assert list(home.iterdir()) == []  # no ~/.ray, ~/ray_results, auth token or anything else


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--vary", "nonsense=1,2"], "prune-init has no flag --nonsense"),
        (["--vary", "device=cpu,cuda"], "not an axis"),
        (["--vary", "seed=1,2"], "not an axis"),
        (["--vary", "method=snip,bogus"], "unknown pruner 'bogus'"),
        (["--vary", "density=0.5,7"], "--density must be in"),
        (["--vary", "density"], "--vary expects NAME=V1,V2"),
        (["--vary", "density=0.1,0.1"], "lists a value twice"),
        (["--vary", "density=0.5", "--seeds", "0"], "--seeds must be >= 1"),
        (["--vary", "density=0.5", "--backend", "slurm"], "unknown --backend 'slurm'"),
        (["--vary", "density=0.5", "--jobs", "0"], "--jobs must be >= 1"),
        (["--vary", "density=0.5", "--model", "nope"], "unknown model 'nope'"),
    ],
)
def test_bad_sweeps_are_one_line_errors_before_any_run(tmp_path, capsys, args, msg):
    out = tmp_path / "sw"
    code = main(["sweep", *FAST, *args, "--out", str(out), "--quiet"])
    one_line_exit_2(code, capsys.readouterr().err, msg)
    assert not out.exists()


def test_a_sweep_folder_holding_another_sweep_is_refused_untouched(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", *FAST, "--vary", "density=0.5", "--out", str(out), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code = main(["sweep", *FAST, "--vary", "density=0.4", "--out", str(out), "--quiet"])
    one_line_exit_2(code, capsys.readouterr().err, "different config")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "text, msg",
    [
        ("command = [", "not valid TOML"),
        ('command = "prune-init"\nvary = 3\n', "[vary] must be a table"),
        ('command = "prune-init"\nwhatever = 1\n', "unknown keys ['whatever']"),
    ],
)
def test_a_malformed_spec_is_a_one_line_error(tmp_path, capsys, text, msg):
    spec = tmp_path / "s.toml"
    spec.write_text(text)
    one_line_exit_2(main(["sweep", "--spec", str(spec), "--quiet"]), capsys.readouterr().err, msg)


def test_ray_asked_for_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code = main(["sweep", *FAST, "--vary", "density=0.5", "--backend", "ray", "--out", str(tmp_path / "s")])
    one_line_exit_2(code, capsys.readouterr().err, "pip install 'ticketlab[ray]'")


def test_an_unreachable_ray_address_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("HOME", str(tmp_path))
    code = main(
        [
            "sweep",
            *FAST,
            "--vary",
            "density=0.5",
            "--backend",
            "ray",
            "--ray-address",
            "127.0.0.1:1",
            "--out",
            str(tmp_path / "s"),
            "--quiet",
        ]
    )
    one_line_exit_2(code, capsys.readouterr().err, "cannot reach the Ray cluster at --ray-address 127.0.0.1:1")


def test_the_old_double_descent_invocation_points_to_the_new_command(capsys):
    one_line_exit_2(
        main(["sweep", "--rate", "0.2", "--min-density", "0.05"]), capsys.readouterr().err, "`ticketlab double-descent`"
    )


def test_sweep_help_lists_its_own_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--help"])
    assert e.value.code == 0 and "--vary" in capsys.readouterr().out


def test_progress_shows_each_finished_run(tmp_path, capsys):
    assert main(["sweep", *FAST, "--vary", "density=0.5,0.2", "--out", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert "[1/2] density=0.5 seed 0: done" in err and "[2/2] density=0.2 seed 0: done" in err
    assert os.path.exists(tmp_path / "s" / "density=0.2" / "seed_0" / "summary.json")
