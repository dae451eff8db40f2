"""The engine's commands: every training command run from its flags (``train``: one run or a seed group),
``ticketlab show RUN`` (a finished run's, seed group's or sweep's table again, or its config as a file) and
``ticketlab runs [DIR]`` (the store: every run under a folder with its settings, state and headline)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..commands import Command, config_from_args, runtime
from ..errors import UserError
from ..flags import config_to_toml, dataclass_flag_dests
from ..io import read_json
from .experiment import experiments
from .lockstep import resolve, run_all
from .seeds import KIND, format_group, parse_seeds, run_seeds
from .setup import preflight
from .store import format_runs, list_runs, matches, metric_value, run_record
from .sweep import KIND as SWEEP
from .sweep import format_sweep


def configure_show(p) -> None:
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument(
        "--config",
        action="store_true",
        help="print the run's config as a TOML file instead (its command's --config reads it back)",
    )
    p.add_argument("--layers", action="store_true", help="per-layer densities of each round's mask instead")


def _summary(run: Path) -> dict:
    if not (run / "summary.json").exists():
        raise UserError(f"{run} has no summary.json yet; its run has not finished (repeat its command to resume)")
    return read_json(run / "summary.json")


def show(ns) -> int:
    run = Path(ns.run_dir)
    if not run.is_dir():
        raise UserError(f"{run} is not a directory; give a run directory")
    rec = run_record(run)
    kind = rec["kind"] if rec is not None else None
    exps = experiments()
    if rec is None or (kind not in exps and kind not in (KIND, SWEEP)):
        raise UserError(
            f"{run} is not a run directory of ticketlab (no readable config.json of a known kind); "
            "give a folder a ticketlab command made"
        )
    if ns.config:
        if kind not in exps:
            raise UserError(
                f"{run} is not a run directory of a training command; give one (a seed group's seeds are, each)"
            )
        print(config_to_toml(rec["config"], dataclass_flag_dests(exps.get(kind).config)), end="")
        return 0
    try:
        if kind == SWEEP:
            if not (run / "sweep.json").is_file():
                raise UserError(f"{run} has no sweep.json yet; run the sweep's command again to finish it")
            print(format_sweep(read_json(run / "sweep.json")))
        elif kind == KIND:
            s = _summary(run)
            print(format_group(exps.get(s["experiment"]), s))
        elif exps.get(kind).table is not None:
            print(exps.get(kind).table(run, layers=ns.layers))
        elif ns.layers:
            raise UserError(
                f"--layers: a {kind} run has no per-round masks to list; `ticketlab show {run}` prints its table"
            )
        else:
            print(exps.get(kind).format(_summary(run)))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise UserError(f"{run}'s results are corrupt or from another program") from None
    return 0


def configure_runs(p) -> None:
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose config has KEY=VALUE (e.g. model=lenet300, method=rigl, lr=0.1)",
    )
    p.add_argument("--sort", default=None, metavar="METRIC", help="sort by this headline metric, highest first")
    p.add_argument("--metric", default="test_acc", help="the metric column (default test_acc)")
    p.add_argument("--recursive", action="store_true", help="runs at any depth (inside sweeps and groups too)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")


def runs(ns) -> int:
    bad = [w for w in ns.where if not w.partition("=")[0] or not w.partition("=")[1]]
    if bad:
        raise UserError(f"--where expects KEY=VALUE, got {bad[0]!r}")
    entries = [e for e in list_runs(ns.dir, ns.recursive) if matches(e, ns.where)]
    if ns.sort:
        entries.sort(key=lambda e: (metric_value(e, ns.sort) is None, -(metric_value(e, ns.sort) or 0)))
    if ns.json:
        print(json.dumps(entries, indent=1, default=str))
    else:
        print(format_runs(entries, ns.sort or ns.metric))
    return 0


SHOW = Command("show", configure_show, show, group="tools")
RUNS = Command(
    "runs",
    configure_runs,
    runs,
    group="tools",
    description="Reads every run directory's own files; DIR itself when it is a run, seed group or sweep "
    "(then its seeds or points).",
)


def train(exp, ns) -> int:
    """A training command from its parsed flags: one run, or a seed group (--seeds N / --seed A,B,C)."""

    seed_arg = getattr(ns, "seed", None)  # (before config_from_args keeps a list's first seed only)
    cfg = config_from_args(ns, exp.config, exp.presets)
    if hasattr(getattr(cfg, "train", None), "refuse_stray_settings"):
        cfg.train.refuse_stray_settings()
    seeds = parse_seeds(seed_arg, ns.seeds)
    rt = runtime(ns)
    mode = resolve(ns.replicates, ns.device)
    preflight([replace(cfg, seed=s) for s in seeds], exp.check, ns.data_dir)
    if ns.seeds is not None or len(seeds) > 1:
        result = run_seeds(exp, cfg, seeds, ns.out, replicates=mode, **rt)
        print(format_group(exp, result))
        print(files_written(Path(result["dir"]), "seed group"))
        return 0
    cfg.seed = seeds[0]
    out = Path(ns.out) if ns.out is not None else exp.run_dir(cfg)
    summary = run_all([lambda: exp.run(cfg, out, **rt)], mode, ns.quiet)[0]  # packs within the one run
    print(exp.format(summary))
    print(files_written(out, "run"))
    return 0


def files_written(folder: Path, what: str) -> str:
    """The footer every training command prints under its table: where the run is, its summary, its plots."""
    lines = ["", f"{what}: {folder}  (`ticketlab show {folder}` prints this again; `ticketlab report` makes a page)"]
    if (folder / "summary.json").is_file():
        lines.append(f"summary: {folder / 'summary.json'}")
    plots = sorted(folder.glob("*.png"))
    if plots:
        lines.append("plots: " + "\n       ".join(str(p) for p in plots))
    return "\n".join(lines)
