"""Sweeps: one experiment over a grid of settings and seeds, run locally (in turn or ``jobs`` worker
processes) or as Ray tasks. Layout::

    SWEEP/config.json                kind "sweep": the experiment, its fixed config, the axes
    SWEEP/<axis=value,...>/          a seed group (``runs.seeds``): one ordinary run directory per seed
    SWEEP/sweep.json                 every point's settings, state and headline metrics over its seeds

A task is one (point, seed) run. Finished tasks are skipped when the sweep runs again; a task that fails,
or whose worker dies, leaves only its own run directory (which resumes from its checkpoint on the next
try: Ray retries it at once, the local backend on the next invocation). Group summaries and sweep.json are
written by the driver alone, after each task, so no two processes ever write the same file.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields, is_dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch

from ..errors import UserError
from ..io import read_json, write_json
from ..plotting import category_axis, category_points, plt, save_figure
from ..train.log import configure as configure_log
from . import lockstep, watchdog
from .experiment import Experiment, get_experiment
from .rundir import default_run_dir, open_run_dir
from .seeds import SUMMARY, finished_seeds, is_stat, open_group, seed_dir, write_group_summary
from .setup import preflight

KIND = "sweep"
MAX_POINTS = 10_000
BACKENDS = ("local", "ray")


@dataclass
class Point:
    """One grid point: its folder name, its axis values (as given) and its config (seed set per task)."""

    name: str
    values: dict
    cfg: object


def point_name(values: dict) -> str:
    text = ",".join(f"{k}={v}" for k, v in values.items())
    return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in text)


def grid(cfg, axes: dict[str, list]) -> list[Point]:
    """Points of the full grid over ``axes`` (config field names, ``train``'s fields by their own names)
    with typed values: ``grid(DSTConfig(), {"method": ["set", "rigl"], "lr": [0.1]})``. A grid of more than
    MAX_POINTS points is refused before any is built (a typo in a range would otherwise hang silently)."""
    count = math.prod(len(v) for v in axes.values())
    if count > MAX_POINTS:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        raise UserError(
            f"the sweep has {count:,} points ({sizes}); at most {MAX_POINTS:,} at once: split it into several sweeps"
        )
    points = [Point("", {}, cfg)]
    for axis, values in axes.items():
        nxt = []
        for p in points:
            for v in values:
                vals = {**p.values, axis: v}
                nxt.append(Point(point_name(vals), vals, set_field(p.cfg, axis, v)))
        points = nxt
    return points


def set_field(cfg, name: str, value):
    """A copy of ``cfg`` with field ``name`` (its own, or a nested dataclass's) set to ``value``."""
    key = name.replace("-", "_")
    if key in {f.name for f in fields(cfg)}:
        return replace(cfg, **{key: value})
    for f in fields(cfg):
        sub = getattr(cfg, f.name)
        if is_dataclass(sub) and key in {g.name for g in fields(sub)}:
            return replace(cfg, **{f.name: replace(sub, **{key: value})})
    raise UserError(f"unknown axis {name!r}: not a setting of this command's config")


# -- running one task (in the driver, a worker process, or a Ray worker) --------------------------------------
def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_time(elapsed: float, finished: int, total: int) -> str:
    """A sweep's progress line's time: since the sweep began, and what is left at the pace so far."""
    left = f", about {duration(elapsed / finished * (total - finished))} left" if 0 < finished < total else ""
    return f"{duration(elapsed)} since the sweep began{left}"


def run_task(name: str, config: dict, out: str, runtime: dict, threads: int | None) -> dict:
    """Run one (point, seed) of experiment ``name``; returns its headline metrics."""
    if threads:
        torch.set_num_threads(threads)
    exp = get_experiment(name)
    runtime = dict(runtime)
    configure_log(runtime.pop("log", "none"))  # a worker process logs as the sweep was asked to
    summary = exp.run(exp.config.from_dict(config), Path(out), **runtime)
    return exp.headline(summary)


def run_pack(tasks: list[tuple], threads: int | None) -> list[str | None]:
    """Run several (point, seed) tasks of one architecture and dataset in lockstep, their trainings packed
    into vectorised loops (``runs.lockstep``); returns each task's error (None when it finished)."""

    errors: list[str | None] = [None] * len(tasks)

    def one(i: int, args: tuple):
        def run():
            try:
                run_task(*args, threads)
            except UserError as e:
                errors[i] = str(e)

        return run

    quiet = all(a[3].get("quiet", True) for a in tasks)
    lockstep.Lockstep(quiet=quiet).run([one(i, a) for i, a in enumerate(tasks)])
    return errors


def packs(tasks: list, size: int, jobs: int) -> list[list]:
    """Tasks grouped by model and dataset (what can share a loop), each group cut into at most ``size`` tasks
    and into at least ``jobs`` packs where it has that many tasks, so every worker gets one."""
    groups: dict[tuple, list] = {}
    for t in tasks:
        cfg = t.args[1]
        groups.setdefault((cfg.get("model"), cfg.get("dataset")), []).append(t)
    out = []
    for g in groups.values():
        n = max(math.ceil(len(g) / size), min(jobs, len(g)))
        out += [g[i::n] for i in range(n)]
    return out


# -- backends ---------------------------------------------------------------------------------------------
def _local(tasks, jobs: int, threads: int | None, on_done, fn=None) -> None:
    fn = fn or run_task
    if jobs == 1:
        for t in tasks:
            try:
                on_done(t, None, fn(*t.args, threads))
            except UserError as e:
                on_done(t, str(e), None)
        return
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    # spawn, not fork: a forked child of a process that has run multi-threaded torch can hang.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(fn, *t.args, threads): t for t in tasks}
        for f in as_completed(futures):
            try:
                on_done(futures[f], None, f.result())
            except BrokenProcessPool:
                on_done(futures[f], "its worker process died; run the sweep again to resume it", None)
            except Exception as e:  # noqa: BLE001 - a failed point is reported, the others go on
                on_done(futures[f], f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", None)


def ray_environment() -> None:
    """Settings for a local Ray that listens on 127.0.0.1 only, starts no dashboard, reports no usage
    statistics and writes nothing under HOME (measured on ray 2.60; see the README)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")


def import_ray():
    ray_environment()
    try:
        import ray  # optional: the ray extra
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'ticketlab[ray]'") from None
    return ray


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Refuse an address nothing answers at (Ray itself retries for minutes): HOST:PORT or ray://HOST:PORT."""

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--ray-address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(
            f"cannot reach the Ray cluster at --ray-address {address} ({e.strerror or e}); check the "
            "address or leave it out to start a local Ray"
        ) from None


def _ray(
    tasks, address: str | None, cpus: float, gpus: float, jobs: int | None, retries: int, on_done, quiet: bool, fn=None
) -> dict:
    ray = import_ray()
    temp = dog = None
    t0 = time.perf_counter()
    try:
        if address:
            try:
                ray.init(address=address, log_to_driver=not quiet, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UserError(
                    f"cannot reach the Ray cluster at --ray-address {address} "
                    f"({str(e).splitlines()[0][:100]}); check the address or leave it out"
                ) from None
        else:
            temp = watchdog.make_folder()  # in $TMPDIR, short: Ray's socket paths must fit 107 bytes
            dog = watchdog.start(temp)  # the local Ray dies with this process, even under kill -9
            ray.init(
                num_cpus=jobs or os.cpu_count(),
                num_gpus=None if gpus else 0,
                include_dashboard=False,
                object_store_memory=100 * 1024**2,
                _temp_dir=temp,
                _node_ip_address="127.0.0.1",
                log_to_driver=not quiet,
                configure_logging=False,
            )
        if dog is not None:
            dog.track(watchdog.children())
        startup = time.perf_counter() - t0
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries)(fn or run_task)
        threads = max(1, int(cpus))
        refs = {remote.remote(*t.args, threads): t for t in tasks}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                on_done(refs[done[0]], None, ray.get(done[0]))
            except Exception as e:  # noqa: BLE001 - RayTaskError / WorkerCrashedError after the retries
                on_done(refs[done[0]], f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}", None)
        times = {"ray_startup_s": startup, "ray_tasks_s": time.perf_counter() - t0 - startup}
    finally:
        t1 = time.perf_counter()
        if ray.is_initialized():
            ray.shutdown()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
        if dog is not None:
            dog.stop()
    return times | {"ray_shutdown_s": time.perf_counter() - t1}


# -- the sweep --------------------------------------------------------------------------------------------
@dataclass
class Task:
    point: Point
    seed: int
    args: tuple


def sweep_config(exp: Experiment, base_cfg, points: list[Point]) -> dict:
    fixed = base_cfg.to_dict()
    fixed.pop("seed", None)
    axes: dict[str, list] = {}
    for p in points:
        for k, v in p.values.items():
            if str(v) not in axes.setdefault(k, []):
                axes[k].append(str(v))
    return {"experiment": exp.name, "fixed": fixed, "axes": [[k, v] for k, v in axes.items()]}  # ordered


def run_sweep(
    exp: Experiment,
    base_cfg,
    points: list[Point],
    seeds: list[int],
    out: str | Path | None = None,
    *,
    backend: str = "local",
    jobs: int = 1,
    threads: int | None = None,
    ray_address: str | None = None,
    cpus_per_point: float = 1,
    gpus_per_point: float = 0,
    retries: int = 3,
    check=True,
    data_dir: str | None = None,
    device: str = "cpu",
    quiet: bool = False,
    checkpoint_every: int = 2000,
    log: str = "none",
    replicates: str = "sequential",
    pack_size: int = 64,
) -> dict:
    """Run every (point, seed) not yet finished; returns sweep.json's content (``failed`` lists the tasks
    that did not finish this time). ``replicates="vectorized"``: tasks of one model and dataset run as packs
    (one per worker process or Ray task, at most ``pack_size`` tasks each), their trainings vectorised."""
    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    if not points:
        raise UserError("the sweep has no points: give at least one --vary NAME=V1,V2")
    if backend == "ray":
        import_ray()
        if ray_address:
            check_ray_address(ray_address)
    if check:
        preflight([replace(p.cfg, seed=s) for p in points for s in seeds], exp.check, data_dir)
    runtime = {"device": device, "data_dir": data_dir, "quiet": True, "checkpoint_every": checkpoint_every}
    if log != "none":
        configure_log(log)  # checked here, before the sweep's folder is made
        runtime["log"] = log
    config = sweep_config(exp, base_cfg, points)
    root = open_run_dir(out if out is not None else default_run_dir(KIND, config), KIND, config)
    done: dict[str, list[int]] = {}
    tasks = []
    for p in points:
        group = open_group(exp, p.cfg, root / p.name)
        done[p.name] = finished_seeds(group)
        for s in seeds:
            if s not in done[p.name]:
                cfg = replace(p.cfg, seed=s)
                tasks.append(Task(p, s, (exp.name, cfg.to_dict(), str(seed_dir(group, s)), runtime)))
    failed: list[dict] = []
    n = len(tasks)
    if not quiet:
        print(
            f"sweep: {root} - {len(points)} point(s) x {len(seeds)} seed(s); {n} to run "
            f"({backend}{f', {jobs} jobs' if backend == 'local' and jobs > 1 else ''})",
            file=sys.stderr,
            flush=True,
        )
    counter = {"i": 0}
    t0 = time.perf_counter()

    def on_done(t: Task, error: str | None, _result=None) -> None:
        counter["i"] += 1
        if error is None:
            done[t.point.name] = sorted(set(done[t.point.name]) | {t.seed})
            write_group_summary(exp, root / t.point.name, done[t.point.name])
        else:
            failed.append({"point": t.point.name, "seed": t.seed, "error": error})
        if not quiet:
            state = "done" if error is None else f"FAILED ({error})"
            when = progress_time(time.perf_counter() - t0, counter["i"], n)
            print(f"[{counter['i']}/{n}] {t.point.name} seed {t.seed}: {state}  ({when})", file=sys.stderr, flush=True)

    units, fn, finish = tasks, None, on_done
    if replicates == "vectorized" and len(tasks) > 1:
        groups = packs(tasks, pack_size, jobs)
        units = [Task(None, -1, ([t.args for t in pk],)) for pk in groups]
        members = {id(u): pk for u, pk in zip(units, groups)}
        fn = run_pack

        def finish(unit: Task, error: str | None, result) -> None:  # a pack: each of its tasks
            for i, t in enumerate(members[id(unit)]):
                on_done(t, error if error is not None else result[i])

    extra = {}
    if units:
        if backend == "local":
            _local(units, jobs, threads, finish, fn)
        else:
            extra = _ray(
                units,
                ray_address,
                cpus_per_point,
                gpus_per_point,
                jobs if jobs > 1 else None,
                retries,
                finish,
                quiet,
                fn,
            )
    result = write_sweep_json(exp, root, points, seeds, done, failed)
    result["dir"] = str(root)
    result |= extra
    return result


def write_sweep_json(
    exp: Experiment, root: Path, points: list[Point], seeds: list[int], done: dict[str, list[int]], failed: list[dict]
) -> dict:
    """sweep.json: every point's state and headline over its finished seeds, and the runs that failed in the
    last invocation (they resume on the next)."""
    rows = []
    for p in points:
        finished = done.get(p.name, [])
        state = "done" if set(seeds) <= set(finished) else ("partial" if finished else "not run")
        # the point's seed-group summary already aggregates the headline over exactly these seeds
        headline = read_json(root / p.name / SUMMARY)["headline"] if finished else {}
        rows.append(
            {
                "point": p.name,
                "values": {k: str(v) for k, v in p.values.items()},
                "seeds": finished,
                "state": state,
                "headline": headline,
            }
        )
    result = {
        "experiment": exp.name,
        "axes": list(points[0].values) if points else [],
        "seeds": seeds,
        "points": rows,
        "failed": failed,
    }
    write_json(root / "sweep.json", result)
    return result


def format_sweep(result: dict) -> str:
    """A row per point: its axis values, then each headline metric as mean ± std over its seeds."""
    rows = result["points"]
    axes = result.get("axes") or (list(rows[0]["values"]) if rows else [])
    metrics: list[str] = []
    for r in rows:
        metrics += [m for m in r["headline"] if m not in metrics and m not in axes and is_stat(r["headline"][m])]
    fmts = {m: column_format([r["headline"].get(m) for r in rows]) for m in metrics}
    cells = [
        [*(str(r["values"][a]) for a in axes), *(_cell(r["headline"].get(m), fmts[m]) for m in metrics), r["state"]]
        for r in rows
    ]
    head = [*axes, *metrics, "state"]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)] if cells else [len(h) for h in head]
    line = lambda cs: "  ".join(f"{c:>{w}}" for c, w in zip(cs, widths))  # noqa: E731
    return "\n".join([line(head), *(line(c) for c in cells)])


def _cell(st, fmt: str = ".4f") -> str:
    """mean ± std (sample std over the point's seeds) in the column's format; a single seed: the mean alone."""
    if not is_stat(st):
        return ""
    if st["n"] == 1:
        return f"{st['mean']:{fmt}}"
    return f"{st['mean']:{fmt}} ± {st['std']:{fmt}}"


def column_format(stats: list) -> str:
    """One format per metric column, so its numbers line up: 4 decimals for values below 1000, else 3 significant
    digits in exponent form (FLOPs)."""
    big = any(is_stat(s) and abs(s["mean"]) >= 1000 for s in stats)
    return ".3e" if big else ".4f"


def plot_sweep(result: dict, path: Path, x: str, hue: str | None, metric: str) -> None:
    """``metric`` (mean, with a ±std band) against axis ``x``, one line per value of axis ``hue``."""

    rows = [r for r in result["points"] if is_stat(r["headline"].get(metric))]
    if not rows:
        raise UserError(f"no finished point has the metric {metric!r}; choose --metric from the sweep table's columns")
    for a in (x, hue):
        if a is not None and a not in rows[0]["values"]:
            raise UserError(f"--x/--hue {a!r} is not an axis of this sweep; axes: {', '.join(rows[0]['values'])}")

    def num(v):
        try:
            return float(v)
        except ValueError:
            return None

    xs = [r["values"][x] for r in rows]
    numeric = all(num(v) is not None and math.isfinite(num(v)) for v in xs)
    order = sorted(set(xs), key=num) if numeric else list(dict.fromkeys(xs))  # categories in the table's order
    fig, ax = plt.subplots(figsize=(6.5, 4))
    groups = dict.fromkeys(r["values"][hue] for r in rows) if hue else {None: None}
    for i, g in enumerate(groups):
        pts = [r for r in rows if hue is None or r["values"][hue] == g]
        pts.sort(key=lambda r: order.index(r["values"][x]))
        m = [r["headline"][metric]["mean"] for r in pts]
        s = [r["headline"][metric]["std"] for r in pts]
        label = f"{hue}={g}" if hue else None
        if numeric:  # a line with a ±std band
            px = [num(r["values"][x]) for r in pts]
            (line,) = ax.plot(px, m, "o-", markersize=4, label=label)
            ax.fill_between(
                px, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.2, color=line.get_color()
            )
        else:  # categories: points with error bars, side by side, never joined
            category_points(ax, [order.index(r["values"][x]) for r in pts], m, s, i, len(groups), label)
    if not numeric:
        category_axis(ax, order)
    elif all(num(v) > 0 for v in order) and max(num(v) for v in order) / min(num(v) for v in order) > 20:
        ax.set_xscale("log")
    n = max((r["headline"][metric]["n"] for r in rows), default=1)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{metric} (mean ± std, up to {n} seeds)" if n > 1 else f"{metric} (one seed)")
    ax.set_title(f"ticketlab sweep: {result['experiment']}")
    ax.grid(alpha=0.3)
    if hue:
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
