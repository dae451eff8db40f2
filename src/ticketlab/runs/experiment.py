"""Experiments: what the CLI, seed groups, sweeps and the run store know about a method family's command.

An experiment is a typed config dataclass, a run function returning the summary dict, a table formatter
and the few headline metrics a sweep table or ``ticketlab runs`` shows, registered once in EXPERIMENTS
(by the family's own module). Everything above - flags, ``--seeds``, ``ticketlab sweep``, the run store -
works for every registered experiment with no per-command code.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..registry import Registry
from .rundir import default_run_dir

# The method families whose modules register experiments (imported on first use of the registry).
FAMILIES = ("lottery", "supermask", "pruners", "colt", "double_descent", "dst.runner", "structured.runner",
            "compress", "certsparse")


@dataclass(frozen=True)
class Experiment:
    name: str                                   # the command, and the run kind stored in config.json
    config: type                                # a RunConfig dataclass with model, dataset and seed
    run: Callable[..., dict]                    # run(cfg, out, *, device, data_dir, quiet, checkpoint_every)
    format: Callable[[dict], str]               # the summary as the table the command prints
    headline: Callable[[dict], dict]            # a few named numbers of a summary (sweep tables, runs listing)
    help: str = ""
    description: str = ""
    presets: dict = field(default_factory=dict)
    check: Callable | None = None               # check(cfg, model, data): method-specific refusals before training
    legacy_kinds: tuple[str, ...] = ()          # run kinds this experiment's folders were stored under before
    plot_group: Callable | None = None          # plot_group(summary, folder): plots of a seed group's means ± std

    def run_dir(self, cfg, root: str | Path = "runs") -> Path:
        """The default run directory of ``cfg`` (an existing one under a legacy kind's name is reused)."""
        return default_run_dir(self.name, cfg.to_dict(), root, self.legacy_kinds)


EXPERIMENTS: Registry[Experiment] = Registry("command")


def register(exp: Experiment) -> Experiment:
    EXPERIMENTS.register(exp.name)(exp)
    return exp


def experiments() -> Registry[Experiment]:
    """The registry with every family's experiments registered."""
    for fam in FAMILIES:
        importlib.import_module(f"ticketlab.{fam}")
    return EXPERIMENTS


def get_experiment(name: str) -> Experiment:
    return experiments().get(name)
