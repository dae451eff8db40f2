"""The README's before/after table of a sampled mutation run: per module, the sampled mutants, those killed
before (the suite as it stood, ``--before`` run) and after, the survivors judged equivalent, and the score
killed / (sampled - equivalent); the total row has a 95% Wilson interval, as befits a sample.

    python tests/mutation/table.py --before OLD/mutants --before-names tests/mutation/before_sample.txt \
        --after mutants --after-names tests/mutation/after_sample.txt

"Before" counts every surviving mutant as alive (its equivalents were judged on today's code only).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from score import scores


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion k / n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--before-names", required=True)
    ap.add_argument("--after", default="mutants")
    ap.add_argument("--after-names", required=True)
    args = ap.parse_args(argv)
    before, _ = scores(Path(args.before), only=set(Path(args.before_names).read_text().split()))
    after, _ = scores(Path(args.after), only=set(Path(args.after_names).read_text().split()))
    modules = sorted(set(after))
    print("| module | sampled before | killed before | sampled after | killed after | equivalent | score after |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    tot = dict.fromkeys(("bn", "bk", "an", "ak", "eq"), 0)
    for m in modules:
        b, a = before.get(m, {"mutants": 0, "killed": 0}), after[m]
        bn, bk, an, ak, eq = b["mutants"], b["killed"], a["mutants"], a["killed"], a["equivalent"]
        for key, v in zip(tot, (bn, bk, an, ak, eq)):
            tot[key] += v
        pb = f"{bk} ({100 * bk / bn:.0f}%)" if bn else "-"
        print(
            f"| `{m.removeprefix('ticketlab.')}` | {bn} | {pb} | {an} | {ak} | {eq} | "
            f"{100 * ak / max(1, an - eq):.1f}% |"
        )
    lo_b, hi_b = wilson(tot["bk"], tot["bn"])
    lo_a, hi_a = wilson(tot["ak"], tot["an"] - tot["eq"])
    print(
        f"| all | {tot['bn']} | {tot['bk']} ({100 * tot['bk'] / tot['bn']:.1f}%, 95% CI {100 * lo_b:.0f}-"
        f"{100 * hi_b:.0f}%) | {tot['an']} | {tot['ak']} | {tot['eq']} | "
        f"{100 * tot['ak'] / (tot['an'] - tot['eq']):.1f}% (95% CI {100 * lo_a:.0f}-{100 * hi_a:.0f}%) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
