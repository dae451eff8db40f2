"""Seed groups: one experiment at several seeds, each seed its own run directory, with error bars.

Layout::

    GROUP/config.json            kind "seeds": the experiment and its config without the seed
    GROUP/seed_<s>/              an ordinary run directory of the experiment (resumable on its own)
    GROUP/summary.json           the aggregate over every finished seed (below)

``aggregate`` turns the seeds' summaries (same structure) into one of the same structure whose numeric
leaves are ``{"mean", "std", "min", "max", "n", "values"}`` (std: the sample standard deviation, n - 1
in the denominator; 0 for one seed); other leaves stay as they are when the seeds agree, else become
``{"values": [...]}``. ``display`` turns that back into a summary the experiment's own formatter prints,
with ``Stat`` numbers that format as "mean ± std".
"""

from __future__ import annotations

import math
import re
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import UserError
from ..io import read_json, write_json
from .experiment import Experiment
from .lockstep import Lockstep
from .rundir import CONFIG_FILE, default_run_dir, open_run_dir

KIND = "seeds"
STAT_KEYS = ("mean", "std", "min", "max", "n", "values")
SUMMARY = "summary.json"


def parse_seeds(seed, seeds: int | None) -> list[int]:
    """The seeds of ``--seed S[,S...]`` and ``--seeds N`` (N seeds from the first --seed, default 0)."""
    listed = [seed] if isinstance(seed, int) else list(seed) if seed is not None else None
    if seeds is not None:
        if seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {seeds}")
        if listed is not None and len(listed) > 1:
            raise UserError("give either --seeds N or a list --seed A,B,C, not both")
        start = listed[0] if listed else 0
        return list(range(start, start + seeds))
    out = listed if listed else [0]
    if len(set(out)) != len(out):
        raise UserError(f"--seed lists a seed twice: {out}")
    return out


def is_stat(x) -> bool:
    return isinstance(x, dict) and set(x) == set(STAT_KEYS)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def aggregate(summaries: list):
    """One summary of the same structure, numeric leaves replaced by their statistics over the seeds."""
    first = summaries[0]
    if all(isinstance(s, dict) for s in summaries) and all(set(s) == set(first) for s in summaries):
        return {k: aggregate([s[k] for s in summaries]) for k in first}
    if all(isinstance(s, list) for s in summaries) and all(len(s) == len(first) for s in summaries):
        return [aggregate([s[i] for s in summaries]) for i in range(len(first))]
    if all(_number(s) for s in summaries):
        vals = list(summaries)
        n = len(vals)
        if all(v == vals[0] for v in vals):  # exact: no rounding noise in a constant's mean and std
            mean, std = float(vals[0]), 0.0
        else:
            mean = math.fsum(vals) / n
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
        return {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": n, "values": vals}
    if all(s == first for s in summaries):
        return first
    return {"values": list(summaries)}


class Stat(float):
    """A mean that formats as "mean ± std" with the format spec given (width applies to the whole)."""

    def __new__(cls, mean: float, std: float, n: int, values: list | None = None):
        obj = super().__new__(cls, mean)
        obj.std, obj.n, obj.values = std, n, values  # values: the seeds' own numbers (plots draw them faintly)
        return obj

    def __format__(self, spec: str) -> str:
        if not spec:  # f"{x}": four significant digits, not the mean's seventeen
            spec = ".4g"
        m = re.fullmatch(r"([<>^]?)(\d*)(,?)(\.\d+)?([a-zA-Z%]?)", spec)
        if not m:
            return float.__format__(self, spec)
        align, width, comma, prec, typ = m.groups()
        if typ == "d":  # an integer metric whose mean is not an integer
            typ, prec = "f", ".1"
        inner = f"{comma}{prec or ''}{typ}"
        text = f"{float.__format__(float(self), inner)} ± {float.__format__(self.std, inner)}"
        return format(text, f"{align or '>'}{width}")

    def __str__(self) -> str:
        return format(self, "")

    __repr__ = __str__

    def _scaled(self, c):
        return Stat(float(self) * c, self.std * abs(c), self.n) if _number(c) else NotImplemented

    def __mul__(self, c):
        return self._scaled(c)

    __rmul__ = __mul__

    def __truediv__(self, c):
        return (
            Stat(float(self) / c, self.std / abs(c), self.n)
            if _number(c) and not isinstance(c, Stat)
            else float(self) / float(c)
        )

    def __add__(self, c):
        return (
            Stat(float(self) + c, self.std, self.n)
            if _number(c) and not isinstance(c, Stat)
            else float(self) + float(c)
        )

    __radd__ = __add__

    def __sub__(self, c):
        return (
            Stat(float(self) - c, self.std, self.n)
            if _number(c) and not isinstance(c, Stat)
            else float(self) - float(c)
        )

    def __neg__(self):
        return Stat(-float(self), self.std, self.n)


def display(agg):
    """An aggregate as a summary for the experiment's formatter: a statistic whose seeds all agree is its
    value, one that varies a ``Stat``; a non-numeric leaf that varies shows its first seed's value."""
    if is_stat(agg):
        vals = agg["values"]
        if all(v == vals[0] for v in vals):
            return vals[0]
        return Stat(agg["mean"], agg["std"], agg["n"], vals)
    if isinstance(agg, dict) and set(agg) == {"values"}:
        return agg["values"][0]
    if isinstance(agg, dict):
        return {k: display(v) for k, v in agg.items()}
    if isinstance(agg, list):
        return [display(v) for v in agg]
    return agg


def mean_std(values: list[float], spec: str = ".4f") -> str:
    """Numbers over seeds as a table cell: "mean ± std" (sample std), or the one value if there is one."""
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), spec)}"


def group_runs(path: Path) -> list[Path]:
    """The finished seed runs of a seed group, or ``[path]`` for a single run (whose summary.json is its own,
    not a group's)."""
    cfg = path / "config.json"
    rec = read_json(cfg) if cfg.is_file() else None
    if not (isinstance(rec, dict) and rec.get("kind") == "seeds"):
        return [path]
    return [seed_dir(path, s) for s in finished_seeds(path)] or [path]


def group_config(exp: Experiment, cfg) -> dict:
    base = cfg.to_dict()
    base.pop("seed")  # every seeded config has one: run_seeds replaces it per seed
    return {"experiment": exp.name, "config": base}


def seed_dir(group: Path, seed: int) -> Path:
    return group / f"seed_{seed}"


def finished_seeds(group: Path) -> list[int]:
    """The seeds the group's summary already holds (a seed is added once its run has returned)."""
    path = group / SUMMARY
    if not path.exists():
        return []
    s = read_json(path)
    seeds = s.get("seeds") if isinstance(s, dict) else None
    if not isinstance(seeds, list) or not all(
        isinstance(x, int) and (seed_dir(group, x) / SUMMARY).is_file() for x in seeds
    ):
        raise UserError(f"{path} is corrupt; delete it and repeat the command to rebuild it")
    return seeds


def write_group_summary(exp: Experiment, group: Path, seeds: list[int]) -> dict:
    """Aggregate the finished ``seeds`` of ``group`` into its summary.json (and return it)."""
    seeds = sorted(seeds)
    summaries = [read_json(seed_dir(group, s) / SUMMARY) for s in seeds]
    stored = read_json(group / CONFIG_FILE)["config"]
    result = {
        "kind": KIND,
        "experiment": exp.name,
        "config": stored["config"],
        "seeds": seeds,
        "runs": {str(s): seed_dir(group, s).name for s in seeds},
        "headline": aggregate([exp.headline(s) for s in summaries]) if summaries else {},
        "aggregate": aggregate(summaries) if summaries else {},
    }
    write_json(group / SUMMARY, result)
    return result


def open_group(exp: Experiment, cfg, out: str | Path | None) -> Path:
    config = group_config(exp, cfg)
    return open_run_dir(out if out is not None else default_run_dir(f"{exp.name}-seeds", config), KIND, config)


def run_seeds(
    exp: Experiment, cfg, seeds: list[int], out: str | Path | None = None, *, replicates: str = "sequential", **runtime
) -> dict:
    """Run ``exp`` at every seed (each resumable in its own folder) and aggregate; returns the group summary.

    The summary covers every seed the group has finished, this call's and earlier calls' (``--seeds 3`` then
    ``--seeds 5`` runs two more). ``replicates="vectorized"`` runs the unfinished seeds in lockstep, their
    trainings packed into vectorised loops (``runs.lockstep``); results equal the sequential ones up to float
    rounding."""
    cfgs = [replace(cfg, seed=s) for s in seeds]
    for c in cfgs:
        c.validate()
    group = open_group(exp, cfg, out)
    done = finished_seeds(group)
    quiet = runtime.get("quiet")
    todo = list(zip(seeds, cfgs))  # finished seeds too: a finished run reads itself back (or continues, --rounds)
    if replicates == "vectorized" and len(todo) > 1:
        if not quiet:
            print(
                f"seeds {', '.join(str(s) for s, _ in todo)} together (vectorized replicates) in {group}",
                file=sys.stderr,
                flush=True,
            )
        Lockstep(quiet=quiet).run([lambda c=c, s=s: exp.run(c, seed_dir(group, s), **runtime) for s, c in todo])
        done = sorted(set(done) | {s for s, _ in todo})
        write_group_summary(exp, group, done)
        todo = []
    for i, (s, c) in enumerate(todo):
        if not quiet:
            print(f"seed {s} ({i + 1}/{len(todo)}): {seed_dir(group, s)}", file=sys.stderr, flush=True)
        exp.run(c, seed_dir(group, s), **runtime)
        done = sorted(set(done) | {s})
        write_group_summary(exp, group, done)  # after every seed: an interrupted group shows what finished
    result = read_json(group / SUMMARY)
    if exp.plot_group is not None and result["aggregate"]:
        try:
            exp.plot_group(display(result["aggregate"]), group)
        except (KeyError, TypeError, ValueError, IndexError):
            pass  # seeds whose summaries differ in structure have no common plot; the table still holds
    result["dir"] = str(group)
    return result


def format_group(exp: Experiment, result: dict) -> str:
    """The experiment's table on the seeds' means ± std, and the headline metrics with min/max."""
    seeds = result["seeds"]
    lines = [f"{exp.name}: {len(seeds)} seed(s) {', '.join(map(str, seeds))}; mean ± std (sample std over seeds)"]
    try:
        lines.append(exp.format(display(result["aggregate"])))
    except (KeyError, TypeError, ValueError, IndexError):
        pass  # the seeds' summaries differ in structure; the headline table below still holds
    head = result.get("headline")
    if head:
        lines.append("")
        lines.append(f"{'metric':<24} {'mean':>11} {'std':>10} {'min':>11} {'max':>11} {'n':>3}")
        for k, st in head.items():
            if is_stat(st):
                lines.append(
                    f"{k:<24} {st['mean']:>11.5g} {st['std']:>10.3g} {st['min']:>11.5g} {st['max']:>11.5g} {st['n']:>3}"
                )
    return "\n".join(lines)
