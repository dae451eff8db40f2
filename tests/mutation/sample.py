"""A stratified random sample of mutant names, for a "before" score that costs a fraction of a full run.

Reads every mutant name of the given modules from ``mutants/**/*.py.meta`` (made by ``mutmut run``'s
generation step) and draws, per module, ``--fraction`` of them (at least ``--min``, at most all) with a fixed
seed; prints the names, one per line, sorted. ``mutmut run $(cat FILE)`` then runs exactly those, and
``score.py --names FILE`` scores them. Sampling mutants to estimate a mutation score is standard practice
(Wong & Mathur 1995; Zhang et al. 2013, "Operator-based and random mutant selection").
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

from score import module_of

# the modules issue 27 added to the mutation run (the default sample)
NEWER = [
    "ticketlab.certsparse.deadwood",
    "ticketlab.certsparse.neurons",
    "ticketlab.certsparse.scores",
    "ticketlab.compress.gradual",
    "ticketlab.data.arrays",
    "ticketlab.deploy.semi",
    "ticketlab.dst.gmp",
    "ticketlab.dst.snfs",
    "ticketlab.report.collect",
    "ticketlab.attacks",
    "ticketlab.robust.cifar_c",
    "ticketlab.robust.corruptions",
    "ticketlab.robust.deck",
    "ticketlab.robust.training",
    "ticketlab.runs.lockstep",
    "ticketlab.runs.rundir",
    "ticketlab.runs.seeds",
    "ticketlab.runs.store",
    "ticketlab.runs.sweep",
    "ticketlab.runs.training",
    "ticketlab.train.replicates",
    "ticketlab.verify.bounds",
    "ticketlab.verify.complete",
    "ticketlab.verify.graph",
    "ticketlab.verify.training",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "modules",
        nargs="*",
        default=NEWER,
        help="dotted module names (ticketlab.runs.seeds ...); default: the newer modules",
    )
    ap.add_argument("--root", default="mutants")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--min", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    root = Path(args.root)
    names = []
    for meta in sorted(root.rglob("*.py.meta")):
        module = module_of(meta, root)
        if module not in args.modules:
            continue
        keys = sorted(json.loads(meta.read_text()).get("exit_code_by_key", {}))
        k = min(len(keys), max(args.min, math.ceil(args.fraction * len(keys))))
        names += random.Random(f"{args.seed}/{module}").sample(keys, k)
    if not names:
        print(f"no mutants of {', '.join(args.modules)} under {root}/: run mutmut's generation first", file=sys.stderr)
        return 2
    print("\n".join(sorted(names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
