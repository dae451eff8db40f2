"""The ``ticketlab`` command: a thin layer over the command registry (``ticketlab.commands``).

``ticketlab --help`` reads the registry's table without importing a family; ``ticketlab COMMAND ...``
imports that one command's module and builds its parser. Errors the user can fix print one line and exit
with status 2; Ctrl-C exits 130 and the same command resumes the run.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, commands
from .commands import GROUPS, Command, Parser, config_from_args
from .errors import UserError


def top_help() -> str:
    """``ticketlab --help``: the commands by group, plugins included (a plugin that fails to load says so)."""
    by_group: dict[str, list[tuple[str, str]]] = {g: [] for g in GROUPS}
    for e in commands.entries().values():
        try:
            group, text = commands.group_of(e), commands.help_of(e)
        except UserError as err:
            group, text = "tools", f"(cannot be loaded: {err})"
        if e.plugin:
            text += f" [plugin: {e.plugin}]"
        by_group.setdefault(group, []).append((e.name, text))
    lines = [
        "usage: ticketlab [--version] COMMAND [flags]   (`ticketlab COMMAND --help`: its flags)",
        "",
        "Find, train and study sparse neural networks.",
    ]
    for group, items in by_group.items():
        if items:
            lines += ["", f"{group}: {GROUPS.get(group, '')}".rstrip(": ")]
            lines += [f"  {name:<16}{text}" for name, text in items]
    return "\n".join(lines)


def build_parser() -> Parser:
    """One parser holding every command's (imports every command; ``main`` builds only the one it runs)."""
    parser = Parser(prog="ticketlab", description="Find, train and study sparse neural networks.")
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for e in commands.entries().values():
        obj = commands.load(e)
        raw = isinstance(obj, Command) and obj.raw_args
        p = sub.add_parser(
            e.name, help=commands.help_of(e), description=getattr(obj, "description", ""), add_help=not raw
        )
        commands.add_flags(p, obj)
    return parser


def imp_config_from_args(ns: argparse.Namespace):
    from .lottery import PRESETS, IMPConfig  # (cli imports families only in the command that needs them)

    return config_from_args(ns, IMPConfig, PRESETS)


def list_configure(p) -> None:
    pass


def list_main(ns) -> int:
    # the registries' names, imported here only: `ticketlab --help` imports no family (nor torch)
    from .criteria import CRITERIA
    from .data import DATASETS
    from .dst import SPARSE_TRAINERS
    from .lottery import PRESETS
    from .models import MODELS
    from .pruners import PRUNERS
    from .structured.runner import METHODS
    from .structured.select import CHANNEL_SCORES

    table = commands.entries()
    print("commands: " + ", ".join(n + (f" ({e.plugin})" if e.plugin else "") for n, e in table.items()))
    print("models:   " + ", ".join(MODELS.names() + MODELS.families()))
    print(
        "datasets: "
        + ", ".join(DATASETS.names())
        + ", npz:PATH (your own arrays; from Python: ticketlab.data.from_arrays)"
    )
    print("presets:  " + ", ".join(PRESETS))
    print("criteria: " + ", ".join(CRITERIA.names()))
    print("pruners:  " + ", ".join(PRUNERS.names()))
    print("sparse trainers: " + ", ".join(SPARSE_TRAINERS.names()))
    print("structured methods: " + ", ".join(METHODS) + "; channel scores: " + ", ".join(CHANNEL_SCORES.names()))
    return 0


LIST = Command("list", list_configure, list_main, group="tools")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("WORLD_SIZE", "1") != "1":  # under torchrun (train.distributed.requested, without torch)
        from .train import distributed

        if distributed.requested() and not distributed.active():
            return _main_data_parallel(argv)
    return _main(argv)


def _main_data_parallel(argv: list[str]) -> int:
    """Under torchrun: rank 0 runs the command, the other ranks follow its trainings (train.distributed)."""
    import torch.distributed as dist

    from .train import distributed, train

    device = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--device"), None)
    device = next((a.split("=", 1)[1] for a in argv if a.startswith("--device=")), device) or "cpu"
    try:
        local = distributed.init(device)
    except (RuntimeError, ValueError) as e:
        print(
            f"ticketlab: error: cannot join torchrun's process group ({str(e).splitlines()[0]}); start it with "
            "torchrun --nproc-per-node N -m ticketlab ...",
            file=sys.stderr,
        )
        return 2
    follower = distributed.rank() != 0
    if follower:
        distributed.follow(local, train)  # an error here ends this process; torchrun then stops the others
        dist.barrier()  # every rank at the end before any tears down (gloo aborts on a peer's early close)
        dist.destroy_process_group()
        _exit_now(0)
    code = _main(argv)  # an unexpected error ends this process (the others are stopped by torchrun)
    distributed.stop()
    dist.barrier()
    dist.destroy_process_group()
    _exit_now(code)  # as the followers: finalization can abort here too (seen: 1 run in 7, after every file)


def _exit_now(code: int) -> None:
    """End a torchrun rank without interpreter finalization, where a thread of torch's distributed store
    can call std::terminate (SIGABRT) once its peers are gone. Every file is closed by then (written
    atomically); only the standard streams and logging's handlers are flushed."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_command(argv: list[str]) -> int:
    """``ticketlab ARGV``: the one command named first, with its flags (errors raised, not printed)."""
    if not argv:
        raise UserError("give a command: ticketlab COMMAND [flags] (see `ticketlab --help`)")
    if argv[0] in ("-h", "--help"):
        print(top_help())
        return 0
    if argv[0] == "--version":
        print(f"ticketlab {__version__}")
        return 0
    e = commands.entry(argv[0])
    obj = commands.load(e)
    if isinstance(obj, Command) and obj.raw_args:
        return obj.main(argv[1:])
    ns = commands.command_parser(e, obj).parse_args(argv[1:])
    ns.command = e.name
    if getattr(ns, "log", "none") != "none":
        from .train.log import configure

        configure(ns.log)
    if isinstance(obj, Command):
        return obj.main(ns)
    from .runs.commands import train

    return train(obj, ns)


def _main(argv: list[str]) -> int:
    try:
        return run_command(argv)
    except UserError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as e:  # the system refused (disk full, permissions, a vanished file): say what, not where
        where = f" ({e.filename})" if e.filename else ""
        print(f"ticketlab: error: {e.strerror or e}{where}; fix that and run the same command again", file=sys.stderr)
        return 2
    finally:
        lock = sys.modules.get("ticketlab.runs.lock")  # loaded only if a run folder was opened
        if lock is not None:
            lock.release_all()  # the run folders this command locked


if __name__ == "__main__":
    sys.exit(main())
