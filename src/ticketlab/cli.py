"""The ``ticketlab`` command: a thin layer over the library API.

Errors the user can fix print one line and exit with status 2; Ctrl-C exits 130 and the same command
resumes the run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import UserError
from .flags import add_dataclass_flags, given_flags, merge


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise UserError(f"{message} (see `{self.prog} --help`)")


def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="folder with dataset files (else $TICKETLAB_DATA, system "
                                                    "folders, then the download cache)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--out", default=None, help="run directory (default: runs/<kind>-<config hash>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--checkpoint-every", type=int, default=2000, metavar="N",
                   help="save a resumable checkpoint every N iterations (default: 2000)")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def runtime(ns: argparse.Namespace) -> dict:
    """The runtime flags every runner takes (add_runtime_flags), as keyword arguments."""
    if ns.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every must be >= 1, got {ns.checkpoint_every}")
    return {"device": ns.device, "data_dir": ns.data_dir, "quiet": ns.quiet, "checkpoint_every": ns.checkpoint_every}


def build_parser() -> Parser:
    from .lottery import PRESETS, IMPConfig

    parser = Parser(prog="ticketlab", description="Find, train and study sparse neural networks.")
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("imp", help="iterative magnitude pruning with rewinding (lottery tickets)",
                       description="Rounds of train -> prune -> rewind. Round 0 is the dense net; "
                                   "--rounds N adds N pruning rounds.")
    p.add_argument("--preset", choices=None, metavar="NAME",
                   help=f"paper settings: {', '.join(PRESETS)}; explicit flags override them")
    add_dataclass_flags(p, IMPConfig)
    add_runtime_flags(p)

    from .supermask import PRESETS as SM_PRESETS
    from .supermask import SupermaskConfig

    p = sub.add_parser("supermask", help="learn a mask over frozen weights (supermasks, edge-popup, jackpots)",
                       description="Bernoulli supermasks (Zhou et al.), edge-popup (Ramanujan et al.) on "
                                   "untrained weights, or lottery jackpots (mask search on trained weights).")
    p.add_argument("--preset", metavar="NAME", help=f"paper settings: {', '.join(SM_PRESETS)}")
    add_dataclass_flags(p, SupermaskConfig)
    add_runtime_flags(p)

    from .lottery.values import KEPT_VALUES

    p = sub.add_parser("deconstruct", help="criteria x kept values x signs from an IMP run (Zhou et al. 2019)",
                       description="Masks from every criterion M(w_init, w_final) at the IMP run's densities, "
                                   "evaluated untrained (supermasks) and trained; kept-value and sign ablations. "
                                   "RUN is an IMP run directory; if it holds none, IMP flags train one there.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--criteria", type=_names, default=None, metavar="A,B,...",
                   help="criteria to compare (default: all, see `ticketlab list`)")
    p.add_argument("--use-rounds", type=_ints, default=None, metavar="K,K,...",
                   help="IMP rounds whose per-layer densities are used (default: every pruned round)")
    p.add_argument("--kept-criterion", default="large_final", help="criterion of the kept-value ablation masks")
    p.add_argument("--kept", type=_names, default=None, metavar="A,B,...",
                   help=f"kept-value rules, each unsigned and signed (default: {','.join(KEPT_VALUES)})")
    p.add_argument("--cell-iterations", type=int, default=None, metavar="N",
                   help="training budget of each cell (default: the IMP run's)")
    p.add_argument("--untrained-only", action="store_true", help="only the untrained (supermask) evaluations")
    p.add_argument("--preset", metavar="NAME", help="IMP preset, when RUN must be trained first")
    add_dataclass_flags(p, IMPConfig)
    add_runtime_flags(p)

    from .pruners import PruneInitConfig

    p = sub.add_parser("prune-init", help="prune at initialization (SNIP, GraSP, SynFlow, ...) and train",
                       description="Score the initial weights, keep the top --density, train the sparse net.")
    add_dataclass_flags(p, PruneInitConfig)
    add_runtime_flags(p)

    p = sub.add_parser("baselines", help="scratch, fine-tuning and sanity-check baselines for a run's masks",
                       description="Layerwise-shuffled masks, reinitialised weights (Scratch-E), Scratch-B and "
                                   "fine-tuning, printed beside the method's own accuracy with training FLOPs.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--use-rounds", type=_ints, default=None, metavar="K,K,...",
                   help="IMP rounds to judge (default: every pruned round)")
    p.add_argument("--only", type=_names, default=None, metavar="A,B,...",
                   help="baselines to run: shuffle, reinit, scratch-b, finetune (default: all that apply)")
    p.add_argument("--scratch-b-cap", type=float, default=2.0, metavar="X",
                   help="Scratch-B trains at most X times the run's iterations (default 2)")
    add_runtime_flags(p)

    from .colt import COLTConfig

    p = sub.add_parser("colt", help="cyclic overlapping lottery tickets (data segments, mask overlap), vs IMP",
                       description="Train the ticket on each data segment, keep the overlap of the pruned masks, "
                                   "rewind, cycle; then train it on all data and compare with IMP at that density.")
    add_dataclass_flags(p, COLTConfig)
    add_runtime_flags(p)

    from .sweep import SweepConfig

    p = sub.add_parser("sweep", help="sparse double descent: accuracy and learning distance over a density grid",
                       description="IMP at a small rate down to --min-density, and one-shot masks at the same "
                                   "densities, optionally with label noise (He et al. 2022).")
    add_dataclass_flags(p, SweepConfig)
    add_runtime_flags(p)

    from .dst.runner import DSTConfig

    p = sub.add_parser("dst", help="dynamic sparse training: static, SET, RigL, CTRE, AC/DC, FreeTickets (EDST)",
                       description="Train sparse from scratch at a fixed density while the mask evolves; "
                                   "--ensemble M averages M independent runs, --method edst gets an ensemble "
                                   "from one run. Reports accuracy, NLL, ECE and training/inference FLOPs.")
    add_dataclass_flags(p, DSTConfig)
    add_runtime_flags(p)

    from .structured.runner import StructuredConfig

    p = sub.add_parser("structured", help="structured pruning: network slimming, L1 filter / neuron pruning, Gibbs",
                       description="Train, remove whole channels (conv filters, MLP neurons) with their "
                                   "dependencies, fine-tune; --passes for multi-pass slimming; --scratch e,b for "
                                   "Liu et al.'s scratch baselines of the pruned architecture.")
    add_dataclass_flags(p, StructuredConfig)
    add_runtime_flags(p)

    p = sub.add_parser("export", help="write a run's pruned model as compact, sparse and int8 files",
                       description="compact: channels removed (Torch-Pruning); sparse: CSR kernels chosen by "
                                   "measurement; int8: PyTorch static quantisation. safetensors + JSON, no pickle.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--format", default="compact,sparse,int8", type=_names, metavar="F[,F]",
                   help="compact, sparse and/or int8 (default: all)")
    p.add_argument("--round", type=int, default=None, metavar="K", help="IMP runs: the round (default: the last)")
    p.add_argument("--force", action="store_true", help="rewrite existing export files")
    p.add_argument("--data-dir", default=None, help="folder with dataset files")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("bench", help="latency, file size and accuracy of a run's dense/compact/sparse/int8 forms",
                       description="Exports the run if needed, then times every form side by side "
                                   "(interleaved, median) at each batch size.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--round", type=int, default=None, metavar="K", help="IMP runs: the round (default: the last)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--batch-sizes", type=_ints, default=[1, 256], metavar="B[,B]", help="default 1,256")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds (median; default 7)")
    p.add_argument("--data-dir", default=None, help="folder with dataset files")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("pack", help="store a ticket as seed + entropy-coded mask (optionally with weights)")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--round", type=int, required=True, metavar="K", help="the IMP round to pack")
    p.add_argument("--weights", choices=None, default=None, metavar="fp32|fp16",
                   help="also store the trained values of the kept weights, for deployment")
    p.add_argument("--out", default=None, help="file to write (default: RUN/ticket_round_KK[_fp16].safetensors)")

    p = sub.add_parser("unpack", help="rebuild a packed ticket's initial weights, mask (and weights)")
    p.add_argument("ticket", metavar="FILE")
    p.add_argument("--out", required=True, help="new directory for init/mask/weights .safetensors")

    p = sub.add_parser("show", help="print a run's per-round table again")
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--layers", action="store_true", help="per-layer densities of each round's mask instead")

    sub.add_parser("list", help="list models, datasets and presets")
    return parser


def config_from_args(ns: argparse.Namespace, cls, presets: dict):
    """Dataclass defaults <- the preset's values <- the flags given explicitly."""
    cfg = cls().to_dict()
    if getattr(ns, "preset", None) is not None:
        if ns.preset not in presets:
            raise UserError(f"unknown preset {ns.preset!r}; choose one of: {', '.join(presets)}")
        cfg = merge(cfg, presets[ns.preset])
    given = given_flags(ns, cls)
    train_given = given.get("train", {})
    # A budget given explicitly replaces the preset's budget, whichever unit it is in.
    if "epochs" in train_given:
        cfg["train"]["iterations"] = None
    if "iterations" in train_given:
        cfg["train"]["epochs"] = None
    return cls.from_dict(merge(cfg, given))


def imp_config_from_args(ns: argparse.Namespace):
    from .lottery import PRESETS, IMPConfig

    return config_from_args(ns, IMPConfig, PRESETS)


def cmd_imp(ns: argparse.Namespace) -> int:
    from .lottery import IMPRun, run_table

    cfg = imp_config_from_args(ns)
    run = IMPRun(cfg, ns.out, **runtime(ns))
    if not ns.quiet:
        print(f"run directory: {run.dir}", file=sys.stderr)
    run.run()
    print(run_table(run.dir))
    print(f"\nplots: {run.dir / 'accuracy_vs_density.png'}\n       {run.dir / 'test_acc_by_round.png'}")
    return 0


def cmd_supermask(ns: argparse.Namespace) -> int:
    from .supermask import PRESETS as SM_PRESETS
    from .supermask import SupermaskConfig, format_summary, run_supermask

    cfg = config_from_args(ns, SupermaskConfig, SM_PRESETS)
    summary = run_supermask(cfg, ns.out, **runtime(ns))
    print(format_summary(summary))
    return 0


def cmd_deconstruct(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .deconstruct import DeconstructConfig, run_deconstruct
    from .deconstruct.report import format_deconstruct

    d = DeconstructConfig(kept_criterion=ns.kept_criterion, trained=not ns.untrained_only,
                          iterations=ns.cell_iterations)
    if ns.criteria is not None:
        d.criteria = ns.criteria
    if ns.kept is not None:
        d.kept = ns.kept
    if ns.use_rounds is not None:
        d.rounds = ns.use_rounds
    imp_cfg = None if (Path(ns.run_dir) / "config.json").exists() else imp_config_from_args(ns)
    result = run_deconstruct(ns.run_dir, d, imp_cfg, **runtime(ns))
    print(format_deconstruct(result))
    print(f"\nresults and plots: {result['dir']}")
    return 0


def cmd_prune_init(ns: argparse.Namespace) -> int:
    from .pruners import PruneInitConfig, format_prune_init, run_prune_init

    cfg = config_from_args(ns, PruneInitConfig, {})
    print(format_prune_init(run_prune_init(cfg, ns.out, **runtime(ns))))
    return 0


def cmd_baselines(ns: argparse.Namespace) -> int:
    from .baselines import format_baselines, run_baselines

    result = run_baselines(ns.run_dir, ns.use_rounds, ns.only, ns.scratch_b_cap, **runtime(ns))
    print(format_baselines(result))
    print(f"\nresults: {result['dir']}")
    return 0


def cmd_colt(ns: argparse.Namespace) -> int:
    from .colt import COLTConfig, format_colt, run_colt

    cfg = config_from_args(ns, COLTConfig, {})
    print(format_colt(run_colt(cfg, ns.out, **runtime(ns))))
    return 0


def cmd_sweep(ns: argparse.Namespace) -> int:
    from .sweep import SweepConfig, format_sweep, run_sweep

    cfg = config_from_args(ns, SweepConfig, {})
    r = run_sweep(cfg, ns.out, **runtime(ns))
    print(format_sweep(r))
    print(f"\nplot: {Path(r['dir']) / 'double_descent.png'}")
    return 0


def cmd_dst(ns: argparse.Namespace) -> int:
    from .dst.runner import DSTConfig, format_dst, run_dst

    cfg = config_from_args(ns, DSTConfig, {})
    print(format_dst(run_dst(cfg, ns.out, **runtime(ns))))
    return 0


def cmd_structured(ns: argparse.Namespace) -> int:
    from .structured.runner import StructuredConfig, format_structured, run_structured

    cfg = config_from_args(ns, StructuredConfig, {})
    print(format_structured(run_structured(cfg, ns.out, **runtime(ns))))
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from .deploy.export import export_run, format_export

    print(format_export(export_run(ns.run_dir, ns.format, round=ns.round, data_dir=ns.data_dir, force=ns.force,
                                   quiet=ns.quiet)))
    return 0


def cmd_bench(ns: argparse.Namespace) -> int:
    from .deploy.bench import bench_run, format_bench

    if ns.threads is not None and ns.threads < 1:
        raise UserError(f"--threads must be >= 1, got {ns.threads}")
    if ns.repeats < 1 or not ns.batch_sizes or min(ns.batch_sizes) < 1:
        raise UserError("--repeats and --batch-sizes must be >= 1")
    print(format_bench(bench_run(ns.run_dir, round=ns.round, threads=ns.threads, batch_sizes=tuple(ns.batch_sizes),
                                 repeats=ns.repeats, data_dir=ns.data_dir, quiet=ns.quiet)))
    return 0


def cmd_pack(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .ticket import pack_run

    suffix = f"_{ns.weights}" if ns.weights else ""
    out = Path(ns.out) if ns.out else Path(ns.run_dir) / f"ticket_round_{ns.round:02d}{suffix}.safetensors"
    if out.exists():
        raise UserError(f"{out} exists; choose another --out (nothing was overwritten)")
    d = pack_run(ns.run_dir, ns.round, out, weights=ns.weights)
    print(f"{out}: {d['file_bytes']} bytes; density {100 * d['density']:.2f}%; mask "
          f"{d['bits_per_weight']:.4f} bits per prunable weight vs entropy {d['entropy_bits_per_weight']:.4f} "
          f"({d['ratio_to_entropy']:.3f}x); fp32 weights would be 32 bits each")
    return 0


def cmd_unpack(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .io import save_tensors
    from .ticket import unpack_ticket

    out = Path(ns.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty; choose a new directory (nothing was overwritten)")
    t = unpack_ticket(ns.ticket)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {out} ({e.strerror}); choose a writable directory") from None
    save_tensors(out / "init.safetensors", t.model.state_dict())
    save_tensors(out / "mask.safetensors", t.mask)
    written = ["init.safetensors", "mask.safetensors"]
    if t.weights is not None:
        save_tensors(out / "weights.safetensors", t.weights)
        written.append("weights.safetensors")
    print(f"{t.header['model']} (seed {t.header['seed']}, round {t.header['round']}): wrote "
          f"{', '.join(written)} to {out}")
    return 0


def cmd_show(ns: argparse.Namespace) -> int:
    from .io import read_json
    from .lottery import run_table

    run = Path(ns.run_dir)
    kind = None
    if (run / "config.json").is_file():
        try:
            kind = read_json(run / "config.json").get("kind")
        except (UserError, AttributeError):
            kind = None
    others = {"dst": ("dst.runner", "format_dst"), "prune-init": ("pruners", "format_prune_init"),
              "structured": ("structured.runner", "format_structured")}
    if kind in others and not ns.layers:
        import importlib

        module, fn = others[kind]
        if not (run / "summary.json").exists():
            raise UserError(f"{run} has no summary.json yet; its run has not finished (repeat its command to resume)")
        try:
            print(getattr(importlib.import_module(f".{module}", "ticketlab"), fn)(read_json(run / "summary.json")))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{run / 'summary.json'} is corrupt or from another program") from None
        return 0
    print(run_table(ns.run_dir, layers=ns.layers))
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    from .criteria import CRITERIA
    from .data import DATASETS
    from .lottery import PRESETS
    from .models import MODELS

    print("models:   " + ", ".join(MODELS.names()))
    print("datasets: " + ", ".join(DATASETS.names()))
    print("presets:  " + ", ".join(PRESETS))
    print("criteria: " + ", ".join(CRITERIA.names()))
    from .pruners import PRUNERS
    print("pruners:  " + ", ".join(PRUNERS.names()))
    from .dst import SPARSE_TRAINERS
    print("sparse trainers: " + ", ".join(SPARSE_TRAINERS.names()))
    from .structured.runner import METHODS
    from .structured.select import CHANNEL_SCORES
    print("structured methods: " + ", ".join(METHODS) + "; channel scores: " + ", ".join(CHANNEL_SCORES.names()))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        ns = build_parser().parse_args(argv)
        commands = {"imp": cmd_imp, "supermask": cmd_supermask, "deconstruct": cmd_deconstruct, "prune-init": cmd_prune_init,
                    "baselines": cmd_baselines, "colt": cmd_colt, "sweep": cmd_sweep, "dst": cmd_dst,
                    "structured": cmd_structured, "export": cmd_export, "bench": cmd_bench, "pack": cmd_pack,
                    "unpack": cmd_unpack, "show": cmd_show, "list": cmd_list}
        return commands[ns.command](ns)
    except UserError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
