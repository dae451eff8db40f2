"""``ticketlab robustness RUN`` (attacks and corruptions on every trained model of a run) and ``ticketlab
card-deck RUN...`` (a spectral-gated deck of member runs)."""

from __future__ import annotations

from ..commands import Command, add_data_flags, names
from ..flags import add_dataclass_flags, given_flags
from .deck import DeckConfig, format_deck, run_deck
from .evaluate import RobustnessConfig, format_robustness, run_robustness


def configure_robustness(p) -> None:
    p.add_argument("run_dir", metavar="RUN")
    add_dataclass_flags(p, RobustnessConfig)
    add_data_flags(p)


def robustness(ns) -> int:
    cfg = RobustnessConfig(**given_flags(ns, RobustnessConfig))  # corruptions "all": resolved for the run's data
    result = run_robustness(ns.run_dir, cfg, data_dir=ns.data_dir, quiet=ns.quiet)
    print(format_robustness(result))
    print(f"\nresults: {result['dir']}")
    return 0


def configure_deck(p) -> None:
    p.add_argument("members", metavar="RUN", nargs="+", help="member runs (imp, compress or prune-init)")
    p.add_argument(
        "--corruptions",
        type=names,
        default=[],
        metavar="all|C[,C...]",
        help="also each corruption (MNIST-C or CIFAR-10-C, as `robustness`)",
    )
    p.add_argument("--samples", type=int, default=None, metavar="N", help="the first N test examples (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions and the gate's reference images")
    p.add_argument("--out", default=None, help="results folder (default runs/card-deck-<hash>)")
    add_data_flags(p)


def card_deck(ns) -> int:
    result = run_deck(
        DeckConfig(members=ns.members, corruptions=ns.corruptions, samples=ns.samples, seed=ns.seed),
        ns.out,
        data_dir=ns.data_dir,
        quiet=ns.quiet,
    )
    print(format_deck(result))
    print(f"\nresults: {result['dir']}")
    return 0


ROBUSTNESS = Command(
    "robustness",
    configure_robustness,
    robustness,
    description="Attacks (PGD, FGSM, AutoAttack) in pixel units on the test set of every trained "
    "model of an IMP, prune-init, DST or structured run; cached in "
    "RUN/robustness-<hash>/ and resumable.",
)
CARD_DECK = Command(
    "card-deck",
    configure_deck,
    card_deck,
    description="Each test input goes to the member run whose augmented training images' Fourier "
    "spectrum is nearest its own (Diffenderfer et al. 2021); accuracy per member, of the "
    "plain ensemble and of the deck, clean and per corruption.",
)
