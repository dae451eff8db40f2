"""``ticketlab baselines RUN``: the sanity checks and retraining baselines of a run's masks (of each seed of
a seed group, then mean ± std)."""

from __future__ import annotations

from ..commands import Command, add_replicates_flag, add_runtime_flags, ints, names, runtime
from ..runs.analysis import per_run
from .runner import format_baselines, run_baselines


def configure(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument(
        "--use-rounds",
        type=ints,
        default=None,
        metavar="K,K,...",
        help="IMP rounds to judge (default: every pruned round)",
    )
    p.add_argument(
        "--only",
        type=names,
        default=None,
        metavar="A,B,...",
        help="baselines to run: shuffle, reinit, scratch-b, finetune (default: all that apply)",
    )
    p.add_argument(
        "--scratch-b-cap",
        type=float,
        default=2.0,
        metavar="X",
        help="Scratch-B trains at most X times the run's iterations (default 2)",
    )
    add_runtime_flags(p)
    add_replicates_flag(p)


def main(ns) -> int:
    rt = runtime(ns)
    return per_run(
        ns, ns.run_dir, lambda run: run_baselines(run, ns.use_rounds, ns.only, ns.scratch_b_cap, **rt), format_baselines
    )


COMMAND = Command(
    "baselines",
    configure,
    main,
    description="Layerwise-shuffled masks, reinitialised weights (Scratch-E), Scratch-B and "
    "fine-tuning, printed beside the method's own accuracy with training FLOPs.",
)
