"""Sweeps pinned on an experiment that trains nothing: the grid and its config, the state of every point
after full, partial and failed invocations, what a resumed sweep runs, how tasks are cut into packs (never
mixing models or datasets), the table's cells, the Ray address check and the plot's refusals."""
import json
from dataclasses import asdict, dataclass, fields

import pytest

from ticketlab.errors import UserError
from ticketlab.io import write_json
from ticketlab.runs.experiment import EXPERIMENTS, Experiment
from ticketlab.runs.rundir import open_run_dir
from ticketlab.runs.sweep import (
    Point,
    Task,
    _cell,
    _local,
    check_ray_address,
    format_sweep,
    grid,
    packs,
    plot_sweep,
    run_sweep,
    sweep_config,
    write_sweep_json,
)

NAME = "fake-sweep"
CALLS: list = []


@dataclass
class Cfg:
    x: float = 1.0
    mode: str = "a"
    fail: bool = False
    seed: int = 0
    model: str = "mlp1d"
    dataset: str = "digits"

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)

    def validate(self):
        if self.x < 0:
            raise UserError(f"x must be >= 0, got {self.x}")


def fake_run(cfg, out, **runtime):
    CALLS.append((cfg.x, cfg.mode, cfg.seed, runtime))
    if cfg.fail and cfg.seed == 1:
        raise UserError(f"seed {cfg.seed} of x={cfg.x} cannot run")
    out = open_run_dir(out, NAME, cfg.to_dict())
    s = {"acc": cfg.x + cfg.seed, "mode": cfg.mode}
    write_json(out / "summary.json", s)
    return s


EXP = Experiment(name=NAME, config=Cfg, run=fake_run, format=str, headline=lambda s: {"acc": s["acc"]})
if NAME not in EXPERIMENTS:
    EXPERIMENTS.register(NAME)(EXP)


@pytest.fixture(autouse=True)
def no_calls():
    CALLS.clear()


def sweep(tmp_path, axes, seeds, **kw):
    return run_sweep(EXP, Cfg(), grid(Cfg(), axes), seeds, tmp_path / "sw", check=False, quiet=True, **kw)


def test_every_point_and_seed_runs_once_with_the_runtime_settings(tmp_path):
    r = sweep(tmp_path, {"x": [1.0, 2.0], "mode": ["a", "b"]}, [0, 1], checkpoint_every=7, data_dir="D")
    assert sorted(c[:3] for c in CALLS) == sorted((x, m, s) for x in (1.0, 2.0) for m in "ab" for s in (0, 1))
    assert all(c[3] == {"device": "cpu", "data_dir": "D", "quiet": True, "checkpoint_every": 7} for c in CALLS)
    assert [p["point"] for p in r["points"]] == ["x=1.0,mode=a", "x=1.0,mode=b", "x=2.0,mode=a", "x=2.0,mode=b"]
    assert all(p["state"] == "done" and p["seeds"] == [0, 1] for p in r["points"])
    p = r["points"][2]
    assert p["values"] == {"x": "2.0", "mode": "a"} and p["headline"]["acc"]["values"] == [2.0, 3.0]
    assert r["axes"] == ["x", "mode"] and r["seeds"] == [0, 1] and r["failed"] == [] and r["dir"] == str(tmp_path / "sw")
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text()) == {k: v for k, v in r.items() if k != "dir"}


def test_a_finished_sweep_runs_nothing_and_more_seeds_run_only_the_new_ones(tmp_path):
    sweep(tmp_path, {"x": [1.0]}, [0, 1])
    CALLS.clear()
    assert sweep(tmp_path, {"x": [1.0]}, [0, 1])["points"][0]["state"] == "done" and CALLS == []
    r = sweep(tmp_path, {"x": [1.0]}, [0, 1, 2])
    assert [c[2] for c in CALLS] == [2] and r["points"][0]["seeds"] == [0, 1, 2]


def test_a_failed_task_is_reported_and_its_point_is_partial_or_not_run(tmp_path):
    r = sweep(tmp_path, {"x": [1.0, 2.0], "fail": [False, True]}, [1])
    states = {p["point"]: p["state"] for p in r["points"]}
    assert states == {"x=1.0,fail=False": "done", "x=1.0,fail=True": "not run", "x=2.0,fail=False": "done",
                      "x=2.0,fail=True": "not run"}
    assert r["failed"] == [{"point": "x=1.0,fail=True", "seed": 1, "error": "seed 1 of x=1.0 cannot run"},
                           {"point": "x=2.0,fail=True", "seed": 1, "error": "seed 1 of x=2.0 cannot run"}]
    r = sweep(tmp_path / "again", {"x": [1.0], "fail": [True]}, [0, 1])
    assert r["points"][0]["state"] == "partial" and r["points"][0]["seeds"] == [0]
    assert r["points"][0]["headline"]["acc"]["values"] == [1.0]


def test_a_task_error_that_is_not_a_user_error_stops_a_single_process_sweep(tmp_path):
    def boom(*a):
        raise RuntimeError("bug")

    tasks = [Task(Point("p", {}, Cfg()), 0, ("n", {}, "o", {}))]
    with pytest.raises(RuntimeError, match="bug"):
        _local(tasks, 1, None, lambda *a: None, boom)
    seen = []
    _local(tasks, 1, 3, lambda t, err, res: seen.append((t.seed, err, res)), lambda *a: (a[-1], "ok"))
    assert seen == [(0, None, (3, "ok"))]  # the thread count reaches the task


def test_progress_lines_count_the_tasks_and_name_each_outcome(tmp_path, capsys):
    run_sweep(EXP, Cfg(), grid(Cfg(), {"fail": [False, True]}), [0, 1], tmp_path / "sw", check=False)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"sweep: {tmp_path / 'sw'} - 2 point(s) x 2 seed(s); 4 to run (local)"
    assert [line.split("  (")[0] for line in err[1:]] == [
        "[1/4] fail=False seed 0: done", "[2/4] fail=False seed 1: done", "[3/4] fail=True seed 0: done",
        "[4/4] fail=True seed 1: FAILED (seed 1 of x=1.0 cannot run)"]


def test_bad_sweep_settings_are_refused_before_any_folder_is_made(tmp_path):
    pts = grid(Cfg(), {"x": [1.0]})
    for kw, msg in ((dict(backend="slurm"), "unknown --backend 'slurm'; choose one of: local, ray"),
                    (dict(jobs=0), "--jobs must be >= 1, got 0")):
        with pytest.raises(UserError, match=msg):
            run_sweep(EXP, Cfg(), pts, [0], tmp_path / "sw", check=False, quiet=True, **kw)
    with pytest.raises(UserError, match="the sweep has no points"):
        run_sweep(EXP, Cfg(), [], [0], tmp_path / "sw", check=False, quiet=True)
    assert not (tmp_path / "sw").exists()


def test_the_preflight_checks_every_points_config_first(tmp_path):
    with pytest.raises(UserError, match="x must be >= 0"):
        run_sweep(EXP, Cfg(), grid(Cfg(), {"x": [1.0, -1.0]}), [0], tmp_path / "sw", quiet=True)
    assert not (tmp_path / "sw").exists() and CALLS == []


def test_the_sweep_config_lists_each_axis_once_in_order_with_its_values_as_text():
    pts = grid(Cfg(), {"mode": ["b", "a"], "x": [2, 1.0]})
    c = sweep_config(EXP, Cfg(seed=4), pts)
    assert c == {"experiment": NAME, "fixed": {"x": 1.0, "mode": "a", "fail": False, "model": "mlp1d",
                                                               "dataset": "digits"},
                 "axes": [["mode", ["b", "a"]], ["x", ["2", "1.0"]]]}


def test_a_sweep_folder_with_other_axes_is_refused(tmp_path):
    sweep(tmp_path, {"x": [1.0]}, [0])
    with pytest.raises(UserError, match="different config"):
        sweep(tmp_path, {"x": [1.0, 2.0]}, [0])


def point(name, model="m", dataset="d"):
    return Task(Point(name, {}, None), 0, ("n", {"model": model, "dataset": dataset}, name, {}))


def test_packs_never_mix_models_or_datasets_and_respect_the_size():
    tasks = [point(f"a{i}") for i in range(5)] + [point("b0", model="other"), point("c0", dataset="other")]
    cut = packs(tasks, size=2, jobs=1)
    names = [[t.args[2] for t in pk] for pk in cut]
    assert names == [["a0", "a3"], ["a1", "a4"], ["a2"], ["b0"], ["c0"]]
    assert all(len({(t.args[1]["model"], t.args[1]["dataset"]) for t in pk}) == 1 for pk in cut)


def test_packs_are_cut_so_every_worker_gets_one_where_there_are_enough_tasks():
    tasks = [point(f"a{i}") for i in range(6)]
    assert [len(pk) for pk in packs(tasks, size=64, jobs=4)] == [2, 2, 1, 1]
    assert [len(pk) for pk in packs(tasks, size=64, jobs=1)] == [6]
    assert [len(pk) for pk in packs(tasks[:2], size=64, jobs=4)] == [1, 1]  # never an empty pack
    assert [len(pk) for pk in packs(tasks, size=4, jobs=1)] == [3, 3]


def test_a_vectorised_sweep_hands_its_packs_the_tasks_and_gets_the_same_summaries(tmp_path):
    r = sweep(tmp_path, {"x": [1.0, 2.0]}, [0, 1], replicates="vectorized")
    assert all(p["state"] == "done" for p in r["points"]) and len(CALLS) == 4
    assert r["points"][1]["headline"]["acc"]["values"] == [2.0, 3.0]
    r = sweep(tmp_path.joinpath("f"), {"fail": [True]}, [0, 1], replicates="vectorized")
    assert r["failed"] == [{"point": "fail=True", "seed": 1, "error": "seed 1 of x=1.0 cannot run"}]


def stat(*v, std=0.5):
    return {"mean": sum(v) / len(v), "std": std, "min": min(v), "max": max(v), "n": len(v), "values": list(v)}


def test_a_cell_shows_the_mean_alone_for_one_seed_or_no_spread():
    assert _cell(stat(0.123456)) == "0.1235" and _cell(stat(1.0, 1.0, std=0.0)) == "1"
    assert _cell(stat(0.5, 0.7, std=0.1414)) == "0.6 ± 0.14" and _cell(0.5) == "" and _cell(None) == ""


def test_the_table_keeps_the_axis_order_and_only_statistic_columns():
    r = {"axes": ["b", "a"], "points": [
        {"values": {"a": "1", "b": "x"}, "state": "done", "headline": {"acc": stat(1, 2), "note": "text",
                                                                       "a": stat(1, 1)}},
        {"values": {"a": "22", "b": "yy"}, "state": "not run", "headline": {}}]}
    lines = format_sweep(r).splitlines()
    assert lines[0] == " b   a        acc    state"
    assert lines[1] == " x   1  1.5 ± 0.5     done"
    assert lines[2] == "yy  22             not run"
    assert format_sweep({"points": []}) == "state"


def test_write_sweep_json_gives_each_point_its_state(tmp_path):
    root = tmp_path / "sw"
    for name, seeds in (("p1", [0, 1]), ("p2", [1])):
        (root / name).mkdir(parents=True)
        write_json(root / name / "summary.json", {"headline": {"acc": stat(*seeds)}})
    pts = [Point("p1", {"x": 1}, None), Point("p2", {"x": 2}, None), Point("p3", {"x": 3}, None)]
    r = write_sweep_json(EXP, root, pts, [0, 1], {"p1": [0, 1], "p2": [1]}, [{"point": "p3"}])
    assert [(p["state"], p["seeds"]) for p in r["points"]] == [("done", [0, 1]), ("partial", [1]), ("not run", [])]
    assert r["points"][1]["headline"] == {"acc": stat(1)} and r["points"][2]["headline"] == {}
    assert r["points"][0]["values"] == {"x": "1"} and r["axes"] == ["x"] and r["failed"] == [{"point": "p3"}]
    extra = write_sweep_json(EXP, root, pts[:1], [0], {"p1": [0, 1]}, [])
    assert extra["points"][0]["state"] == "done"  # more finished seeds than asked for is done


@pytest.mark.parametrize("address", ["localhost", "host:port", "ray://host:", ":"])
def test_a_ray_address_must_be_host_port(address):
    with pytest.raises(UserError, match="expected HOST:PORT, ray://HOST:PORT or auto"):
        check_ray_address(address)


def test_a_ray_address_nothing_answers_at_is_refused_and_auto_is_not_checked():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a port nothing listens on
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}/"):
        with pytest.raises(UserError, match="cannot reach the Ray cluster at --ray-address"):
            check_ray_address(address, timeout=1.0)
    check_ray_address("auto")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        check_ray_address(f"ray://127.0.0.1:{srv.getsockname()[1]}", timeout=1.0)
    finally:
        srv.close()


def test_the_plot_refuses_a_metric_no_point_has_and_an_axis_the_sweep_lacks(tmp_path):
    r = {"experiment": NAME, "points": [{"values": {"x": "1", "m": "a"}, "headline": {"acc": stat(1.0)}}]}
    with pytest.raises(UserError, match="no finished point has the metric 'nll'"):
        plot_sweep(r, tmp_path / "p.png", "x", None, "nll")
    with pytest.raises(UserError, match="--x/--hue 'y' is not an axis of this sweep; axes: x, m"):
        plot_sweep(r, tmp_path / "p.png", "y", None, "acc")
    with pytest.raises(UserError, match="--x/--hue 'h' is not an axis"):
        plot_sweep(r, tmp_path / "p.png", "x", "h", "acc")
    assert not (tmp_path / "p.png").exists()
    plot_sweep(r, tmp_path / "p.png", "x", "m", "acc")
    assert (tmp_path / "p.png").stat().st_size > 0
