"""``ticketlab verify RUN``: sound bounds and complete verification of every trained model of a run."""

from __future__ import annotations

from ..commands import Command, add_data_flags
from ..flags import add_dataclass_flags, given_flags
from .evaluate import ALL_METHODS, VerifyConfig, format_verify, run_verify


def configure(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    add_dataclass_flags(p, VerifyConfig)
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default) or cuda: bounds and attack (complete verification runs on the CPU)",
    )
    add_data_flags(p)


def main(ns) -> int:
    cfg = VerifyConfig(**given_flags(ns, VerifyConfig))
    if cfg.methods == ["all"]:
        cfg.methods = list(ALL_METHODS)
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
