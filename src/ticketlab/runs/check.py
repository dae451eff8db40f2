"""A run folder checked whole before a resumed run writes anything, so a refusal leaves every byte as it was.

Every file the run may read is opened and checked here: JSON parses (and the training records have their
shape), safetensors load, weights are finite. A damaged file is refused in one line naming it; nothing is
repaired or rewritten. A nested folder that is a run of its own (a robustness or verify analysis inside a
training run) is skipped: the run around it never reads it. A seed group's or sweep's member runs are read by
it, so they are checked with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import UserError
from ..io import first_non_finite, read_json, read_json_or_none

CONFIG_FILE = "config.json"
NUMBERS = (int, float)
OBJECTS = ("summary.json", "sweep.json", "results.json")  # the engine's files that hold one JSON object (others: any)
# kind -> a function that reads a summary.json of that kind whole (its table and headline): what a finished run
# hands back as it is, so a damaged one is refused rather than printed. Filled by runs.experiment.register.
SUMMARY_CHECKS: dict[str, Callable[[dict], object]] = {}
READ_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError)


def check_run_files(run_dir: str | Path, kind: str | None = None) -> None:
    """Refuse (UserError) the first damaged file of ``run_dir`` and of the member runs it reads. With ``kind``,
    only a run of that kind is checked (any other folder is left for ``open_run_dir`` to refuse)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        return
    if kind is not None:
        rec = read_json_or_none(run_dir / CONFIG_FILE)
        if not isinstance(rec, dict) or rec.get("kind") != kind:
            return
    for path in _files(run_dir, _experiment(run_dir)):
        if path.suffix == ".json":
            check_json(path)
        elif path.suffix == ".safetensors":
            check_tensors(path)


def _experiment(run: Path) -> str | None:
    """The experiment a group folder (seed group, sweep) runs, or None for a single run."""
    rec = read_json_or_none(run / CONFIG_FILE)
    cfg = rec.get("config") if isinstance(rec, dict) else None
    return cfg.get("experiment") if isinstance(cfg, dict) and isinstance(cfg.get("experiment"), str) else None


def _member(folder: Path, experiment: str | None) -> bool:
    """Whether the run folder ``folder`` nested in a run is one the run reads: a member of a group."""
    if experiment is None:
        return False
    rec = read_json_or_none(folder / CONFIG_FILE)
    return isinstance(rec, dict) and (rec.get("kind") == experiment or _experiment(folder) == experiment)


def _files(folder: Path, experiment: str | None, top: bool = True) -> Iterator[Path]:
    if not top and (folder / CONFIG_FILE).exists():
        if not _member(folder, experiment):
            return
        experiment = _experiment(folder) or experiment
    for p in sorted(folder.iterdir()):
        if p.is_dir() and not p.is_symlink():
            yield from _files(p, experiment, top=False)
        elif p.is_file():
            yield p


def check_json(path: Path) -> object:
    """``path``'s JSON; a training record (metrics.json, result.json) must have its shape."""
    obj = read_json(path)
    if path.name == CONFIG_FILE:
        if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str) or not isinstance(obj.get("config"), dict):
            raise UserError(f"{path} is not a ticketlab run config; restore it, or use another --out")
    elif path.name in ("metrics.json", "result.json"):
        check_record(path, obj)
    elif path.name in OBJECTS and not isinstance(obj, dict):
        raise UserError(f"{path} is damaged (not a JSON object); delete it to recompute it")
    elif path.name == "summary.json":
        rec = read_json_or_none(path.parent / CONFIG_FILE)
        reader = SUMMARY_CHECKS.get(rec.get("kind")) if isinstance(rec, dict) else None
        try:
            if reader is not None:
                reader(obj)
        except READ_ERRORS:
            raise UserError(
                f"{path} is damaged (not a summary of this run's kind); delete it to recompute it"
            ) from None
    return obj


def check_record(path: Path, obj: object) -> None:
    """A training's record: {summary?, history?} (metrics.json) or the summary itself (result.json), with
    numbers where numbers go."""
    if not isinstance(obj, dict):
        raise UserError(f"{path} is damaged (not a JSON object); delete it to retrain")
    summary = obj.get("summary") if path.name == "metrics.json" else obj
    history = obj.get("history", [])
    ok = isinstance(history, list) and all(
        isinstance(r, dict) and all(isinstance(v, NUMBERS) for v in r.values()) for r in history
    )
    if summary is not None:
        ok = ok and isinstance(summary, dict)
        ok = ok and all(isinstance(summary.get(k, 0), NUMBERS) for k in ("test_acc", "early_stop_test_acc"))
    if path.name == "metrics.json" and "summary" not in obj and "history" not in obj:
        ok = False
    if not ok:
        raise UserError(f"{path} is damaged (not a training record of this shape); delete it to retrain")


def _weights(f, checkpoint: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of the open file ``f`` read one at a time (a damaged one fails here), the weights yielded (a
    checkpoint's optimizer state may hold any value)."""
    for k in f.keys():
        t = f.get_tensor(k)
        if not checkpoint or k.startswith("model."):
            yield k, t


def check_tensors(path: Path) -> None:
    """``path`` loads as safetensors and its weights are finite (a checkpoint's optimizer state may hold any
    value; its JSON metadata must parse)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            checkpoint = "iteration" in meta
            bad = first_non_finite(_weights(f, checkpoint))
            if bad is not None:
                raise UserError(
                    f"{path} holds non-finite values (NaN or inf in {bad}): a diverged training or a damaged "
                    "file; delete it to recompute it (with a lower --lr if it diverged)"
                )
        if checkpoint:
            int(meta["iteration"])
            json.loads(meta["history"])
            json.loads(meta["optimizer"])
    except UserError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is corrupt or not a safetensors file ({msg}); delete it to recompute") from None
