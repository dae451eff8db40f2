"""What every analysis of finished runs shares: a run or a seed group as its input (each finished seed's run
analysed as a run of its own, the group's numbers mean ± std over them), and the trainings it hands in
together packed under ``--replicates vectorized``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..io import read_json
from .lockstep import resolve, run_all
from .seeds import KIND, aggregate, display, finished_seeds, seed_dir


def seed_group_runs(run_dir: str | Path) -> list[Path]:
    """The finished seeds' run directories when ``run_dir`` is a seed group (else [])."""
    cfg = Path(run_dir) / "config.json"
    if not cfg.is_file():
        return []
    rec = read_json(cfg)
    if not isinstance(rec, dict) or rec.get("kind") != KIND:
        return []
    seeds = finished_seeds(Path(run_dir))
    if not seeds:
        raise UserError(f"{run_dir} is a seed group with no finished seed; finish its runs first")
    return [seed_dir(Path(run_dir), s) for s in seeds]


def run_together(ns: argparse.Namespace, fns: list[Callable]) -> list:
    """A command's work on one run or on every seed of a group: under --replicates vectorized in one
    lockstep, so that the trainings it hands in together (its cells) share vectorised packs."""
    return run_all(fns, resolve(ns.replicates, ns.device), ns.quiet)


def per_run(
    ns: argparse.Namespace, run_dir: str, fn: Callable[[Path], dict], fmt: Callable[[dict], str], then: str = "results"
) -> int:
    """``fn`` (an analysis of one run) on ``run_dir``, or on every finished seed of a seed group (printed as
    mean ± std over the seeds; each seed's table when the results do not average)."""
    runs = seed_group_runs(run_dir)
    if not runs:
        result = run_together(ns, [lambda: fn(Path(run_dir))])[0]
        print(fmt(result))
        print(f"\n{then}: {result['dir']}")
        return 0
    results = run_together(ns, [lambda r=r: fn(r) for r in runs])
    print(f"{len(runs)} seed(s) ({', '.join(r.name for r in runs)}); mean ± std (sample std over seeds)")
    try:
        print(fmt(display(aggregate(results))))
    except (KeyError, TypeError, ValueError, IndexError):
        for r, res in zip(runs, results):
            print(f"\n{r.name}:\n{fmt(res)}")
    print("\nresults: " + ", ".join(str(res["dir"]) for res in results))
    return 0
