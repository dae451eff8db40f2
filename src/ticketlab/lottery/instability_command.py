"""``ticketlab instability RUN --rewind K,...``: linear mode connectivity of an IMP run's dense net and tickets
(Frankle et al. 2020), cached and resumable."""

from __future__ import annotations

from ..commands import Command, add_replicates_flag, add_runtime_flags, ints, runtime
from ..runs.analysis import run_together
from .instability import format_instability, run_instability


def configure(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--rewind", type=ints, required=True, metavar="K,K,...", help="rewinding iterations to test")
    p.add_argument(
        "--use-rounds",
        type=ints,
        default=None,
        metavar="R,R,...",
        help="rounds whose tickets to test (default: 0, the dense net)",
    )
    p.add_argument("--points", type=int, default=30, help="interpolation points (default 30)")
    add_runtime_flags(p)
    add_replicates_flag(p)


def main(ns) -> int:
    rt = runtime(ns)
    result = run_together(ns, [lambda: run_instability(ns.run_dir, ns.rewind, ns.use_rounds, ns.points, **rt)])[0]
    print(format_instability(result))
    print(f"\nresults: {result['dir']}  (plot: instability.png)")
    return 0


COMMAND = Command(
    "instability",
    configure,
    main,
    description="From the dense run's weights at each --rewind K, train two copies with different "
    "data orders (the dense net and the tickets of --use-rounds) and report the test-error "
    "barrier along the line between them; the smallest K with a barrier under 2 points is "
    "the suggested --rewind. Cached, resumable.",
)
