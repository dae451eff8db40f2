"""The ``ticketlab`` command: a thin layer over the library API.

Errors the user can fix print one line and exit with status 2; Ctrl-C exits 130 and the same command
resumes the run.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import UserError
from .flags import (add_dataclass_flags, config_file_values, config_to_toml, dataclass_flag_dests, given_flags,
                    merge)


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
    add_log_flag(p)


def add_replicates_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replicates", default="auto", metavar="auto|vectorized|sequential",
                   help="trainings that do not depend on each other (seeds, a round's ticket and controls, a "
                        "table's cells): vectorized trains those of one architecture together in one loop "
                        "(torch.func vmap), sequential one after another; auto (default): vectorized on CUDA, "
                        "sequential on CPU")


def add_log_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", default="none", metavar="none|jsonl|tensorboard",
                   help="live log of every training in its folder: log.jsonl, or TensorBoard event files "
                        "(tensorboard --logdir RUN); default none")


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


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _seed_list(text: str) -> list[int]:
    seeds = _ints(text)
    if not seeds:
        raise argparse.ArgumentTypeError("expected a seed or comma-separated seeds")
    return seeds


def add_experiment_parser(sub, exp) -> argparse.ArgumentParser:
    """A registered experiment's command: its config's flags, --preset, --seeds, the runtime flags."""
    p = sub.add_parser(exp.name, help=exp.help, description=exp.description)
    if exp.presets:
        p.add_argument("--preset", metavar="NAME", help=f"paper settings: {', '.join(exp.presets)}; explicit "
                                                        "flags override them")
    p.add_argument("--config", metavar="FILE.toml", help="settings from a TOML file whose keys are these flags' "
                                                          "names (flags given here win; `ticketlab show RUN "
                                                          "--config` writes one)")
    add_dataclass_flags(p, exp.config)
    for action in p._actions:  # --seed takes a list too: one run directory per seed under a seed group
        if action.dest == "seed":
            action.type, action.metavar = _seed_list, "S[,S...]"
            action.help = "seed, or comma-separated seeds for a seed group (default: 0)"
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="run N seeds (from --seed, default 0) as a seed group: each seed its own run directory "
                        "under --out, the group's summary mean/std/min/max over them")
    add_runtime_flags(p)
    add_replicates_flag(p)
    return p


def build_parser() -> Parser:
    from .lottery import IMPConfig

    parser = Parser(prog="ticketlab", description="Find, train and study sparse neural networks.")
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    from .runs import experiments

    exps = experiments()
    for name in ("imp", "supermask"):
        add_experiment_parser(sub, exps.get(name))

    from .sparse.values import KEPT_VALUES

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
    add_replicates_flag(p)

    add_experiment_parser(sub, exps.get("prune-init"))

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
    add_replicates_flag(p)

    p = sub.add_parser("instability", help="linear mode connectivity: the error barrier between two copies "
                                           "trained from rewinding iteration K (Frankle et al. 2020)",
                       description="From the dense run's weights at each --rewind K, train two copies with "
                                   "different data orders (the dense net and the tickets of --use-rounds) and "
                                   "report the test-error barrier along the line between them; the smallest K "
                                   "with a barrier under 2 points is the suggested --rewind. Cached, resumable.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--rewind", type=_ints, required=True, metavar="K,K,...", help="rewinding iterations to test")
    p.add_argument("--use-rounds", type=_ints, default=None, metavar="R,R,...",
                   help="rounds whose tickets to test (default: 0, the dense net)")
    p.add_argument("--points", type=int, default=30, help="interpolation points (default 30)")
    add_runtime_flags(p)
    add_replicates_flag(p)

    for name in ("colt", "double-descent", "dst", "structured", "compress", "neurons", "deadwood"):
        add_experiment_parser(sub, exps.get(name))

    sub.add_parser("sweep", help="run a command over a grid of settings and seeds (local processes or Ray)",
                   add_help=False)  # parsed by sweep_parser: `ticketlab sweep --help`

    p = sub.add_parser("robustness", help="clean and adversarial accuracy of every trained model of a run",
                       description="Attacks (PGD, FGSM, AutoAttack) in pixel units on the test set of every "
                                   "trained model of an IMP, prune-init, DST or structured run; cached in "
                                   "RUN/robustness-<hash>/ and resumable.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--attack", default="pgd", help="pgd (default), fgsm or autoattack (pip install "
                                                   "'ticketlab[robust]')")
    p.add_argument("--eps", type=_floats, default=[0.1], metavar="E[,E...]",
                   help="radii in pixel units, images in [0, 1] (default 0.1)")
    p.add_argument("--norm", default="linf", help="linf (default) or l2")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    p.add_argument("--step-size", type=float, default=None, help="PGD step (default 2.5 eps / steps)")
    p.add_argument("--restarts", type=int, default=1, help="PGD random restarts (default 1)")
    p.add_argument("--samples", type=int, default=None, metavar="N", help="the first N test examples (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    p.add_argument("--corruptions", type=_names, default=[], metavar="all|C[,C...]",
                   help="also the accuracy under common corruptions: MNIST-C's (28x28 grayscale data) or "
                        "CIFAR-10-C's at severities 1-5 (32x32 RGB)")
    p.add_argument("--transfer", action="store_true",
                   help="transfer attack: examples made on the run's first model (IMP: the dense round 0)")
    p.add_argument("--int8", action="store_true",
                   help="also each model's int8 form (as `export` makes it), met with its float model's examples")
    p.add_argument("--data-dir", default=None, help="folder with dataset files")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("verify", help="verified robustness (IBP, CROWN, alpha-CROWN, complete) of a run's models",
                       description="Sound bounds and complete verification over the L-inf ball of radius --eps "
                                   "(pixel units) around each of the first --samples test examples, for every "
                                   "trained model of a run: clean, PGD and verified accuracy, unstable ReLUs per "
                                   "layer, time per sample. Cached in RUN/verify-<hash>/ and resumable.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--eps", type=float, default=0.1, help="radius in pixel units, images in [0, 1] (default 0.1)")
    p.add_argument("--method", type=_names, default=["ibp", "crown", "alpha-crown"], metavar="M[,M...]",
                   help="ibp, crown, alpha-crown, complete, or all (default ibp,crown,alpha-crown)")
    p.add_argument("--samples", type=int, default=100, metavar="N", help="the first N test examples (default 100)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="complete verification: seconds per sample (default 30)")
    p.add_argument("--solver", default="milp",
                   help="complete verification: milp (HiGHS through scipy, default) or marabou "
                        "(pip install 'ticketlab[verify]')")
    p.add_argument("--pgd-steps", type=int, default=50, help="PGD steps of the attack (default 50)")
    p.add_argument("--pgd-restarts", type=int, default=3, help="PGD random restarts (default 3)")
    p.add_argument("--alpha-steps", type=int, default=20, help="alpha-CROWN optimisation steps (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attack's random starts")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: bounds and attack (complete "
                                                   "verification runs on the CPU)")
    p.add_argument("--data-dir", default=None, help="folder with dataset files")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("card-deck", help="CARD-Deck: members trained with different augmentations, spectral gate",
                       description="Each test input goes to the member run whose augmented training images' "
                                   "Fourier spectrum is nearest its own (Diffenderfer et al. 2021); accuracy per "
                                   "member, of the plain ensemble and of the deck, clean and per corruption.")
    p.add_argument("members", metavar="RUN", nargs="+", help="member runs (imp, compress or prune-init)")
    p.add_argument("--corruptions", type=_names, default=[], metavar="all|C[,C...]",
                   help="also each corruption (MNIST-C or CIFAR-10-C, as `robustness`)")
    p.add_argument("--samples", type=int, default=None, metavar="N", help="the first N test examples (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions and the gate's reference images")
    p.add_argument("--out", default=None, help="results folder (default runs/card-deck-<hash>)")
    p.add_argument("--data-dir", default=None, help="folder with dataset files")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("export", help="write a run's pruned model as compact, sparse and int8 files",
                       description="compact: channels removed (Torch-Pruning); sparse: CSR kernels chosen by "
                                   "measurement; int8: PyTorch static quantisation. safetensors + JSON, no pickle.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--format", default="compact,sparse,int8", type=_names, metavar="F[,F]",
                   help="compact, sparse, int8 and/or onnx (dense, compact and int8 for ONNX Runtime; pip install "
                        "'ticketlab[onnx]'); default: compact,sparse,int8")
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
    p.add_argument("--config", action="store_true", help="print the run's config as a TOML file instead (its "
                                                         "command's --config reads it back)")
    p.add_argument("--layers", action="store_true", help="per-layer densities of each round's mask instead")

    p = sub.add_parser("runs", help="list the runs under runs/ (or DIR): kind, settings, state, headline metric",
                       description="Reads every run directory's own files; DIR itself when it is a run, seed group "
                                   "or sweep (then its seeds or points).")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="keep runs whose config has KEY=VALUE (e.g. model=lenet300, method=rigl, lr=0.1)")
    p.add_argument("--sort", default=None, metavar="METRIC", help="sort by this headline metric, highest first")
    p.add_argument("--metric", default="test_acc", help="the metric column (default test_acc)")
    p.add_argument("--recursive", action="store_true", help="runs at any depth (inside sweeps and groups too)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")

    p = sub.add_parser("report", help="runs, seed groups and sweeps as one self-contained HTML page",
                       description="Plots (inline SVG) and tables of every PATH: a run of any kind, a seed group "
                                   "(mean ± std bands), a sweep, or a folder of runs; results inside them "
                                   "(robustness, verification, baselines, export/bench) included; several PATHs "
                                   "are also overlaid for comparison. Opens offline in any browser.")
    p.add_argument("paths", metavar="PATH", nargs="+", help="run directories, seed groups, sweeps or folders of runs")
    p.add_argument("--out", default="report.html", metavar="FILE.html",
                   help="the page to write (default report.html; an existing file is replaced only if it is a "
                        "ticketlab report)")

    sub.add_parser("list", help="list models, datasets and presets")
    return parser


def config_from_args(ns: argparse.Namespace, cls, presets: dict):
    """Dataclass defaults <- the preset's values <- the flags given explicitly."""
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
        cfg = merge(cfg, config_file_values(ns.config, dests, set(dests.values())))
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


def cmd_experiment(ns: argparse.Namespace, seed_arg) -> int:
    """Any registered experiment: one run, or a seed group (--seeds N / --seed A,B,C)."""
    from dataclasses import replace

    from .runs import get_experiment, preflight
    from .runs.seeds import format_group, parse_seeds, run_seeds

    exp = get_experiment(ns.command)
    cfg = config_from_args(ns, exp.config, exp.presets)
    seeds = parse_seeds(seed_arg, ns.seeds)
    rt = runtime(ns)
    from .runs.lockstep import resolve, run_all

    mode = resolve(ns.replicates, ns.device)
    preflight([replace(cfg, seed=s) for s in seeds], exp.check, ns.data_dir)
    if ns.seeds is not None or len(seeds) > 1:
        result = run_seeds(exp, cfg, seeds, ns.out, replicates=mode, **rt)
        print(format_group(exp, result))
        print(f"\nseed group: {result['dir']} (`ticketlab show` prints it again)")
        return 0
    cfg.seed = seeds[0]
    out = Path(ns.out) if ns.out is not None else exp.run_dir(cfg)
    summary = run_all([lambda: exp.run(cfg, out, **rt)], mode, ns.quiet)[0]  # packs within the one run
    print(exp.format(summary))
    plots = sorted(out.glob("*.png"))
    if plots:
        print("\nplots: " + "\n       ".join(str(p) for p in plots))
    return 0


SWEEP_RUNTIME = ("--out", "--device", "--data-dir", "--quiet", "--checkpoint-every", "--log", "--replicates",
                 "--seed", "--seeds", "--help", "-h")
SPEC_KEYS = {"command", "fixed", "vary", "seeds", "seed", "backend", "jobs", "threads", "ray_address",
             "cpus_per_point", "gpus_per_point", "x", "hue", "metric", "out", "replicates"}


def sweep_parser() -> Parser:
    p = Parser(prog="ticketlab sweep", allow_abbrev=False,
               usage="ticketlab sweep COMMAND --vary NAME=V1,V2 [--vary ...] [options] [COMMAND's flags]",
               description="Run a command over a grid of settings and seeds. Every point is a seed group of "
                           "ordinary run directories under the sweep's folder; finished points are skipped when "
                           "the sweep runs again. COMMAND's own flags fix the settings that do not vary.")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=V1,V2",
                   help="an axis: a flag of COMMAND without its dashes, and its values (repeat for a grid)")
    p.add_argument("--spec", metavar="FILE.toml", help="the sweep as a TOML file (command, [fixed], [vary], seeds, "
                                                       "backend, ...); flags given here override it")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds per point (from --seed, default 0)")
    p.add_argument("--seed", type=_seed_list, default=None, metavar="S[,S...]", help="seed(s) of every point")
    p.add_argument("--backend", default=None, metavar="local|ray", help="local (default): points in turn or --jobs "
                                                                        "worker processes; ray: Ray tasks")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="local: worker processes at a time (default 1); ray: CPUs of a local Ray (default: all)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per local worker (default: cores / jobs)")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="an existing Ray cluster (default: start a "
                                                                        "local one on 127.0.0.1 for the sweep)")
    p.add_argument("--cpus-per-point", type=float, default=None, metavar="C", help="ray: CPUs per task (default 1)")
    p.add_argument("--gpus-per-point", type=float, default=None, metavar="G", help="ray: GPUs per task (default 0)")
    p.add_argument("--x", default=None, metavar="AXIS", help="plot against this axis (default: the first)")
    p.add_argument("--hue", default=None, metavar="AXIS", help="one line per value of this axis (default: the second)")
    p.add_argument("--metric", default=None, metavar="NAME", help="plotted metric (default test_acc)")
    p.add_argument("--out", default=None, help="the sweep's folder (default: runs/sweep-<config hash>)")
    p.add_argument("--data-dir", default=None, help="folder with dataset files")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--checkpoint-every", type=int, default=2000, metavar="N", help="checkpoint interval of every run")
    add_log_flag(p)
    p.add_argument("--replicates", default=None, metavar="auto|vectorized|sequential",
                   help="vectorized: the points' and seeds' trainings of one model and dataset packed, one pack per "
                        "worker (local process or Ray task); auto (default): vectorized on CUDA")
    return p


def _read_spec(path: str) -> dict:
    import tomllib

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


def _flag_argv(name: str, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else []
    if isinstance(value, list):
        return [flag, ",".join(str(v) for v in value)]
    return [flag, str(value)]


def cmd_sweep(argv: list[str]) -> int:
    from .runs import get_experiment
    from .runs.seeds import parse_seeds
    from .runs.lockstep import resolve
    from .runs.sweep import Point, format_sweep, plot_sweep, point_name, run_sweep

    sns, rest = sweep_parser().parse_known_args(argv)
    spec = _read_spec(sns.spec) if sns.spec else {}
    if rest and not rest[0].startswith("-"):
        command, fixed = rest[0], rest[1:]
    elif "command" in spec:
        command, fixed = spec["command"], rest
    else:
        raise UserError("`ticketlab sweep` runs a grid: ticketlab sweep COMMAND --vary NAME=V1,V2 ... (sparse double "
                        "descent is now `ticketlab double-descent`)")
    if command in ("sweep", "show", "list", "runs", "export", "bench", "pack", "unpack", "deconstruct", "baselines"):
        raise UserError(f"`ticketlab sweep` runs a training command; {command!r} is not one")
    exp = get_experiment(command)
    sub = {a.dest: a for a in build_parser()._subparsers._group_actions}["command"].choices[command]
    fixed = [a for (k, v) in spec.get("fixed", {}).items() for a in _flag_argv(k, v)] + fixed
    bad = [a for a in fixed if a.split("=")[0] in SWEEP_RUNTIME]
    if bad:
        raise UserError(f"{bad[0]} is a flag of the sweep itself: give it before or after COMMAND's flags once")
    axes: dict[str, list[str]] = {}
    for k, v in spec.get("vary", {}).items():
        axes[k] = [str(x).lower() if isinstance(x, bool) else str(x) for x in (v if isinstance(v, list) else [v])]
    for item in sns.vary:
        name, sep, values = item.partition("=")
        vals = _names(values)
        if not sep or not name or not vals:
            raise UserError(f"--vary expects NAME=V1,V2,..., got {item!r}")
        axes[name] = vals
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
        ns = sub.parse_args([*fixed, *extra])
        ns.command = command
        return config_from_args(ns, exp.config, exp.presets)

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
    seeds = parse_seeds(sns.seed if sns.seed is not None else spec.get("seed"),
                        sns.seeds if sns.seeds is not None else spec.get("seeds"))
    if sns.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every must be >= 1, got {sns.checkpoint_every}")
    opt = lambda k, default: getattr(sns, k) if getattr(sns, k) is not None else spec.get(k, default)  # noqa: E731
    threads = opt("threads", None)
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    r = run_sweep(exp, base, points, seeds, opt("out", None), backend=opt("backend", "local"), jobs=opt("jobs", 1),
                  threads=threads, ray_address=opt("ray_address", None), cpus_per_point=opt("cpus_per_point", 1),
                  gpus_per_point=opt("gpus_per_point", 0), data_dir=sns.data_dir, device=sns.device,
                  quiet=sns.quiet, checkpoint_every=sns.checkpoint_every, log=sns.log,
                  replicates=resolve(opt("replicates", "auto"), sns.device))
    print(format_sweep(r))
    names = list(axes)
    x = opt("x", names[0])
    hue = opt("hue", names[1] if len(names) > 1 else None)
    metric = opt("metric", "test_acc")
    if any(p["state"] != "not run" for p in r["points"]):
        try:
            plot_sweep(r, Path(r["dir"]) / "sweep.png", x, hue, metric)
            print(f"\nsweep: {r['dir']} (sweep.json, sweep.png: {metric} against {x}"
                  f"{f', one line per {hue}' if hue else ''})")
        except UserError as e:
            print(f"\nsweep: {r['dir']} (sweep.json; no plot: {e})")
    if r["failed"]:
        print(f"ticketlab: {len(r['failed'])} run(s) did not finish (listed above); run the same command again to "
              "retry them", file=sys.stderr)
        return 1
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
    group = _seed_group_runs(ns.run_dir)
    if group:
        return _per_seed(ns, group, lambda run: run_deconstruct(run, d, None, **runtime(ns)), format_deconstruct)
    imp_cfg = None if (Path(ns.run_dir) / "config.json").exists() else imp_config_from_args(ns)
    result = _run_all(ns, [lambda: run_deconstruct(ns.run_dir, d, imp_cfg, **runtime(ns))])[0]
    print(format_deconstruct(result))
    print(f"\nresults and plots: {result['dir']}")
    return 0


def _seed_group_runs(run_dir: str) -> list[Path]:
    """The finished seeds' run directories when ``run_dir`` is a seed group (else [])."""
    from .io import read_json
    from .runs.seeds import KIND, finished_seeds, seed_dir

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


def _run_all(ns: argparse.Namespace, fns: list) -> list:
    """A run-level command's work on one run or on every seed of a group: under --replicates vectorized in
    one lockstep, so that the trainings it hands in together (its cells) share vectorised packs."""
    from .runs.lockstep import resolve, run_all

    return run_all(fns, resolve(ns.replicates, ns.device), ns.quiet)


def _per_seed(ns: argparse.Namespace, runs: list[Path], fn, fmt) -> int:
    """Apply a run-level command (baselines, deconstruct) to every seed of a group; print mean ± std."""
    from .runs.seeds import aggregate, display

    results = _run_all(ns, [lambda r=r: fn(r) for r in runs])
    print(f"{len(runs)} seed(s) ({', '.join(r.name for r in runs)}); mean ± std (sample std over seeds)")
    try:
        print(fmt(display(aggregate(results))))
    except (KeyError, TypeError, ValueError, IndexError):
        for r, res in zip(runs, results):
            print(f"\n{r.name}:\n{fmt(res)}")
    print("\nresults: " + ", ".join(str(res["dir"]) for res in results))
    return 0


def cmd_baselines(ns: argparse.Namespace) -> int:
    from .baselines import format_baselines, run_baselines

    group = _seed_group_runs(ns.run_dir)
    if group:
        return _per_seed(ns, group, lambda run: run_baselines(run, ns.use_rounds, ns.only, ns.scratch_b_cap,
                                                          **runtime(ns)), format_baselines)
    result = _run_all(ns, [lambda: run_baselines(ns.run_dir, ns.use_rounds, ns.only, ns.scratch_b_cap,
                                                 **runtime(ns))])[0]
    print(format_baselines(result))
    print(f"\nresults: {result['dir']}")
    return 0


def cmd_instability(ns: argparse.Namespace) -> int:
    from .lottery.instability import format_instability, run_instability

    result = _run_all(ns, [lambda: run_instability(ns.run_dir, ns.rewind, ns.use_rounds, ns.points,
                                                   **runtime(ns))])[0]
    print(format_instability(result))
    print(f"\nresults: {result['dir']}  (plot: instability.png)")
    return 0


def cmd_card_deck(ns: argparse.Namespace) -> int:
    from .robust.deck import DeckConfig, format_deck, run_deck

    result = run_deck(DeckConfig(members=ns.members, corruptions=ns.corruptions, samples=ns.samples, seed=ns.seed),
                      ns.out, data_dir=ns.data_dir, quiet=ns.quiet)
    print(format_deck(result))
    print(f"\nresults: {result['dir']}")
    return 0


def cmd_verify(ns: argparse.Namespace) -> int:
    from .verify.evaluate import ALL_METHODS, VerifyConfig, format_verify, run_verify

    methods = list(ALL_METHODS) if ns.method == ["all"] else ns.method
    cfg = VerifyConfig(eps=ns.eps, methods=methods, samples=ns.samples, solver=ns.solver, timeout=ns.timeout,
                       pgd_steps=ns.pgd_steps, pgd_restarts=ns.pgd_restarts, alpha_steps=ns.alpha_steps, seed=ns.seed)
    result = run_verify(ns.run_dir, cfg, data_dir=ns.data_dir, quiet=ns.quiet, device=ns.device)
    print(format_verify(result))
    print(f"\nresults: {result['dir']}")
    return 0


def cmd_robustness(ns: argparse.Namespace) -> int:
    from .robust.evaluate import RobustnessConfig, format_robustness, run_robustness

    corruptions = ns.corruptions  # "all" is resolved for the run's data (MNIST-C or CIFAR-10-C)
    cfg = RobustnessConfig(attack=ns.attack, eps=ns.eps, norm=ns.norm, steps=ns.steps, step_size=ns.step_size,
                           restarts=ns.restarts, samples=ns.samples, seed=ns.seed, transfer=ns.transfer,
                           corruptions=corruptions, int8=ns.int8)
    result = run_robustness(ns.run_dir, cfg, data_dir=ns.data_dir, quiet=ns.quiet)
    print(format_robustness(result))
    print(f"\nresults: {result['dir']}")
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
    from .runs import experiments
    from .runs.seeds import KIND, format_group
    from .runs.store import run_record

    run = Path(ns.run_dir)
    rec = run_record(run)
    kind = rec["kind"] if rec is not None else None
    exps = experiments()
    if getattr(ns, "config", False):
        if kind not in exps:
            raise UserError(f"{run} is not a run directory of a training command; give one (a seed group's "
                            "seeds are, each)")
        print(config_to_toml(rec["config"], dataclass_flag_dests(exps.get(kind).config)), end="")
        return 0
    if kind == "sweep" and (run / "sweep.json").is_file():
        from .runs.sweep import format_sweep

        try:
            print(format_sweep(read_json(run / "sweep.json")))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise UserError(f"{run / 'sweep.json'} is corrupt or from another program") from None
        return 0
    if kind == KIND or (kind in exps and kind != "imp" and not ns.layers):
        if not (run / "summary.json").exists():
            raise UserError(f"{run} has no summary.json yet; its run has not finished (repeat its command to resume)")
        s = read_json(run / "summary.json")
        try:
            print(format_group(exps.get(s["experiment"]), s) if kind == KIND else exps.get(kind).format(s))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError(f"{run / 'summary.json'} is corrupt or from another program") from None
        return 0
    print(run_table(ns.run_dir, layers=ns.layers))
    return 0


def cmd_runs(ns: argparse.Namespace) -> int:
    import json

    from .runs.store import format_runs, list_runs, matches, metric_value

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


def cmd_report(ns: argparse.Namespace) -> int:
    from .report import build_report

    out = build_report(ns.paths, ns.out)
    print(f"report: {out} ({out.stat().st_size / 1024:.0f} KiB)")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    from .train import distributed

    if distributed.requested() and not distributed.active():
        return _main_data_parallel(argv)
    return _main(argv)


def _main_data_parallel(argv: list[str]) -> int:
    """Under torchrun: rank 0 runs the command, the other ranks follow its trainings (train.distributed)."""
    import torch.distributed as dist

    from .train import distributed

    device = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--device"), None)
    device = next((a.split("=", 1)[1] for a in argv if a.startswith("--device=")), device) or "cpu"
    try:
        local = distributed.init(device)
    except (RuntimeError, ValueError) as e:
        print(f"ticketlab: error: cannot join torchrun's process group ({str(e).splitlines()[0]}); start it with "
              "torchrun --nproc-per-node N -m ticketlab ...", file=sys.stderr)
        return 2
    follower = distributed.rank() != 0
    if follower:
        distributed.follow(local)  # an error here ends this process; torchrun then stops the others
        dist.barrier()  # every rank at the end before any tears down (gloo aborts on a peer's early close)
        dist.destroy_process_group()
        _exit_now(0)
    from .runs.sweep import FAULT_ENV, _arm_fault

    if os.environ.get(FAULT_ENV):  # the tests' kill of rank 0 right after a checkpoint
        _arm_fault(os.environ[FAULT_ENV])
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


def _main(argv: list[str]) -> int:
    try:
        if argv and argv[0] == "sweep":
            return cmd_sweep(argv[1:])
        ns = build_parser().parse_args(argv)
        if getattr(ns, "log", "none") != "none":
            from .train.log import configure

            configure(ns.log)
        commands = {"deconstruct": cmd_deconstruct, "baselines": cmd_baselines, "export": cmd_export,
                    "bench": cmd_bench, "pack": cmd_pack, "unpack": cmd_unpack, "show": cmd_show, "runs": cmd_runs, "robustness": cmd_robustness, "verify": cmd_verify, "card-deck": cmd_card_deck,
                    "instability": cmd_instability, "report": cmd_report,
                    "list": cmd_list}
        if ns.command in commands:
            return commands[ns.command](ns)
        return cmd_experiment(ns, getattr(ns, "seed", None))
    except UserError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
