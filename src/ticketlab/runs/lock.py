"""One process at a time in a run folder: an advisory lock on ``<run>/.lock``, which holds the owner's pid.

The lock is the kernel's (``flock``), so it dies with its process: a folder left by a killed run is taken
over by the next one with no stale state to clean. The file itself stays (removing it would let two
processes lock two different files of one name). A process re-entering a folder it holds (a seed group's
member, a run checked then opened) keeps its one lock; the CLI releases them when its command ends.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError

try:
    import fcntl
except ImportError:  # not a POSIX system: no locking (the folder is still written atomically)
    fcntl = None

LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # folder -> the open descriptor holding its lock


def acquire(folder: str | Path) -> None:
    """Lock ``folder`` for this process, or refuse in one line naming the process that holds it."""
    folder = Path(folder).resolve()
    if fcntl is None or folder in _held:
        return
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"cannot create the lock {path} ({e.strerror}); choose a writable --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(
            f"{folder} is in use by another ticketlab process (pid {owner}); wait for it to finish or stop it, "
            "then run the same command again"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[folder] = fd


def release_all() -> None:
    """Give up every lock this process holds (the end of a command)."""
    while _held:
        _, fd = _held.popitem()
        os.close(fd)  # closing the descriptor releases its flock


def held() -> list[Path]:
    return list(_held)
