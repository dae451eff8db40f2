"""``ticketlab verify RUN``: sound bounds and complete verification of every trained model of a run."""

from __future__ import annotations

from ..commands import Command, add_data_flags, names
from .evaluate import ALL_METHODS, VerifyConfig, format_verify, run_verify


def configure(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--eps", type=float, default=0.1, help="radius in pixel units, images in [0, 1] (default 0.1)")
    p.add_argument(
        "--method",
        type=names,
        default=["ibp", "crown", "alpha-crown"],
        metavar="M[,M...]",
        help="ibp, crown, alpha-crown, complete, or all (default ibp,crown,alpha-crown)",
    )
    p.add_argument("--samples", type=int, default=100, metavar="N", help="the first N test examples (default 100)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="complete verification: seconds per sample (default 30)",
    )
    p.add_argument(
        "--solver",
        default="milp",
        help="complete verification: milp (HiGHS through scipy, default) or marabou (pip install 'ticketlab[verify]')",
    )
    p.add_argument("--pgd-steps", type=int, default=50, help="PGD steps of the attack (default 50)")
    p.add_argument("--pgd-restarts", type=int, default=3, help="PGD random restarts (default 3)")
    p.add_argument("--alpha-steps", type=int, default=20, help="alpha-CROWN optimisation steps (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attack's random starts")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default) or cuda: bounds and attack (complete verification runs on the CPU)",
    )
    add_data_flags(p)


def main(ns) -> int:
    methods = list(ALL_METHODS) if ns.method == ["all"] else ns.method
    cfg = VerifyConfig(
        eps=ns.eps,
        methods=methods,
        samples=ns.samples,
        solver=ns.solver,
        timeout=ns.timeout,
        pgd_steps=ns.pgd_steps,
        pgd_restarts=ns.pgd_restarts,
        alpha_steps=ns.alpha_steps,
        seed=ns.seed,
    )
    result = run_verify(ns.run_dir, cfg, data_dir=ns.data_dir, quiet=ns.quiet, device=ns.device)
    print(format_verify(result))
    print(f"\nresults: {result['dir']}")
    return 0


COMMAND = Command(
    "verify",
    configure,
    main,
    description="Sound bounds and complete verification over the L-inf ball of radius --eps (pixel "
    "units) around each of the first --samples test examples, for every trained model of a "
    "run: clean, PGD and verified accuracy, unstable ReLUs per layer, time per sample. "
    "Cached in RUN/verify-<hash>/ and resumable.",
)
