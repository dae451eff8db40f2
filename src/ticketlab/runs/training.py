"""One cached, resumable training in a folder: the unit every method's runner repeats."""
from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

from ..data import Dataset
from ..errors import UserError
from ..io import read_json, save_tensors, write_json
from ..sparse import Mask, apply_mask_, density
from ..train import Checkpointer, TrainConfig, TrainResult, train

FINAL, METRICS, MASK, CKPT = "final.safetensors", "metrics.json", "mask.safetensors", "checkpoint.safetensors"


def train_cached(where: Path, model: nn.Module, data: Dataset, train_cfg: TrainConfig, *, mask: Mask, start: dict,
                 start_iter: int, total: int, seed: int, checkpoint_every: int, label: str, quiet: bool,
                 frozen: dict | None = None, snapshot_at: int | None = None, on_snapshot=None,
                 save_final: bool = True) -> tuple[dict, list[dict]]:
    """One masked training from ``start``, cached in ``where``: returns (summary, history).

    A finished training (``metrics.json`` present) is read back, not redone; an unfinished one resumes
    from ``where/checkpoint.safetensors``.
    """
    if (where / METRICS).exists():
        m = read_json(where / METRICS)
        if not isinstance(m, dict) or "summary" not in m:
            raise UserError(f"{where / METRICS} is corrupt; delete it to retrain")
        return m["summary"], m["history"]
    model.load_state_dict(start)
    apply_mask_(model, mask)
    result: TrainResult = train(
        model, data, train_cfg, mask=mask, frozen=frozen, seed=seed, start_iter=start_iter, total=total,
        checkpointer=Checkpointer(where / CKPT, checkpoint_every), snapshot_at=snapshot_at,
        on_snapshot=on_snapshot, progress=not quiet, desc=label)
    if save_final:
        save_tensors(where / FINAL, model.state_dict())
    summary = result.summary() | {"density": density(mask)}
    write_json(where / METRICS, {"summary": summary, "history": result.history})
    (where / CKPT).unlink(missing_ok=True)
    if not quiet:
        print(f"{label}: density {100 * summary['density']:.2f}%  test acc {summary['test_acc']:.4f}  "
              f"early stop {summary['early_stop_test_acc']:.4f} @ {summary['early_stop_iter']}",
              file=sys.stderr, flush=True)
    return summary, result.history
