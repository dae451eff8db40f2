"""CARD-Deck on ticketlab's nets: lottery-style compressed nets (CARDs) trained with no augmentation,
Gaussian noise and AugMix, the plain ensemble of the three and the spectrally gated deck, per MNIST-C
corruption; mean ± std over seeds.

    for a in none gaussian augmix; do
      ticketlab imp --model lenet300 --dataset fashion-mnist --iterations 3000 --rate 0.5 --output-rate 0.25 \\
        --rounds 3 --augment $a --seeds 3 --out runs/cards-$a
    done
    .venv/bin/python experiments/card_deck_table.py runs/cards-none runs/cards-gaussian runs/cards-augmix

Each seed's deck is `ticketlab card-deck GROUP_1/seed_s GROUP_2/seed_s ... --corruptions all` (results in
runs/cards-deck/seed_<s>; reruns read them back).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from ticketlab.robust.deck import DeckConfig, run_deck
from ticketlab.runs.seeds import mean_std


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("groups", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/cards-deck"))
    a = p.parse_args()
    seeds = sorted(d.name for d in a.groups[0].glob("seed_*"))
    results = [
        run_deck(DeckConfig(members=[str(g / s) for g in a.groups], corruptions=["all"]), a.out / s, quiet=True)
        for s in seeds
    ]
    names = [g.name for g in a.groups]
    print(f"{len(results)} seed(s); members: {', '.join(names)}")
    print("| condition | " + " | ".join(names) + " | ensemble | deck | deck's most chosen |")
    print("| --- | " + " | ".join("---" for _ in names) + " | --- | --- | --- |")
    conds = [r["condition"] for r in results[0]["rows"]]
    # members by their labels (results.json stores its dicts with sorted keys: their order is not the members')
    labels = [res["labels"] for res in results]
    for i, c in enumerate(conds + ["mean over corruptions"]):
        if i < len(conds):
            rows = [res["rows"][i] for res in results]
            mem = [[r["members"][lab[k]] for r, lab in zip(rows, labels)] for k in range(len(names))]
            ens, deck = [r["ensemble"] for r in rows], [r["deck"] for r in rows]
            chosen = [statistics.mean(r["chosen"][lab[k]] for r, lab in zip(rows, labels)) for k in range(len(names))]
            top = f"{names[chosen.index(max(chosen))]} ({100 * max(chosen):.0f}%)"
        else:
            cr = [([r for r in res["rows"] if r["condition"] != "clean"], lab) for res, lab in zip(results, labels)]
            avg = lambda f: [statistics.mean(f(r, lab) for r in rs) for rs, lab in cr]  # noqa: E731
            mem = [avg(lambda r, lab, k=k: r["members"][lab[k]]) for k in range(len(names))]
            ens, deck, top = avg(lambda r, lab: r["ensemble"]), avg(lambda r, lab: r["deck"]), ""
        print(f"| {c} | " + " | ".join(mean_std(m) for m in mem) + f" | {mean_std(ens)} | {mean_std(deck)} | {top} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
