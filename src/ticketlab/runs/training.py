"""One cached, resumable training in a folder: the unit every method's runner repeats.

The runners' trainings differ only in what this unit takes as parameters: a mask or an updater that owns
the mask (DST, slimming's sparsity penalty), whether a cache hit loads the trained weights back into the
model, snapshots during training, and which extra facts are recorded. Two record layouts exist on disk,
both read back as they were written (run directories made by earlier versions resume):

- ``"metrics"`` (IMP and everything built on its rounds): ``metrics.json`` = {summary, history};
- ``"result"`` (DST, structured): ``result.json`` = the summary plus the ``record`` extras, and
  ``metrics.json`` = {history} when ``keep_history``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..data import Dataset
from ..errors import UserError
from ..io import read_json, save_tensors, write_json
from ..sparse import Mask, apply_mask_, density
from ..train import Checkpointer, TrainConfig, TrainResult, train
from ..train.log import open_log
from . import lockstep
from .files import load_state

FINAL, METRICS, MASK, CKPT, RESULT = (
    "final.safetensors",
    "metrics.json",
    "mask.safetensors",
    "checkpoint.safetensors",
    "result.json",
)
LAYOUTS = ("metrics", "result")


def train_cached(
    where: Path,
    model: nn.Module,
    data: Dataset,
    train_cfg: TrainConfig,
    *,
    start: dict | None,
    total: int,
    seed: int,
    checkpoint_every: int,
    label: str,
    quiet: bool,
    mask: Mask | None = None,
    start_iter: int = 0,
    frozen: dict | None = None,
    sparse: Callable | None = None,
    snapshot_at=None,
    on_snapshot: Callable | None = None,
    save_final: bool = True,
    reload_final: bool = False,
    record: Callable[[TrainResult, object], dict] | None = None,
    layout: str = "metrics",
    keep_history: bool = True,
) -> tuple[dict, list[dict]]:
    """One training of ``model`` from ``start`` (None: its current weights), cached in ``where``.

    Returns (summary, history). A finished training is read back, not redone (``reload_final`` then loads
    its trained weights into ``model``); an unfinished one resumes from ``where/checkpoint.safetensors``.
    ``sparse(optimizer)`` builds an updater that owns the mask (``train``'s ``sparse``); ``record(result,
    updater)`` returns extra facts to store in the summary. With ``--log`` (``train.log.configure``) the
    training's live log is written in ``where``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    done = where / (METRICS if layout == "metrics" else RESULT)
    if done.exists():
        m = read_json(done)
        if not isinstance(m, dict) or (layout == "metrics" and "summary" not in m):
            raise UserError(f"{done} is corrupt; delete it to retrain")
        if reload_final:
            model.load_state_dict(load_state(where / FINAL, model))
        if layout == "metrics":
            return m["summary"], m["history"]
        hist = read_json(where / METRICS).get("history", []) if (where / METRICS).exists() else []
        return m, hist
    where.mkdir(parents=True, exist_ok=True)
    if start is not None:
        model.load_state_dict(start)
    if mask is not None:
        apply_mask_(model, mask)
    holder: dict = {}

    def factory(opt):
        holder["u"] = sparse(opt)
        return holder["u"]

    checkpointer, log = Checkpointer(where / CKPT, checkpoint_every), open_log(where)

    def alone() -> TrainResult:
        return train(
            model,
            data,
            train_cfg,
            mask=mask,
            frozen=frozen,
            seed=seed,
            start_iter=start_iter,
            total=total,
            sparse=factory if sparse is not None else None,
            checkpointer=checkpointer,
            snapshot_at=snapshot_at,
            on_snapshot=on_snapshot,
            progress=not quiet,
            desc=label,
            log=log,
        )

    pack = lockstep.current()
    if pack is not None and frozen is None and not snapshot_at and on_snapshot is None:
        # several runs in lockstep (--replicates vectorized): this training may share a loop with theirs
        result = pack.submit(
            lockstep.Request(
                lockstep.index(),
                model,
                data,
                train_cfg,
                mask,
                seed,
                start_iter,
                total,
                checkpointer,
                log,
                alone,
                sparse=factory if sparse is not None else None,
            )
        )
    else:
        result = alone()
    updater = holder.get("u")
    if save_final:
        save_tensors(where / FINAL, model.state_dict())
    summary = result.summary()
    if mask is not None:
        summary["density"] = density(mask)
    if record is not None:
        summary |= record(result, updater)
    if layout == "metrics":
        write_json(where / METRICS, {"summary": summary, "history": result.history})
    else:
        if keep_history:
            write_json(where / METRICS, {"history": result.history})
        write_json(where / RESULT, summary)
    (where / CKPT).unlink(missing_ok=True)
    if not quiet:
        dens = f"density {100 * summary['density']:.2f}%  " if "density" in summary else ""
        print(
            f"{label}: {dens}test acc {summary['test_acc']:.4f}  early stop {summary['early_stop_test_acc']:.4f} "
            f"@ {summary['early_stop_iter']}",
            file=sys.stderr,
            flush=True,
        )
    return summary, result.history
