"""The command registry: every ``ticketlab`` command, built in or from a plugin, and the flag helpers they share.

A command is one of two kinds of object, each defined in its own family's module:

- an ``Experiment`` (``runs.experiment``): a training. A config dataclass (its flags), a run function of the
  config and a run folder, a formatter; ``--seeds``, ``sweep``, ``runs``, ``show`` and ``report`` work for it
  with no other code;
- a ``Command`` (here): anything else - an analysis of finished runs (``robustness``, ``verify``, ...) or a tool
  (``export``, ``pack``, ``show``, ...): a function adding its flags and a function running it.

The registry is a table of names -> "module:ATTRIBUTE" (the object), so that ``ticketlab --help`` and
``ticketlab list`` read it without importing a family (or torch): the built-ins in ``BUILTIN`` (a new
built-in command is its file plus one line here) and the plugins, any installed package's entry points in
the ``ticketlab.commands`` group (``name = "package.module:OBJECT"``).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from .errors import UserError
from .flags import (
    add_dataclass_flags,
    check_types,
    comma_list,
    config_file_values,
    dataclass_flag_dests,
    given_flags,
    merge,
    section,
)

ENTRY_POINTS = "ticketlab.commands"
LOSS_ENTRY_POINTS = "ticketlab.losses"
# The modules whose import registers the built-in loss terms (train.losses): the family code stays out of the loop.
BUILTIN_LOSSES = ("ticketlab.robust.training", "ticketlab.verify.training")
GROUPS = {
    "training": "train a model (each run folder hashed and resumable; --seeds, sweep, runs, show, report)",
    "analysis": "study the trained models of finished runs (cached in RUN/<command>-<hash>/)",
    "tools": "deploy, store, list and show runs",
}


@dataclass(frozen=True)
class Command:
    """A command that is not a training: ``configure(parser)`` adds its flags, ``main(ns)`` runs it, prints
    its result and returns the exit status. ``group`` is "analysis" or "tools" (where --help lists it)."""

    name: str
    configure: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace], int]
    help: str = ""
    description: str = ""
    group: str = "analysis"
    raw_args: bool = False  # main takes the command's argument list (it parses them itself: `sweep`)


@dataclass(frozen=True)
class Entry:
    """A registered command: its name, where its object is ("module:ATTRIBUTE"), its group and one-line help
    (a plugin's are read from its object, so listing a plugin imports it)."""

    name: str
    target: str
    group: str = ""
    help: str = ""
    plugin: str = ""  # the distribution that registered it ("" for ticketlab's own)
    obj: object = None  # registered in this process (``add``): the object itself


def _e(name: str, target: str, group: str, help: str) -> Entry:
    return Entry(name, target, group, help)


BUILTIN: tuple[Entry, ...] = (
    _e(
        "imp",
        "ticketlab.lottery.imp_runner:EXPERIMENT",
        "training",
        "iterative magnitude pruning with rewinding (lottery tickets)",
    ),
    _e(
        "supermask",
        "ticketlab.supermask.runner:EXPERIMENT",
        "training",
        "learn a mask over frozen weights (supermasks, edge-popup, jackpots)",
    ),
    _e(
        "prune-init",
        "ticketlab.pruners.runner:EXPERIMENT",
        "training",
        "prune at initialization (SNIP, GraSP, SynFlow, ...) and train",
    ),
    _e(
        "colt",
        "ticketlab.colt.runner:EXPERIMENT",
        "training",
        "cyclic overlapping lottery tickets (data segments, mask overlap), vs IMP",
    ),
    _e(
        "double-descent",
        "ticketlab.double_descent.runner:EXPERIMENT",
        "training",
        "sparse double descent: accuracy and learning distance over a density grid",
    ),
    _e(
        "dst",
        "ticketlab.dst.runner:EXPERIMENT",
        "training",
        "dynamic sparse training: static, SET, RigL, CTRE, AC/DC, FreeTickets (EDST)",
    ),
    _e(
        "structured",
        "ticketlab.structured.runner:EXPERIMENT",
        "training",
        "structured pruning: network slimming, L1 filter / neuron pruning, Gibbs",
    ),
    _e(
        "compress",
        "ticketlab.compress.runner:EXPERIMENT",
        "training",
        "prune a trained dense net (one-shot, gradual/GMP, GAP) while fine-tuning it",
    ),
    _e(
        "neurons",
        "ticketlab.certsparse.neurons:EXPERIMENT",
        "training",
        "stability-based neuron pruning (Li et al.) and linearity grafting (Chen et al.) of a trained net",
    ),
    _e(
        "deadwood",
        "ticketlab.certsparse.deadwood:EXPERIMENT",
        "training",
        "Deadwooding: global pruning under accuracy and robustness constraints (Lagrangian dual)",
    ),
    _e(
        "deconstruct",
        "ticketlab.deconstruct.command:COMMAND",
        "analysis",
        "criteria x kept values x signs from an IMP run (Zhou et al. 2019)",
    ),
    _e(
        "baselines",
        "ticketlab.baselines.command:COMMAND",
        "analysis",
        "scratch, fine-tuning and sanity-check baselines for a run's masks",
    ),
    _e(
        "instability",
        "ticketlab.lottery.instability_command:COMMAND",
        "analysis",
        "linear mode connectivity: the error barrier of copies trained from iteration K (Frankle et al.)",
    ),
    _e(
        "robustness",
        "ticketlab.robust.command:ROBUSTNESS",
        "analysis",
        "clean and adversarial accuracy of every trained model of a run",
    ),
    _e(
        "verify",
        "ticketlab.verify.command:COMMAND",
        "analysis",
        "verified robustness (IBP, CROWN, alpha-CROWN, complete) of a run's models",
    ),
    _e(
        "card-deck",
        "ticketlab.robust.command:CARD_DECK",
        "analysis",
        "CARD-Deck: members trained with different augmentations, spectral gate",
    ),
    _e(
        "sweep",
        "ticketlab.runs.sweep_command:COMMAND",
        "tools",
        "run a command over a grid of settings and seeds (local processes or Ray)",
    ),
    _e(
        "export",
        "ticketlab.deploy.command:EXPORT",
        "tools",
        "write a run's pruned model as compact, sparse and int8 files",
    ),
    _e(
        "bench",
        "ticketlab.deploy.command:BENCH",
        "tools",
        "latency, file size and accuracy of a run's dense/compact/sparse/int8 forms",
    ),
    _e(
        "pack",
        "ticketlab.ticket.command:PACK",
        "tools",
        "store a ticket as seed + entropy-coded mask (optionally with weights)",
    ),
    _e(
        "unpack",
        "ticketlab.ticket.command:UNPACK",
        "tools",
        "rebuild a packed ticket's initial weights, mask (and weights)",
    ),
    _e("show", "ticketlab.runs.commands:SHOW", "tools", "print a run's per-round table again"),
    _e(
        "runs",
        "ticketlab.runs.commands:RUNS",
        "tools",
        "list the runs under runs/ (or DIR): kind, settings, state, headline metric",
    ),
    _e(
        "report",
        "ticketlab.report.command:COMMAND",
        "tools",
        "runs, seed groups and sweeps as one self-contained HTML page",
    ),
    _e("list", "ticketlab.cli:LIST", "tools", "list commands, models, datasets, presets and methods"),
)


@functools.cache
def _entry_points(group: str, path: tuple[str, ...]) -> tuple:
    """The installed entry points of ``group``, read once per ``sys.path`` (the scan costs ~2 ms, and the run
    store asks for the registry once per run it lists)."""
    return tuple(metadata.entry_points(group=group))


def _plugins() -> list[Entry]:
    out = []
    for ep in _entry_points(ENTRY_POINTS, tuple(sys.path)):
        dist = getattr(ep, "dist", None)
        out.append(Entry(ep.name, ep.value, plugin=dist.name if dist is not None else "?"))
    return out


_ADDED: dict[str, object] = {}


def add(obj):
    """Register a command object in this process (``runs.register`` does it for an Experiment): a command
    of a module the user imports before calling ``ticketlab.cli.main``, with no entry point."""
    _ADDED.setdefault(obj.name, obj)
    return obj


def entries() -> dict[str, Entry]:
    """Every registered command by name: the built-ins, the plugins (a plugin may not take a built-in's
    name, nor two plugins one name), then those registered in this process."""
    table = {e.name: e for e in BUILTIN}
    for e in _plugins():
        if e.name in table:
            other = table[e.name].plugin or "ticketlab"
            raise UserError(
                f"the command {e.name!r} of the plugin {e.plugin} is already registered by {other}; "
                f"rename it in {e.plugin}'s entry points ({ENTRY_POINTS})"
            )
        table[e.name] = e
    for name, obj in _ADDED.items():
        if name not in table:
            table[name] = Entry(name, "", obj=obj)
    return table


def entry(name: str) -> Entry:
    table = entries()
    if name not in table:
        raise UserError(f"unknown command {name!r}; choose one of: {', '.join(table)} (see `ticketlab --help`)")
    return table[name]


def load(e: Entry):
    """The command's object (an Experiment or a Command), importing its module."""
    if e.obj is not None:
        return e.obj
    module, _, attr = e.target.partition(":")
    where = f"the command {e.name!r}" + (f" of the plugin {e.plugin}" if e.plugin else "")
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise UserError(f"{where} cannot be loaded ({err}); reinstall {e.plugin or 'ticketlab'}") from None
    obj = mod
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part, None)
    if obj is None or getattr(obj, "name", None) != e.name or not (hasattr(obj, "run") or hasattr(obj, "main")):
        raise UserError(
            f"{where} points at {e.target}, which is not an Experiment or a Command named "
            f"{e.name!r}; fix its entry point"
        )
    return obj


def load_losses() -> None:
    """Import every module that registers loss terms: the built-ins', then each plugin's (``ticketlab.losses``
    entry points: a module, or "module:OBJECT" with the term in it, registered by its module's import)."""
    for module in BUILTIN_LOSSES:
        importlib.import_module(module)
    for ep in _entry_points(LOSS_ENTRY_POINTS, tuple(sys.path)):
        try:
            importlib.import_module(ep.value.partition(":")[0])
        except ImportError as err:
            dist = getattr(ep, "dist", None)
            raise UserError(
                f"the loss term {ep.name!r} of the plugin {dist.name if dist else '?'} cannot be loaded "
                f"({err}); reinstall it"
            ) from None


def is_training(obj) -> bool:
    """An Experiment (a training command) rather than a Command."""
    return not isinstance(obj, Command)


def group_of(e: Entry) -> str:
    if e.group:
        return e.group
    obj = load(e)
    return "training" if is_training(obj) else obj.group


def help_of(e: Entry) -> str:
    return e.help or getattr(load(e), "help", "")


# -- the parser every command is built on -------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump; a mistyped flag gets its nearest flags
        hint = ""
        if message.startswith("unrecognized arguments:"):
            flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            given = [w.split("=", 1)[0] for w in message.split(":", 1)[1].split() if w.startswith("--")]
            near = [m for g in given for m in difflib.get_close_matches(g, flags, n=1, cutoff=0.75)]
            hint = f"; did you mean {' or '.join(dict.fromkeys(near))}?" if near else ""
        raise UserError(f"{message}{hint} (see `{self.prog} --help`)")


def command_parser(e: Entry, obj=None) -> Parser:
    """The parser of one command: an Experiment's flags from its config, a Command's from its configure."""
    obj = load(e) if obj is None else obj
    help_text = e.help or getattr(obj, "help", "")
    usage = f"ticketlab {e.name} [flags]  (the flags by section below)" if is_training(obj) else None
    p = Parser(prog=f"ticketlab {e.name}", usage=usage, description=getattr(obj, "description", "") or help_text)
    add_flags(p, obj)
    return p


def add_flags(p: argparse.ArgumentParser, obj) -> None:
    """A command's flags into ``p``: an Experiment's from its config, a Command's from its configure (none for a
    command that parses its own arguments)."""
    if is_training(obj):
        add_experiment_flags(p, obj)
    elif not obj.raw_args:
        obj.configure(p)


# -- flags shared by commands -------------------------------------------------------------------------------


def names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


ints = comma_list(int, "integers")


def seed_list(text: str) -> list[int]:
    seeds = ints(text)
    if not seeds:
        raise argparse.ArgumentTypeError("expected a seed or comma-separated seeds")
    return seeds


def add_data_flags(p: argparse.ArgumentParser) -> None:
    """--data-dir and --quiet: what every command that reads a dataset takes."""
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with dataset files (else $TICKETLAB_DATA, system folders, then the download cache)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


RUN_SECTION = "run: folder, device, progress, checkpoints, logs"


def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    """The flags of every command that trains: data, device, run folder, progress, checkpoints, live log."""
    p = section(p, RUN_SECTION)
    add_data_flags(p)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--out", default=None, help="run directory (default: runs/<kind>-<config hash>)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=2000,
        metavar="N",
        help="save a resumable checkpoint every N iterations (default: 2000)",
    )
    add_log_flag(p)


def add_replicates_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--replicates",
        default="auto",
        metavar="auto|vectorized|sequential",
        help="trainings that do not depend on each other (seeds, a round's ticket and controls, a "
        "table's cells): vectorized trains those of one architecture together in one loop "
        "(torch.func vmap), sequential one after another; auto (default): vectorized on CUDA, "
        "sequential on CPU",
    )


def add_log_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log",
        default="none",
        metavar="none|jsonl|tensorboard",
        help="live log of every training in its folder: log.jsonl, or TensorBoard event files "
        "(tensorboard --logdir RUN); default none",
    )


def runtime(ns: argparse.Namespace) -> dict:
    """The runtime flags every runner takes (add_runtime_flags), as keyword arguments."""
    if ns.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every must be >= 1, got {ns.checkpoint_every}")
    return {"device": ns.device, "data_dir": ns.data_dir, "quiet": ns.quiet, "checkpoint_every": ns.checkpoint_every}


def add_experiment_flags(p: argparse.ArgumentParser, exp) -> None:
    """A training command's flags: its config's, --preset, --config, --seeds, the runtime flags; --help in
    sections: settings, model and data, the command's own options (then each method's), training and its
    variants, the run."""
    top = p
    p = section(top, "settings from a preset or a file")
    for title in ("model and data", f"{top.prog.removeprefix('ticketlab ')} options", "training"):
        section(top, title)
    if exp.presets:
        p.add_argument(
            "--preset", metavar="NAME", help=f"paper settings: {', '.join(exp.presets)}; explicit flags override them"
        )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="settings from a TOML file whose keys are these flags' "
        "names (flags given here win; `ticketlab show RUN "
        "--config` writes one)",
    )
    add_dataclass_flags(top, exp.config)
    for action in top._actions:  # --seed takes a list too: one run directory per seed under a seed group
        if action.dest == "seed":
            action.type, action.metavar = seed_list, "S[,S...]"
            action.help = "seed, or comma-separated seeds for a seed group (default: 0)"
    section(top, "model and data").add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="run N seeds (from --seed, default 0) as a seed group: each seed its own run directory "
        "under --out, the group's summary mean/std/min/max over them",
    )
    add_runtime_flags(top)
    add_replicates_flag(section(top, RUN_SECTION))


def config_from_args(ns: argparse.Namespace, cls, presets: dict):
    """Dataclass defaults <- the preset's values <- a --config file's <- the flags given explicitly."""
    cfg = cls().to_dict()
    seed = getattr(ns, "seed", None)
    if isinstance(seed, list):  # --seed A,B,C: the config holds the first; run_seeds replaces it per seed
        ns.seed = seed[0]
    if getattr(ns, "preset", None) is not None:
        if ns.preset not in presets:
            raise UserError(f"unknown preset {ns.preset!r}; choose one of: {', '.join(presets)}")
        cfg = merge(cfg, presets[ns.preset])
    if getattr(ns, "config", None) is not None:  # a config file: above the preset, below the flags given
        dests = dataclass_flag_dests(cls)
        values = config_file_values(ns.config, dests, set(dests.values()))
        check_types(cls, values, f"--config {ns.config}: ")
        cfg = merge(cfg, values)
    given = given_flags(ns, cls)
    train_given = given.get("train", {})
    # A budget given explicitly replaces the preset's budget, whichever unit it is in.
    if "epochs" in train_given:
        cfg["train"]["iterations"] = None
    if "iterations" in train_given:
        cfg["train"]["epochs"] = None
    return cls.from_dict(merge(cfg, given))
