"""Live training logs: one stream per training, written while it trains (``--log jsonl|tensorboard``).

A stream lives in the training's own folder (``round_03/``, ``round_03/reinit/``, ``seed_1/member_2/``), so
``tensorboard --logdir RUN`` names each training by its path in the run, and a seed group or a sweep is one
logdir. Scalars, at every evaluation: ``loss/train`` (mean over the steps since the last evaluation),
``loss/val``, ``loss/test``, ``acc/val``, ``acc/test``, ``lr``, ``density`` and ``density/<layer>``, ``flops``
(training FLOPs so far); sparse trainers add ``mask_change`` at every mask update (the fraction of the kept
connections that are new). JSONL rows are ``{"iter": i, name: value, ...}``; a resumed training first drops
the rows after its checkpoint (TensorBoard: ``purge_step``), so a stream never holds an iteration twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UserError
from ..io import write_text

LOG_KINDS = ("none", "jsonl", "tensorboard")
JSONL = "log.jsonl"
_kind = "none"


def configure(kind: str) -> None:
    """Set the log kind of every training this process runs from now on (the CLI's ``--log``)."""
    global _kind
    if kind not in LOG_KINDS:
        raise UserError(f"unknown --log {kind!r}; choose one of: {', '.join(LOG_KINDS)}")
    if kind == "tensorboard":
        try:
            import tensorboard  # noqa: F401  (optional: the tensorboard extra)
        except ImportError:
            raise UserError(
                "--log tensorboard needs the tensorboard package: pip install 'ticketlab[tensorboard]' "
                "(or use --log jsonl)"
            ) from None
    _kind = kind


def current() -> str:
    return _kind


class JsonlLog:
    """``log.jsonl`` in ``folder``: one JSON object per line, flushed as written (``tail -f`` follows it)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / JSONL
        self._f = None

    def start(self, it: int) -> None:
        kept = []
        if it > 0 and self.path.exists():  # resumed: keep what was logged up to the checkpoint
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("iter", math.inf) <= it:
                        kept.append(line)
                except (ValueError, AttributeError):
                    break  # a line cut by the interruption: drop it and what follows
        # the kept lines replace the file atomically (a kill now leaves the old log or the kept part), then appended to
        write_text(self.path, "".join(line + "\n" for line in kept))
        self._f = open(self.path, "a")

    def scalars(self, it: int, values: dict[str, float]) -> None:
        self._f.write(json.dumps({"iter": int(it), **{k: float(v) for k, v in values.items()}}) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class TensorBoardLog:
    """TensorBoard event files in ``folder`` (``torch.utils.tensorboard``)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._w = None

    def start(self, it: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # optional: the tensorboard extra

        self._w = SummaryWriter(log_dir=str(self.folder), purge_step=it if it > 0 else None)

    def scalars(self, it: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self._w.add_scalar(k, float(v), int(it))

    def close(self) -> None:
        if self._w is not None:
            self._w.flush()
            self._w.close()
            self._w = None


def open_log(folder: str | Path, kind: str | None = None):
    """The log of one training in ``folder`` for ``kind`` (default: the configured one), or None."""
    kind = _kind if kind is None else kind
    if kind == "jsonl":
        return JsonlLog(Path(folder))
    if kind == "tensorboard":
        return TensorBoardLog(Path(folder))
    return None


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSONL log (a cut last line is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
