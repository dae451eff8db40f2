"""``ticketlab sweep COMMAND --vary NAME=V1,V2 ... [COMMAND's flags]``: a training command over a grid of
settings and seeds (``runs.sweep``), from flags or a TOML spec file. The sweep's own flags come first or
last; the rest are COMMAND's, fixed for every point."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from .. import commands
from ..commands import Command, Parser, add_data_flags, add_log_flag, config_from_args, names, seed_list
from ..errors import UserError
from .lockstep import resolve
from .seeds import parse_seeds
from .sweep import Point, format_sweep, plot_sweep, point_name, run_sweep

SWEEP_RUNTIME = (
    "--out",
    "--device",
    "--data-dir",
    "--quiet",
    "--checkpoint-every",
    "--log",
    "--replicates",
    "--seed",
    "--seeds",
    "--help",
    "-h",
)
SPEC_KEYS = {
    "command",
    "fixed",
    "vary",
    "seeds",
    "seed",
    "backend",
    "jobs",
    "threads",
    "ray_address",
    "cpus_per_point",
    "gpus_per_point",
    "x",
    "hue",
    "metric",
    "out",
    "replicates",
}


def configure(p) -> None:
    p.usage = "ticketlab sweep COMMAND --vary NAME=V1,V2 [--vary ...] [options] [COMMAND's flags]"
    p.description = (
        "Run a command over a grid of settings and seeds. Every point is a seed group of ordinary run "
        "directories under the sweep's folder; finished points are skipped when the sweep runs again. "
        "COMMAND's own flags fix the settings that do not vary."
    )
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="an axis: a flag of COMMAND without its dashes, and its values (repeat for a grid)",
    )
    p.add_argument(
        "--spec",
        metavar="FILE.toml",
        help="the sweep as a TOML file (command, [fixed], [vary], seeds, backend, ...); flags given here override it",
    )
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds per point (from --seed, default 0)")
    p.add_argument("--seed", type=seed_list, default=None, metavar="S[,S...]", help="seed(s) of every point")
    p.add_argument(
        "--backend",
        default=None,
        metavar="local|ray",
        help="local (default): points in turn or --jobs worker processes; ray: Ray tasks",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="local: worker processes at a time (default 1); ray: CPUs of a local Ray (default: all)",
    )
    p.add_argument(
        "--threads", type=int, default=None, metavar="T", help="torch threads per local worker (default: cores / jobs)"
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="an existing Ray cluster (default: start a local one on 127.0.0.1 for the sweep)",
    )
    p.add_argument("--cpus-per-point", type=float, default=None, metavar="C", help="ray: CPUs per task (default 1)")
    p.add_argument("--gpus-per-point", type=float, default=None, metavar="G", help="ray: GPUs per task (default 0)")
    p.add_argument("--x", default=None, metavar="AXIS", help="plot against this axis (default: the first)")
    p.add_argument("--hue", default=None, metavar="AXIS", help="one line per value of this axis (default: the second)")
    p.add_argument("--metric", default=None, metavar="NAME", help="plotted metric (default test_acc)")
    p.add_argument("--out", default=None, help="the sweep's folder (default: runs/sweep-<config hash>)")
    add_data_flags(p)  # --data-dir, --quiet
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--checkpoint-every", type=int, default=2000, metavar="N", help="checkpoint interval of every run")
    add_log_flag(p)
    p.add_argument(
        "--replicates",
        default=None,
        metavar="auto|vectorized|sequential",
        help="vectorized: the points' and seeds' trainings of one model and dataset packed, one pack per "
        "worker (local process or Ray task); auto (default): vectorized on CUDA",
    )


def read_spec(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            spec = tomllib.load(f)
    except OSError as e:
        raise UserError(f"cannot read --spec {path} ({e.strerror}); give a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"--spec {path} is not valid TOML ({e}); fix the file") from None
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise UserError(f"--spec {path}: unknown keys {sorted(unknown)}; known: {', '.join(sorted(SPEC_KEYS))}")
    for key in ("fixed", "vary"):
        if not isinstance(spec.get(key, {}), dict):
            raise UserError(f"--spec {path}: [{key}] must be a table of NAME = value")
    return spec


def flag_argv(name: str, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else []
    if isinstance(value, list):
        return [flag, ",".join(str(v) for v in value)]
    return [flag, str(value)]


def _axes(spec: dict, vary: list[str]) -> dict[str, list[str]]:
    axes: dict[str, list[str]] = {}
    for k, v in spec.get("vary", {}).items():
        axes[k] = [str(x).lower() if isinstance(x, bool) else str(x) for x in (v if isinstance(v, list) else [v])]
    for item in vary:
        name, sep, values = item.partition("=")
        vals = names(values)
        if not sep or not name or not vals:
            raise UserError(f"--vary expects NAME=V1,V2,..., got {item!r}")
        axes[name] = vals
    return axes


def main(argv: list[str]) -> int:
    parser = Parser(prog="ticketlab sweep", allow_abbrev=False)
    configure(parser)
    sns, rest = parser.parse_known_args(argv)
    spec = read_spec(sns.spec) if sns.spec else {}
    if rest and not rest[0].startswith("-"):
        command, fixed = rest[0], rest[1:]
    elif "command" in spec:
        command, fixed = spec["command"], rest
    else:
        raise UserError(
            "`ticketlab sweep` runs a grid: ticketlab sweep COMMAND --vary NAME=V1,V2 ... (sparse double "
            "descent is now `ticketlab double-descent`)"
        )
    e = commands.entry(command)
    exp = commands.load(e)
    if not commands.is_training(exp):
        raise UserError(f"`ticketlab sweep` runs a training command; {command!r} is not one")
    sub = commands.command_parser(e, exp)
    fixed = [a for (k, v) in spec.get("fixed", {}).items() for a in flag_argv(k, v)] + fixed
    bad = [a for a in fixed if a.split("=")[0] in SWEEP_RUNTIME]
    if bad:
        raise UserError(f"{bad[0]} is a flag of the sweep itself: give it before or after COMMAND's flags once")
    axes = _axes(spec, sns.vary)
    actions = {s: a for a in sub._actions for s in a.option_strings}
    for name in axes:
        flag = "--" + name.replace("_", "-")
        if flag in SWEEP_RUNTIME:
            raise UserError(f"--vary {name}: not an axis; seeds are --seeds/--seed, the rest are settings of the sweep")
        if flag not in actions:
            raise UserError(f"--vary {name}: {command} has no flag {flag}; see `ticketlab {command} --help`")
        if len(set(axes[name])) != len(axes[name]):
            raise UserError(f"--vary {name} lists a value twice")

    def parse(extra: list[str]):
        return config_from_args(sub.parse_args([*fixed, *extra]), exp.config, exp.presets)

    def axis_argv(name: str, value: str) -> list[str]:
        flag = "--" + name.replace("_", "-")
        if actions[flag].nargs == 0:  # a switch: true adds it, false leaves it out
            if value.lower() not in ("true", "false"):
                raise UserError(f"--vary {name}: {flag} is a switch; its values are true and false")
            return [flag] if value.lower() == "true" else []
        return [flag, value]

    base = parse([])
    combos: list[dict] = [{}]
    for name, vals in axes.items():
        combos = [{**c, name: v} for c in combos for v in vals]
    points = [Point(point_name(c), c, parse([a for k, v in c.items() for a in axis_argv(k, v)])) for c in combos]
    seeds = parse_seeds(
        sns.seed if sns.seed is not None else spec.get("seed"),
        sns.seeds if sns.seeds is not None else spec.get("seeds"),
    )
    if sns.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every must be >= 1, got {sns.checkpoint_every}")
    opt = lambda k, default: getattr(sns, k) if getattr(sns, k) is not None else spec.get(k, default)  # noqa: E731
    threads = opt("threads", None)
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    r = run_sweep(
        exp,
        base,
        points,
        seeds,
        opt("out", None),
        backend=opt("backend", "local"),
        jobs=opt("jobs", 1),
        threads=threads,
        ray_address=opt("ray_address", None),
        cpus_per_point=opt("cpus_per_point", 1),
        gpus_per_point=opt("gpus_per_point", 0),
        data_dir=sns.data_dir,
        device=sns.device,
        quiet=sns.quiet,
        checkpoint_every=sns.checkpoint_every,
        log=sns.log,
        replicates=resolve(opt("replicates", "auto"), sns.device),
    )
    print(format_sweep(r))
    axis_names = list(axes)
    x = opt("x", axis_names[0])
    hue = opt("hue", axis_names[1] if len(axis_names) > 1 else None)
    metric = opt("metric", "test_acc")
    if any(p["state"] != "not run" for p in r["points"]):
        try:
            plot_sweep(r, Path(r["dir"]) / "sweep.png", x, hue, metric)
            print(
                f"\nsweep: {r['dir']} (sweep.json, sweep.png: {metric} against {x}"
                f"{f', one line per {hue}' if hue else ''})"
            )
        except UserError as e:
            print(f"\nsweep: {r['dir']} (sweep.json; no plot: {e})")
    if r["failed"]:
        print(
            f"ticketlab: {len(r['failed'])} run(s) did not finish (listed above); run the same command again to "
            "retry them",
            file=sys.stderr,
        )
        return 1
    return 0


COMMAND = Command("sweep", configure, main, group="tools", raw_args=True)
