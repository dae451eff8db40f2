"""Mutation score per module from a finished ``mutmut run`` (``make mutation`` prints it).

Reads ``mutants/**/*.py.meta`` (mutmut's per-file results) and prints, per mutated module: mutants, killed
(timeouts count as killed: the mutant hung the tests), survived, mutants with no test, and the score
killed / (mutants - equivalent), where ``equivalent`` are the survivors listed in ``equivalent.txt`` beside
this file (mutants that change no behaviour, each with a reason). ``--survivors`` lists the survivors not
judged equivalent; ``--json FILE`` writes the table. Exit code 1 if a module is below ``--min`` (a fraction).

``--names FILE`` scores only the mutants listed in FILE (one name per line: the "before" sample drawn by
``sample.py``), so a sample's score is killed / (sampled - equivalent) per module.

``--base DIR`` merges an incremental run into an earlier full one: ``mutmut run NAME...`` re-tests only the
named mutants (say, the survivors of the full run in ``DIR/mutants`` after tests were added), and every mutant
not re-tested keeps its earlier result. Killed mutants stay killed when tests are only added or tightened.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KILLED = {1, 3, 36, -24, 24, 152, 255, -11, -9}  # mutmut's "killed", "timeout" and "segfault" exit codes
SURVIVED, NO_TESTS = {0}, {5, 33}


def equivalent_names(path: Path = HERE / "equivalent.txt") -> set[str]:
    """Mutant names at the start of each non-comment line of ``equivalent.txt``."""
    if not path.exists():
        return set()
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def module_of(meta: Path, root: Path) -> str:
    rel = meta.relative_to(root).as_posix().removesuffix(".py.meta")
    return rel.removeprefix("src/").replace("/", ".")


def scores(
    root: Path = Path("mutants"), base: Path | None = None, only: set[str] | None = None
) -> tuple[dict[str, dict], list[str]]:
    eq = equivalent_names()
    table, survivors = {}, []
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if not codes:
            continue
        earlier = base / meta.relative_to(root) if base is not None else None
        if earlier is not None and earlier.exists():
            old = json.loads(earlier.read_text()).get("exit_code_by_key", {})
            codes = {k: (old.get(k) if v is None else v) for k, v in codes.items()}
        if only is not None:
            codes = {k: v for k, v in codes.items() if k in only}
            if not codes:
                continue
        row = {"mutants": len(codes), "killed": 0, "survived": 0, "no_tests": 0, "not_checked": 0, "equivalent": 0}
        for name, code in codes.items():
            if code in KILLED:
                row["killed"] += 1
            elif name in eq:
                row["equivalent"] += 1
            elif code is None:
                row["not_checked"] += 1
            elif code in NO_TESTS:
                row["no_tests"] += 1
                survivors.append(f"{name} (no test)")
            else:
                row["survived"] += 1
                survivors.append(name)
        row["score"] = row["killed"] / max(1, row["mutants"] - row["equivalent"])
        table[module_of(meta, root)] = row
    return table, survivors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="mutants")
    ap.add_argument("--base", help="an earlier run's mutants/ folder: results of mutants not re-tested come from it")
    ap.add_argument("--survivors", action="store_true", help="list survivors not judged equivalent")
    ap.add_argument("--json", help="also write the table to this file")
    ap.add_argument("--min", type=float, default=0.0, help="fail if a module scores below this fraction")
    ap.add_argument("--names", help="score only the mutants listed in this file (one per line)")
    args = ap.parse_args(argv)
    only = set(Path(args.names).read_text().split()) if args.names else None
    table, survivors = scores(Path(args.root), Path(args.base) if args.base else None, only)
    if not table:
        print(f"no mutmut results under {args.root}/: run `make mutation` first", file=sys.stderr)
        return 2
    w = max(len(m) for m in table)
    print(f"{'module':<{w}}  mutants  killed  survived  no test  equivalent  score")
    tot = {k: 0 for k in ("mutants", "killed", "survived", "no_tests", "equivalent")}
    for m, r in table.items():
        print(
            f"{m:<{w}}  {r['mutants']:>7}  {r['killed']:>6}  {r['survived']:>8}  {r['no_tests']:>7}  "
            f"{r['equivalent']:>10}  {100 * r['score']:5.1f}%"
        )
        for k in tot:
            tot[k] += r[k]
    print(
        f"{'all':<{w}}  {tot['mutants']:>7}  {tot['killed']:>6}  {tot['survived']:>8}  {tot['no_tests']:>7}  "
        f"{tot['equivalent']:>10}  {100 * tot['killed'] / max(1, tot['mutants'] - tot['equivalent']):5.1f}%"
    )
    if args.survivors:
        print("\n".join(["", "survivors (not judged equivalent):"] + survivors))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    low = [m for m, r in table.items() if r["score"] < args.min]
    if low:
        print(f"below {100 * args.min:.0f}%: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
