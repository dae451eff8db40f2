"""Experiments: what the CLI, seed groups, sweeps and the run store know about a method family's command.

An experiment is a typed config dataclass, a run function returning the summary dict, a table formatter
and the few headline metrics a sweep table or ``ticketlab runs`` shows, registered once in EXPERIMENTS
(by the family's own module) and listed in the command registry (``ticketlab.commands``: a built-in's line
there, or a plugin's entry point). Everything above - flags, ``--seeds``, ``ticketlab sweep``, the run store -
works for every registered experiment with no per-command code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import commands
from ..registry import Registry
from .check import SUMMARY_CHECKS
from .rundir import default_run_dir


@dataclass(frozen=True)
class Experiment:
    """What a training command tells the engine: its name (the run kind), config dataclass, run function,
    formatter and headline numbers, and optional presets, checks, plots, trained models and table. Registered
    once, it gets flags, ``--seeds``, ``sweep``, ``runs``, ``show`` and ``report`` with no other code."""

    name: str  # the command, and the run kind stored in config.json
    config: type  # a RunConfig dataclass with model, dataset and seed
    run: Callable[..., dict]  # run(cfg, out, *, device, data_dir, quiet, checkpoint_every)
    format: Callable[[dict], str]  # the summary as the table the command prints
    headline: Callable[[dict], dict]  # a few named numbers of a summary (sweep tables, runs listing)
    help: str = ""
    description: str = ""
    presets: dict = field(default_factory=dict)
    check: Callable | None = None  # check(cfg, model, data): method-specific refusals before training
    legacy_kinds: tuple[str, ...] = ()  # run kinds this experiment's folders were stored under before
    plot_group: Callable | None = None  # plot_group(summary, folder): plots of a seed group's means ± std
    # models(folder, summary): a finished run's trained models, [runs.models.trained_model(...)] (what the analyses
    # that attack, verify or ensemble models evaluate); None: it has none to evaluate
    models: Callable | None = None
    # table(folder, layers): `show`'s table of a finished run (default: format(summary.json)); layers: per-layer
    # densities instead
    table: Callable | None = None
    # a file whose presence marks a finished run, when summary.json is written before the end (imp: per round)
    done_file: str | None = None

    def run_dir(self, cfg, root: str | Path = "runs") -> Path:
        """The default run directory of ``cfg`` (an existing one under a legacy kind's name is reused)."""
        return default_run_dir(self.name, cfg.to_dict(), root, self.legacy_kinds)


EXPERIMENTS: Registry[Experiment] = Registry("command")


def register(exp: Experiment) -> Experiment:
    """Register a training command (in EXPERIMENTS, and as a command of this process)."""
    EXPERIMENTS.register(exp.name)(exp)
    SUMMARY_CHECKS[exp.name] = lambda s: (exp.format(s), exp.headline(s))
    return commands.add(exp)


def experiments() -> Registry[Experiment]:
    """The registry with every training command registered: the built-ins and the plugins'
    (``commands.entries``); a plugin's Experiment its module did not register is registered here."""
    for e in commands.entries().values():
        if e.group in ("", "training") and e.name not in EXPERIMENTS:
            obj = commands.load(e)
            if commands.is_training(obj) and obj.name not in EXPERIMENTS:
                register(obj)
    return EXPERIMENTS


def get_experiment(name: str) -> Experiment:
    """The registered training command ``name`` (its config class, run function, formatter, headline);
    an unknown name is a one-line error listing the known ones."""
    return experiments().get(name)
