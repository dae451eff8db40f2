"""``ticketlab deconstruct RUN``: Zhou et al.'s criteria x kept values x signs matrix of an IMP run (or of
each seed of a seed group); IMP's flags train the run first when RUN holds none."""

from __future__ import annotations

from pathlib import Path

from ..commands import Command, add_replicates_flag, add_runtime_flags, config_from_args, ints, names, runtime
from ..flags import add_dataclass_flags
from ..lottery import PRESETS, IMPConfig
from ..runs.analysis import per_run
from ..sparse.values import KEPT_VALUES
from .report import format_deconstruct
from .runner import DeconstructConfig, run_deconstruct


def configure(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument(
        "--criteria",
        type=names,
        default=None,
        metavar="A,B,...",
        help="criteria to compare (default: all, see `ticketlab list`)",
    )
    p.add_argument(
        "--use-rounds",
        type=ints,
        default=None,
        metavar="K,K,...",
        help="IMP rounds whose per-layer densities are used (default: every pruned round)",
    )
    p.add_argument("--kept-criterion", default="large_final", help="criterion of the kept-value ablation masks")
    p.add_argument(
        "--kept",
        type=names,
        default=None,
        metavar="A,B,...",
        help=f"kept-value rules, each unsigned and signed (default: {','.join(KEPT_VALUES)})",
    )
    p.add_argument(
        "--cell-iterations",
        type=int,
        default=None,
        metavar="N",
        help="training budget of each cell (default: the IMP run's)",
    )
    p.add_argument("--untrained-only", action="store_true", help="only the untrained (supermask) evaluations")
    p.add_argument("--preset", metavar="NAME", help="IMP preset, when RUN must be trained first")
    add_dataclass_flags(p, IMPConfig)
    add_runtime_flags(p)
    add_replicates_flag(p)


def main(ns) -> int:
    d = DeconstructConfig(
        kept_criterion=ns.kept_criterion, trained=not ns.untrained_only, iterations=ns.cell_iterations
    )
    if ns.criteria is not None:
        d.criteria = ns.criteria
    if ns.kept is not None:
        d.kept = ns.kept
    if ns.use_rounds is not None:
        d.rounds = ns.use_rounds
    rt = runtime(ns)
    imp_cfg = None if (Path(ns.run_dir) / "config.json").exists() else config_from_args(ns, IMPConfig, PRESETS)
    return per_run(
        ns, ns.run_dir, lambda run: run_deconstruct(run, d, imp_cfg, **rt), format_deconstruct, then="results and plots"
    )


COMMAND = Command(
    "deconstruct",
    configure,
    main,
    description="Masks from every criterion M(w_init, w_final) at the IMP run's densities, evaluated "
    "untrained (supermasks) and trained; kept-value and sign ablations. RUN is an IMP run "
    "directory; if it holds none, IMP flags train one there.",
)
