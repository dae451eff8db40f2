"""Sweeps pinned on an experiment that trains nothing: the grid and its config, the state of every point
after full, partial and failed invocations, what a resumed sweep runs, how tasks are cut into packs (never
mixing models or datasets), the table's cells, the Ray address check and the plot's refusals."""

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

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
    duration,
    format_sweep,
    grid,
    packs,
    plot_sweep,
    progress_time,
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
    assert (
        r["axes"] == ["x", "mode"] and r["seeds"] == [0, 1] and r["failed"] == [] and r["dir"] == str(tmp_path / "sw")
    )
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
    assert states == {
        "x=1.0,fail=False": "done",
        "x=1.0,fail=True": "not run",
        "x=2.0,fail=False": "done",
        "x=2.0,fail=True": "not run",
    }
    assert r["failed"] == [
        {"point": "x=1.0,fail=True", "seed": 1, "error": "seed 1 of x=1.0 cannot run"},
        {"point": "x=2.0,fail=True", "seed": 1, "error": "seed 1 of x=2.0 cannot run"},
    ]
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
        "[1/4] fail=False seed 0: done",
        "[2/4] fail=False seed 1: done",
        "[3/4] fail=True seed 0: done",
        "[4/4] fail=True seed 1: FAILED (seed 1 of x=1.0 cannot run)",
    ]
    times = [line.rsplit("  (", 1)[1] for line in err[1:]]
    assert all(re.fullmatch(r"\d+ s since the sweep began, about \d+ s left\)", s) for s in times[:3]), times
    assert re.fullmatch(r"\d+ s since the sweep began\)", times[3]), times  # the last: nothing left


def test_the_log_kind_is_checked_before_the_sweeps_folder_and_handed_to_every_point(tmp_path):
    from ticketlab.train import log as train_log

    with pytest.raises(UserError, match="unknown --log 'xml'"):
        sweep(tmp_path, {"x": [1.0]}, [0], log="xml")
    assert not (tmp_path / "sw").exists() and CALLS == []
    try:
        sweep(tmp_path, {"x": [1.0]}, [0], log="jsonl")
        assert len(CALLS) == 1 and train_log.current() == "jsonl"  # the point ran with the sweep's log kind
    finally:
        train_log.configure("none")


@pytest.mark.parametrize("replicates, packed", [("sequential", False), ("vectorized", True)])
def test_the_ray_backend_gets_the_tasks_or_the_packs_and_the_pack_runner(tmp_path, monkeypatch, replicates, packed):
    from ticketlab.runs import sweep as sw

    seen = []
    monkeypatch.setattr(sw, "check_ray_address", lambda address: None)
    monkeypatch.setattr(sw, "_ray", lambda units, *a: seen.append((units, a)) or {})
    sweep(tmp_path, {"x": [1.0, 2.0]}, [0], backend="ray", replicates=replicates)
    ((units, args),) = seen
    assert args[-1] is (sw.run_pack if packed else None) and args[-2] is True  # the runner, quiet
    assert len(units) == (1 if packed else 2)


def test_bad_sweep_settings_are_refused_before_any_folder_is_made(tmp_path):
    pts = grid(Cfg(), {"x": [1.0]})
    for kw, msg in (
        (dict(backend="slurm"), "unknown --backend 'slurm'; choose one of: local, ray"),
        (dict(jobs=0), "--jobs must be >= 1, got 0"),
    ):
        with pytest.raises(UserError, match=msg):
            run_sweep(EXP, Cfg(), pts, [0], tmp_path / "sw", check=False, quiet=True, **kw)
    with pytest.raises(UserError, match="^the sweep has no points: give at least one --vary NAME=V1,V2$"):
        run_sweep(EXP, Cfg(), [], [0], tmp_path / "sw", check=False, quiet=True)
    assert not (tmp_path / "sw").exists()


def test_the_preflight_checks_every_points_config_first(tmp_path):
    with pytest.raises(UserError, match="x must be >= 0"):
        run_sweep(EXP, Cfg(), grid(Cfg(), {"x": [1.0, -1.0]}), [0], tmp_path / "sw", quiet=True)
    assert not (tmp_path / "sw").exists() and CALLS == []


def test_the_sweep_config_lists_each_axis_once_in_order_with_its_values_as_text():
    pts = grid(Cfg(), {"mode": ["b", "a"], "x": [2, 1.0]})
    c = sweep_config(EXP, Cfg(seed=4), pts)
    assert c == {
        "experiment": NAME,
        "fixed": {"x": 1.0, "mode": "a", "fail": False, "model": "mlp1d", "dataset": "digits"},
        "axes": [["mode", ["b", "a"]], ["x", ["2", "1.0"]]],
    }


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


def test_a_cell_is_mean_and_std_in_its_columns_format_and_one_seed_the_mean_alone():
    assert _cell(stat(0.123456)) == "0.1235" and _cell(stat(1.0, 1.0, std=0.0)) == "1.0000 ± 0.0000"
    assert _cell(stat(0.5, 0.7, std=0.1414)) == "0.6000 ± 0.1414" and _cell(0.5) == "" and _cell(None) == ""
    assert _cell(stat(2e9, 4e9, std=1.4e9), ".3e") == "3.000e+09 ± 1.400e+09"


def test_every_number_of_a_metric_column_has_the_same_precision():
    points = [
        {"values": {"m": m}, "state": "done", "headline": {"acc": stat(a, a + 0.01), "flops": stat(f, 2 * f)}}
        for m, a, f in (("set", 0.9, 3e8), ("rigl", 0.912345, 1.5e9))
    ]
    lines = format_sweep({"axes": ["m"], "points": points}).splitlines()
    assert lines[1].split() == ["set", "0.9050", "±", "0.5000", "4.500e+08", "±", "5.000e-01", "done"]
    assert lines[2].split() == ["rigl", "0.9173", "±", "0.5000", "2.250e+09", "±", "5.000e-01", "done"]


def test_a_sweep_progress_line_says_what_its_time_is_and_what_is_left():
    assert duration(42.4) == "42 s" and duration(185) == "3 min 05 s" and duration(3725) == "1 h 02 min"
    assert progress_time(30, 1, 4) == "30 s since the sweep began, about 1 min 30 s left"
    assert progress_time(100, 4, 4) == "1 min 40 s since the sweep began"


def test_the_table_keeps_the_axis_order_and_only_statistic_columns():
    r = {
        "axes": ["b", "a"],
        "points": [
            {
                "values": {"a": "1", "b": "x"},
                "state": "done",
                "headline": {"acc": stat(1, 2), "note": "text", "a": stat(1, 1)},
            },
            {"values": {"a": "22", "b": "yy"}, "state": "not run", "headline": {}},
        ],
    }
    lines = format_sweep(r).splitlines()
    assert lines[0] == " b   a              acc    state"
    assert lines[1] == " x   1  1.5000 ± 0.5000     done"
    assert lines[2] == "yy  22                   not run"
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
        with pytest.raises(UserError, match=r"cannot reach the Ray cluster .* \(Connection refused\); check"):
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


# -- the backends' driver code, on stand-ins for the process pool and for Ray -----------------------------------


def tasks_of(n):
    return [Task(Point(f"p{i}", {}, None), i, (i,)) for i in range(n)]


def test_local_workers_report_each_result_error_and_dead_worker(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from ticketlab.runs import sweep as sw

    made = {}

    class Pool(ThreadPoolExecutor):  # the same interface, threads instead of spawned processes
        def __init__(self, max_workers, mp_context):
            made.update(workers=max_workers, start=mp_context.get_start_method())
            super().__init__(max_workers)

    monkeypatch.setattr(sw, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(sw.os, "cpu_count", lambda: 8)

    def work(i, threads):
        if i == 1:
            raise ValueError("bad point\nsecond line")
        if i == 2:
            raise BrokenProcessPool("gone")
        if i == 3:
            raise RuntimeError()
        return {"i": i, "threads": threads}

    seen = {}
    sw._local(tasks_of(4), 2, None, lambda t, err, res: seen.__setitem__(t.seed, (err, res)), work)
    assert made == {"workers": 2, "start": "spawn"}
    assert seen[0] == (None, {"i": 0, "threads": 4})  # 8 cores over 2 jobs
    assert seen[1] == ("ValueError: bad point", None)
    assert seen[2] == ("its worker process died; run the sweep again to resume it", None)
    assert seen[3] == ("RuntimeError: ", None)
    seen.clear()
    sw._local(tasks_of(1), 3, 5, lambda t, err, res: seen.__setitem__(t.seed, res), work)
    assert seen[0]["threads"] == 5  # an explicit thread count wins
    monkeypatch.setattr(sw.os, "cpu_count", lambda: None)
    sw._local(tasks_of(1), 3, None, lambda t, err, res: seen.__setitem__(t.seed, res), work)
    assert seen[0]["threads"] == 1  # never below one


class Ref:
    """A task's handle (hashable, as Ray's ObjectRef)."""

    def __init__(self, args, fn):
        self.args, self.fn = args, fn


class FakeRay:
    """What the sweep's driver calls of Ray, recorded; tasks run at once in this process."""

    def __init__(self, fail=()):
        self.inits, self.remote_opts, self.fail, self.up = [], [], set(fail), False
        self.shut = 0

    def init(self, **kw):
        self.inits.append(kw)
        self.up = True

    def is_initialized(self):
        return self.up

    def shutdown(self):
        self.up, self.shut = False, self.shut + 1

    def remote(self, **opts):
        self.remote_opts.append(opts)

        def wrap(fn):
            class Remote:
                @staticmethod
                def remote(*args):
                    return Ref(args, fn)

            return Remote

        return wrap

    def wait(self, pending, num_returns):
        return pending[:num_returns], pending[num_returns:]

    def get(self, ref):
        args, fn = ref.args, ref.fn
        if args[0] in self.fail:
            raise RuntimeError("RayTaskError(ValueError): traceback...\n  ...\nValueError: point failed")
        return fn(*args)


def test_a_local_ray_listens_on_127_0_0_1_in_a_temporary_folder_it_removes(monkeypatch):
    from ticketlab.runs import sweep as sw

    fake = FakeRay(fail={1})
    monkeypatch.setattr(sw, "import_ray", lambda: fake)
    temps = []
    real = sw.watchdog.make_folder
    monkeypatch.setattr(sw.watchdog, "make_folder", lambda: temps.append(real()) or temps[-1])
    seen = {}
    times = sw._ray(
        tasks_of(3),
        None,
        2.0,
        0.5,
        3,
        4,
        lambda t, err, res: seen.__setitem__(t.seed, (err, res)),
        quiet=True,
        fn=lambda i, threads: (i, threads),
    )
    (init,) = fake.inits
    assert init["_node_ip_address"] == "127.0.0.1" and init["include_dashboard"] is False
    assert init["num_cpus"] == 3 and init["num_gpus"] is None and init["log_to_driver"] is False
    assert init["_temp_dir"] == temps[0] and temps[0].name.startswith("tl-ray-")
    assert not os.path.exists(temps[0])  # removed afterwards
    assert fake.remote_opts == [{"num_cpus": 2.0, "num_gpus": 0.5, "max_retries": 4}]
    assert seen[0] == (None, (0, 2)) and seen[2] == (None, (2, 2))  # threads: the CPUs per point
    assert seen[1] == ("RuntimeError: ValueError: point failed", None)
    assert fake.shut == 1 and set(times) == {"ray_startup_s", "ray_tasks_s", "ray_shutdown_s"}


def test_a_local_ray_without_gpus_asks_for_none_and_all_cores_by_default(monkeypatch):
    from ticketlab.runs import sweep as sw

    fake = FakeRay()
    monkeypatch.setattr(sw, "import_ray", lambda: fake)
    monkeypatch.setattr(sw.os, "cpu_count", lambda: 6)
    sw._ray(tasks_of(1), None, 0.5, 0, None, 0, lambda *a: None, quiet=False, fn=lambda i, t: t)
    assert fake.inits[0]["num_cpus"] == 6 and fake.inits[0]["num_gpus"] == 0 and fake.inits[0]["log_to_driver"]
    assert fake.remote_opts[0]["max_retries"] == 0


def test_a_ray_cluster_address_is_joined_and_an_unreachable_one_is_one_line(monkeypatch):
    from ticketlab.runs import sweep as sw

    fake = FakeRay()
    monkeypatch.setattr(sw, "import_ray", lambda: fake)
    sw._ray(tasks_of(1), "10.0.0.1:6379", 1, 0, None, 3, lambda *a: None, quiet=True, fn=lambda i, t: t)
    assert fake.inits == [{"address": "10.0.0.1:6379", "log_to_driver": False, "configure_logging": False}]

    class Down(FakeRay):
        def init(self, **kw):
            raise ConnectionError("could not connect\nmore")

    down = Down()
    monkeypatch.setattr(sw, "import_ray", lambda: down)
    with pytest.raises(
        UserError,
        match=r"cannot reach the Ray cluster at --ray-address h:1 \(could not connect\); "
        "check the address or leave it out",
    ):
        sw._ray(tasks_of(1), "h:1", 1, 0, None, 3, lambda *a: None, quiet=True, fn=lambda i, t: t)
    assert down.shut == 0


def test_ray_is_shut_down_even_when_the_driver_is_interrupted(monkeypatch):
    from ticketlab.runs import sweep as sw

    fake = FakeRay()
    monkeypatch.setattr(sw, "import_ray", lambda: fake)

    def stop(*a):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw._ray(tasks_of(2), None, 1, 0, None, 0, stop, quiet=True, fn=lambda i, t: t)
    assert fake.shut == 1 and not fake.up


def test_ray_settings_keep_it_local_and_quiet(monkeypatch):
    from ticketlab.runs import sweep as sw

    for k in (
        "RAY_AUTH_MODE",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
        "RAY_USAGE_STATS_ENABLED",
        "RAY_DISABLE_IMPORT_WARNING",
    ):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # a user's own setting is kept
    sw.ray_environment()
    env = sw.os.environ
    assert (
        env["RAY_AUTH_MODE"],
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"],
        env["RAY_USAGE_STATS_ENABLED"],
        env["RAY_DISABLE_IMPORT_WARNING"],
    ) == ("disabled", "0", "1", "1")


def test_without_ray_the_ray_backend_is_one_line(monkeypatch):
    import builtins

    from ticketlab.runs import sweep as sw

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(UserError, match=r"^--backend ray needs Ray: pip install 'ticketlab\[ray\]'$"):
        sw.import_ray()


def test_a_sweep_on_the_ray_backend_checks_the_address_before_any_folder(tmp_path, monkeypatch):
    from ticketlab.runs import sweep as sw

    monkeypatch.setattr(sw, "import_ray", lambda: FakeRay())
    with pytest.raises(UserError, match="expected HOST:PORT"):
        run_sweep(
            EXP,
            Cfg(),
            grid(Cfg(), {"x": [1.0]}),
            [0],
            tmp_path / "sw",
            backend="ray",
            ray_address="nohost",
            check=False,
            quiet=True,
        )
    assert not (tmp_path / "sw").exists()
    fake = FakeRay()
    monkeypatch.setattr(sw, "import_ray", lambda: fake)
    r = run_sweep(
        EXP, Cfg(), grid(Cfg(), {"x": [1.0, 2.0]}), [0], tmp_path / "sw", backend="ray", jobs=2, check=False, quiet=True
    )
    assert all(p["state"] == "done" for p in r["points"]) and fake.inits[0]["num_cpus"] == 2
    assert set(r) >= {"ray_startup_s", "ray_tasks_s", "ray_shutdown_s"}


@pytest.mark.parametrize("quiets, quiet", [((True, True), True), ((True, False), False)])
def test_a_pack_runs_its_tasks_in_lockstep_quiet_only_when_every_task_is(monkeypatch, quiets, quiet):
    from ticketlab.runs import lockstep
    from ticketlab.runs import sweep as sw

    seen = []

    class Spy:
        def __init__(self, quiet):
            seen.append(quiet)

        def run(self, fns):
            return [f() for f in fns]

    def task(*args):
        if args[0] == "bad":
            raise UserError("cannot run")

    monkeypatch.setattr(lockstep, "Lockstep", Spy)
    monkeypatch.setattr(sw, "run_task", task)
    tasks = [("ok", None, None, {"quiet": quiets[0]}), ("bad", None, None, {"quiet": quiets[1]})]
    assert sw.run_pack(tasks, None) == [None, "cannot run"]
    assert seen == [quiet]


def test_a_sweep_without_out_goes_to_its_hashed_default_folder(tmp_path, monkeypatch):
    from ticketlab.runs.rundir import default_run_dir
    from ticketlab.runs.sweep import KIND

    monkeypatch.chdir(tmp_path)
    pts = grid(Cfg(), {"x": [1.0]})
    r = run_sweep(EXP, Cfg(), pts, [0], None, check=False, quiet=True)
    want = default_run_dir(KIND, sweep_config(EXP, Cfg(), pts))
    assert KIND == "sweep" and Path(r["dir"]).resolve() == want.resolve() and want.name.startswith("sweep-")


def test_a_grid_over_the_cap_is_refused_with_its_count_before_any_point_is_built(monkeypatch):
    import ticketlab.runs.sweep as sweep

    built = []
    monkeypatch.setattr(sweep, "Point", lambda *a: built.append(a))
    axes = {"lr": list(range(60)), "density": list(range(60)), "seed": list(range(60))}
    with pytest.raises(
        UserError, match=r"^the sweep has 216,000 points \(60 lr x 60 density x 60 seed\); at most 10,000"
    ):
        grid(None, axes)
    assert built == []


# -- the edges the mutation run found unpinned (issue 27) ----------------------------------------------------


def test_a_grid_of_exactly_the_cap_is_built_and_no_axes_is_one_unnamed_point(monkeypatch):
    import ticketlab.runs.sweep as sw

    monkeypatch.setattr(sw, "MAX_POINTS", 4)
    assert [p.name for p in grid(Cfg(), {"x": [1.0, 2.0], "mode": ["a", "b"]})] == [
        "x=1.0,mode=a",
        "x=1.0,mode=b",
        "x=2.0,mode=a",
        "x=2.0,mode=b",
    ]
    with pytest.raises(UserError, match=r"^the sweep has 6 points \(3 x x 2 mode\); at most 4 at once"):
        grid(Cfg(), {"x": [1.0, 2.0, 3.0], "mode": ["a", "b"]})
    assert grid(Cfg(mode="c"), {}) == [Point("", {}, Cfg(mode="c"))]


def test_durations_at_the_edges_of_their_units():
    assert [duration(s) for s in (59.4, 59.6, 60, 120, 3599, 3600, 3720, 7260)] == [
        "59 s",
        "1 min 00 s",
        "1 min 00 s",
        "2 min 00 s",
        "59 min 59 s",
        "1 h 00 min",
        "1 h 02 min",
        "2 h 01 min",
    ]


def test_the_time_left_is_the_pace_so_far_times_the_tasks_left_and_nothing_before_the_first():
    assert progress_time(30, 2, 4) == "30 s since the sweep began, about 30 s left"
    assert progress_time(30, 1, 7) == "30 s since the sweep began, about 3 min 00 s left"
    assert progress_time(5, 0, 4) == "5 s since the sweep began"


def test_a_pack_hands_its_thread_count_to_every_task_and_a_task_without_quiet_is_quiet(monkeypatch):
    from ticketlab.runs import lockstep
    from ticketlab.runs import sweep as sw

    seen, got = [], []

    class Spy:
        def __init__(self, quiet):
            seen.append(quiet)

        def run(self, fns):
            return [f() for f in fns]

    monkeypatch.setattr(lockstep, "Lockstep", Spy)
    monkeypatch.setattr(sw, "run_task", lambda *args: got.append(args))
    assert sw.run_pack([("a", None, None, {}), ("b", None, None, {"quiet": True})], 3) == [None, None]
    assert seen == [True] and [(a[0], a[-1]) for a in got] == [("a", 3), ("b", 3)]


def test_one_local_job_reports_a_user_error_as_the_tasks_error():
    from ticketlab.runs import sweep as sw

    def work(i, threads):
        if i == 1:
            raise UserError("point 1 cannot run")
        return i

    seen = []
    sw._local(tasks_of(2), 1, None, lambda t, err, res: seen.append((t.seed, err, res)), work)
    assert seen == [(0, None, 0), (1, "point 1 cannot run", None)]


def test_local_workers_share_the_cores_in_whole_threads(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from ticketlab.runs import sweep as sw

    class Pool(ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context):
            super().__init__(max_workers)

    monkeypatch.setattr(sw, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(sw.os, "cpu_count", lambda: 7)
    seen = []
    sw._local(tasks_of(1), 2, None, lambda t, err, res: seen.append(res), lambda i, threads: threads)
    assert seen == [3] and type(seen[0]) is int


def test_ray_reports_no_usage_statistics_unless_the_user_says_so(monkeypatch):
    from ticketlab.runs import sweep as sw

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    sw.ray_environment()
    assert sw.os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def test_the_ray_address_check_waits_five_seconds_and_its_refusal_is_whole(monkeypatch):
    from ticketlab.runs import sweep as sw

    calls = []

    def refuse(addr, timeout=None):
        calls.append((addr, timeout))
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(sw.socket, "create_connection", refuse)
    with pytest.raises(UserError) as e:
        check_ray_address("ray://10.1.2.3:10001/")
    assert calls == [(("10.1.2.3", 10001), 5.0)]
    assert str(e.value) == (
        "cannot reach the Ray cluster at --ray-address ray://10.1.2.3:10001/ (Connection refused); check the "
        "address or leave it out to start a local Ray"
    )


def test_an_ipv6_ray_address_splits_at_its_last_colon(monkeypatch):
    from ticketlab.runs import sweep as sw

    calls = []
    monkeypatch.setattr(sw.socket, "create_connection", lambda addr, timeout: calls.append(addr) or _Closable())
    check_ray_address("fd00::1:6379")
    assert calls == [("fd00::1", 6379)]


class _Closable:
    def close(self):
        pass


def test_a_cluster_error_is_cut_to_100_characters_and_a_task_error_to_200(monkeypatch):
    from ticketlab.runs import sweep as sw

    class Down(FakeRay):
        def init(self, **kw):
            raise ConnectionError("x" * 150 + "\nmore")

    monkeypatch.setattr(sw, "import_ray", lambda: Down())
    with pytest.raises(UserError) as e:
        sw._ray(tasks_of(1), "h:1", 1, 0, None, 3, lambda *a: None, quiet=True, fn=lambda i, t: t)
    assert f"({'x' * 100}); check" in str(e.value)

    class Fails(FakeRay):
        def get(self, ref):
            raise RuntimeError("first\n" + "y" * 250)

    monkeypatch.setattr(sw, "import_ray", lambda: Fails())
    seen = []
    sw._ray(tasks_of(1), "h:1", 1, 0, None, 3, lambda t, err, res: seen.append(err), quiet=True, fn=lambda i, t: t)
    assert seen == ["RuntimeError: " + "y" * 200]


def test_a_local_ray_is_watched_started_with_its_whole_settings_timed_and_cleaned_even_if_gone(monkeypatch):
    """The watchdog gets Ray's folder and processes and is stopped; init's settings are all pinned (100 MiB of
    object store, no logging setup of Ray's own); the three times come from the clock in order; a folder Ray
    removed itself is no error; threads per task: the whole CPUs per point, at least one."""
    import shutil

    from ticketlab.runs import sweep as sw

    class Gone(FakeRay):
        def shutdown(self):
            super().shutdown()
            shutil.rmtree(self.inits[0]["_temp_dir"])

    fake = Gone()
    monkeypatch.setattr(sw, "import_ray", lambda: fake)
    dogs = []

    class Dog:
        def __init__(self, folder):
            self.folder, self.tracked, self.stopped = folder, [], False

        def track(self, pids):
            self.tracked.append(pids)

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(sw.watchdog, "start", lambda folder: dogs.append(Dog(folder)) or dogs[-1])
    monkeypatch.setattr(sw.watchdog, "children", lambda: [11, 12])
    clock = iter([10.0, 12.0, 15.0, 16.0, 18.5])
    monkeypatch.setattr(sw.time, "perf_counter", lambda: next(clock))
    seen = []
    times = sw._ray(tasks_of(1), None, 0.5, 0, 2, 1, lambda t, e, r: seen.append(r), quiet=True, fn=lambda i, t: t)
    (init,) = fake.inits
    (dog,) = dogs
    assert init == {
        "num_cpus": 2,
        "num_gpus": 0,
        "include_dashboard": False,
        "object_store_memory": 100 * 1024**2,
        "_temp_dir": dog.folder,
        "_node_ip_address": "127.0.0.1",
        "log_to_driver": False,
        "configure_logging": False,
    }
    assert dog.tracked == [[11, 12]] and dog.stopped
    assert times == {"ray_startup_s": 2.0, "ray_tasks_s": 3.0, "ray_shutdown_s": 2.5}
    assert seen == [1]


def test_the_sweep_config_of_a_config_without_a_seed():
    @dataclass
    class NoSeed:
        x: float = 1.0

        def to_dict(self):
            return asdict(self)

    c = sweep_config(EXP, NoSeed(), [Point("x=2", {"x": 2}, NoSeed(2))])
    assert c == {"experiment": NAME, "fixed": {"x": 1.0}, "axes": [["x", ["2"]]]}


def test_a_sweeps_library_defaults(tmp_path, monkeypatch):
    """One CPU and no GPU per Ray task, three retries, checkpoints every 2000 iterations, packs of 64."""
    from ticketlab.runs import sweep as sw

    fake = FakeRay()
    monkeypatch.setattr(sw, "import_ray", lambda: fake)
    run_sweep(EXP, Cfg(), grid(Cfg(), {"x": [1.0, 2.0]}), [0], tmp_path / "a", backend="ray", check=False, quiet=True)
    assert fake.remote_opts == [{"num_cpus": 1, "num_gpus": 0, "max_retries": 3}]
    assert [c[3]["checkpoint_every"] for c in CALLS] == [2000, 2000]
    sizes = []
    real = sw.packs
    monkeypatch.setattr(sw, "packs", lambda tasks, size, jobs: sizes.append(size) or real(tasks, size, jobs))
    run_sweep(
        EXP,
        Cfg(),
        grid(Cfg(), {"x": [3.0, 4.0]}),
        [0],
        tmp_path / "b",
        check=False,
        quiet=True,
        replicates="vectorized",
    )
    assert sizes == [64]


def test_the_preflight_gets_every_points_config_per_seed_the_methods_check_and_the_data_folder(tmp_path, monkeypatch):
    from ticketlab.runs import sweep as sw

    got = []
    monkeypatch.setattr(
        sw, "preflight", lambda cfgs, check, data_dir: got.append(([(c.x, c.seed) for c in cfgs], check, data_dir))
    )
    from dataclasses import replace

    def check(cfg, model, data):
        pass

    run_sweep(
        replace(EXP, check=check),
        Cfg(),
        grid(Cfg(), {"x": [1.0, 2.0]}),
        [3, 4],
        tmp_path / "sw",
        quiet=True,
        data_dir="/d",
    )
    assert got == [([(1.0, 3), (1.0, 4), (2.0, 3), (2.0, 4)], check, "/d")]


@pytest.mark.parametrize(
    "backend, jobs, said", [("local", 2, "(local, 2 jobs)"), ("local", 1, "(local)"), ("ray", 2, "(ray)")]
)
def test_the_sweeps_first_line_names_its_backend_and_local_jobs(tmp_path, monkeypatch, capsys, backend, jobs, said):
    from concurrent.futures import ThreadPoolExecutor

    from ticketlab.runs import sweep as sw

    monkeypatch.setattr(sw, "import_ray", lambda: FakeRay())
    monkeypatch.setattr(sw, "ProcessPoolExecutor", lambda max_workers, mp_context: ThreadPoolExecutor(max_workers))
    run_sweep(EXP, Cfg(), grid(Cfg(), {"x": [1.0]}), [0], tmp_path / "sw", backend=backend, jobs=jobs, check=False)
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("sweep: ") and first.endswith(f" - 1 point(s) x 1 seed(s); 1 to run {said}")


def test_a_sweep_json_of_no_points_has_no_axes_and_a_table_without_axes_takes_the_rows(tmp_path):
    (tmp_path / "sw").mkdir()
    assert write_sweep_json(EXP, tmp_path / "sw", [], [0], {}, [])["axes"] == []
    row = {"values": {"x": "1"}, "state": "done", "headline": {"acc": stat(0.5)}}
    assert format_sweep({"points": [row]}).splitlines() == ["x     acc  state", "1  0.5000   done"]


def test_a_column_turns_to_exponents_from_a_mean_of_1000_and_nan_stays_lower_case():
    from ticketlab.runs.sweep import column_format

    assert column_format([stat(999.99)]) == ".4f" and column_format([stat(-1000.0)]) == ".3e"
    assert column_format([stat(1000.5)]) == ".3e"
    assert _cell(stat(float("nan"))) == "nan" and _cell(stat(1.0, 2.0, std=float("inf"))) == "1.5000 ± inf"


# -- the plot, read back from the figure ----------------------------------------------------------------------


def drawn(monkeypatch, result, x, hue, metric="acc"):
    from ticketlab.runs import sweep as sw

    got = []
    monkeypatch.setattr(sw, "save_figure", lambda fig, path, dpi=None: got.append((fig, dpi)))
    plot_sweep(result, Path("unused.png"), x, hue, metric)
    ((fig, dpi),) = got
    assert dpi == 110
    return fig, fig.axes[0]


def pt(values, *v, std=0.5):
    return {"values": values, "headline": {"acc": stat(*v, std=std)}}


def test_a_numeric_axis_is_drawn_in_numeric_order_one_line_and_band_per_hue(monkeypatch):
    rows = [
        pt({"d": d, "h": h}, m, m + 0.1, m + 0.2, std=0.1)
        for d, h, m in (("10", "a", 2.0), ("2", "a", 1.0), ("100", "a", 3.0), ("2", "b", 5.0), ("100", "b", 6.0))
    ]
    fig, ax = drawn(monkeypatch, {"experiment": NAME, "points": rows}, "d", "h")
    assert tuple(fig.get_size_inches()) == (6.5, 4.0)
    a, b = ax.get_lines()
    assert list(a.get_xdata()) == [2.0, 10.0, 100.0] and list(a.get_ydata()) == pytest.approx([1.1, 2.1, 3.1])
    assert list(b.get_xdata()) == [2.0, 100.0] and list(b.get_ydata()) == pytest.approx([5.1, 6.1])
    assert (a.get_label(), b.get_label()) == ("h=a", "h=b") and (a.get_marker(), a.get_linestyle()) == ("o", "-")
    assert a.get_markersize() == 4
    bands = ax.collections
    assert len(bands) == 2 and [c.get_alpha() for c in bands] == [0.2, 0.2]
    ys = bands[0].get_paths()[0].vertices[:, 1]
    assert min(ys) == pytest.approx(1.0) and max(ys) == pytest.approx(3.2)
    assert tuple(bands[0].get_facecolor()[0][:3]) == pytest.approx(matplotlib_rgb(a.get_color()))
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "d" and ax.get_title() == f"ticketlab sweep: {NAME}"
    assert ax.get_ylabel() == "acc (mean ± std, up to 3 seeds)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["h=a", "h=b"]
    grid_line = ax.xaxis.get_gridlines()[0]
    assert grid_line.get_visible() and grid_line.get_alpha() == 0.3


def matplotlib_rgb(color):
    from matplotlib.colors import to_rgb

    return to_rgb(color)


@pytest.mark.parametrize(
    "xs, scale",
    [
        (("1", "20"), "linear"),
        (("1", "21"), "log"),
        (("10", "30"), "linear"),
        (("0", "5"), "linear"),
        (("0.5", "50"), "log"),
        (("0.5", "2"), "linear"),
    ],
)
def test_a_numeric_axis_is_logarithmic_when_positive_and_spanning_more_than_twenty_fold(monkeypatch, xs, scale):
    rows = [pt({"d": v}, 1.0) for v in xs]
    _, ax = drawn(monkeypatch, {"experiment": NAME, "points": rows}, "d", None)
    assert ax.get_xscale() == scale


def test_one_seed_says_so_two_seeds_say_up_to_two_and_no_hue_draws_an_unlabelled_line(monkeypatch):
    _, ax = drawn(monkeypatch, {"experiment": NAME, "points": [pt({"d": "1"}, 1.0), pt({"d": "2"}, 2.0)]}, "d", None)
    assert ax.get_ylabel() == "acc (one seed)" and ax.get_legend() is None
    (line,) = ax.get_lines()
    assert line.get_label().startswith("_")
    _, ax = drawn(monkeypatch, {"experiment": NAME, "points": [pt({"d": "1"}, 1.0, 2.0)]}, "d", None)
    assert ax.get_ylabel() == "acc (mean ± std, up to 2 seeds)"


def test_categories_are_points_with_error_bars_in_the_tables_order_labelled_per_hue(monkeypatch):
    rows = [
        pt({"m": m, "h": h}, v, v + 0.2, std=0.3)
        for m, h, v in (("set", "a", 1.0), ("rigl", "a", 2.0), ("set", "b", 3.0))
    ]
    _, ax = drawn(monkeypatch, {"experiment": NAME, "points": rows}, "m", "h")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["set", "rigl"]
    a, b = ax.containers
    assert (a.get_label(), b.get_label()) == ("h=a", "h=b")
    (bars,) = a[2]
    spans = [tuple(seg[:, 1]) for seg in bars.get_segments()]
    assert spans == [pytest.approx((0.8, 1.4)), pytest.approx((1.8, 2.4))]
    assert len(ax.get_lines()) == 0 or all(len(line.get_xdata()) <= 2 for line in ax.get_lines())


def test_the_ray_backend_gets_the_sweeps_address_gpus_jobs_and_retries(tmp_path, monkeypatch):
    from ticketlab.runs import sweep as sw

    monkeypatch.setattr(sw.os, "cpu_count", lambda: 6)  # (not 2: the jobs must decide, not the machine)
    monkeypatch.setattr(sw, "check_ray_address", lambda address: None)
    runs = {}
    for name, kw in {
        "cluster": dict(ray_address="10.0.0.1:6379", gpus_per_point=0.5, retries=5),
        "one job": dict(jobs=1),
        "two jobs": dict(jobs=2),
    }.items():
        fake = FakeRay()
        monkeypatch.setattr(sw, "import_ray", lambda: fake)
        run_sweep(
            EXP, Cfg(), grid(Cfg(), {"x": [1.0]}), [0], tmp_path / name, backend="ray", check=False, quiet=True, **kw
        )
        runs[name] = fake
    assert runs["cluster"].inits == [{"address": "10.0.0.1:6379", "log_to_driver": False, "configure_logging": False}]
    assert runs["cluster"].remote_opts == [{"num_cpus": 1, "num_gpus": 0.5, "max_retries": 5}]
    assert runs["one job"].inits[0]["num_cpus"] == 6 and runs["two jobs"].inits[0]["num_cpus"] == 2


def test_a_sweeps_thread_count_reaches_its_tasks(tmp_path, monkeypatch):
    from ticketlab.runs import sweep as sw

    set_to = []
    monkeypatch.setattr(sw.torch, "set_num_threads", set_to.append)
    run_sweep(EXP, Cfg(), grid(Cfg(), {"x": [1.0, 2.0]}), [0], tmp_path / "sw", check=False, quiet=True, threads=3)
    assert set_to == [3, 3]


def test_a_pack_that_fails_as_a_whole_fails_each_of_its_tasks(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from ticketlab.runs import sweep as sw

    def broken(tasks, threads):
        raise RuntimeError("the pack's worker broke")

    monkeypatch.setattr(sw, "run_pack", broken)
    monkeypatch.setattr(sw, "ProcessPoolExecutor", lambda max_workers, mp_context: ThreadPoolExecutor(max_workers))
    r = run_sweep(
        EXP,
        Cfg(),
        grid(Cfg(), {"x": [1.0, 2.0]}),
        [0, 1],
        tmp_path / "sw",
        jobs=2,
        check=False,
        quiet=True,
        replicates="vectorized",
    )
    assert sorted((f["point"], f["seed"], f["error"]) for f in r["failed"]) == [
        (p, s, "RuntimeError: the pack's worker broke") for p in ("x=1.0", "x=2.0") for s in (0, 1)
    ]
    assert [p["state"] for p in r["points"]] == ["not run", "not run"]
