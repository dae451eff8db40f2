"""How far two trainings' masks agree: per masked layer and in all, the fraction of the first run's kept
weights that the second keeps too, and each run's test accuracy. Used to compare the same DST run under
``--kernels dense`` and ``--kernels sparse``, or under two thread counts.

    .venv/bin/python experiments/mask_agreement.py RUN_A RUN_B

RUN_A and RUN_B are single-seed run folders of a method that saves ``train_0/mask.safetensors`` (dst, static).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketlab.errors import UserError
from ticketlab.io import load_tensors, read_json


def agreement(a: dict, b: dict) -> tuple[dict[str, float], float]:
    """Per layer and overall, the fraction of ``a``'s kept weights that ``b`` keeps too."""
    if sorted(a) != sorted(b):
        raise UserError("the two runs mask different layers: compare runs of the same model")
    kept = {k: int(a[k].bool().sum()) for k in a}
    shared = {k: int((a[k].bool() & b[k].bool()).sum()) for k in a}
    return {k: shared[k] / max(kept[k], 1) for k in a}, sum(shared.values()) / max(sum(kept.values()), 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs=2)
    args = p.parse_args()
    try:
        masks = [load_tensors(r / "train_0" / "mask.safetensors") for r in args.runs]
        accs = [read_json(r / "summary.json").get("test_acc") for r in args.runs]
        per, total = agreement(*masks)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r, acc in zip(args.runs, accs):
        print(f"{r}: test accuracy {acc}")
    for k, v in per.items():
        print(f"{k}: {v:.3f} of the kept weights shared")
    print(f"all layers: {total:.3f} of the kept weights shared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
