"""Clean-up that survives its process: a local Ray cluster dies with the sweep that started it, however the
sweep ends (kill -9 included), and its temporary folder goes with it.

``start(folder)`` launches a small child process in a session of its own, holding the read end of a pipe
whose write end only this process has. When this process ends, the pipe closes; the child then kills
every process it was told about (``track``) and every process whose command line names ``folder`` (Ray's
raylet and GCS server take it as their temp dir), and removes ``folder``. A folder left by a watchdog that
could not run (the machine went down) is removed by ``sweep_stale`` on the next start: each holds the pid
of the process that made it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OWNER = "owner.pid"
PREFIX = "tl-ray-"

_CHILD = r"""
import os, shutil, signal, sys, time
folder = sys.argv[1]
pids = set()
for line in sys.stdin:  # the parent's pids to kill, one per line, until its end of the pipe closes
    if line.strip() == "stop":  # a normal end: the parent has shut everything down itself
        sys.exit(0)
    if line.strip().isdigit():
        pids.add(int(line))
me = os.getpid()
for _ in range(5):
    found = set(pids)
    for p in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if p.isdigit() and int(p) != me:
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if folder.encode() in f.read():
                        found.add(int(p))
            except OSError:
                pass
    for p in found:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    if not found - pids:
        break
    pids |= found
    time.sleep(0.2)
shutil.rmtree(folder, ignore_errors=True)
"""


class Watchdog:
    def __init__(self, folder: Path, proc: subprocess.Popen):
        self.folder, self.proc = folder, proc

    def track(self, pids) -> None:
        """Processes to kill if this process dies (those started for it: Ray's)."""
        pids = [p for p in pids if p != self.proc.pid]
        try:
            self.proc.stdin.write("".join(f"{p}\n" for p in pids))
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        """A normal end: the caller has shut its processes down and removed the folder; the watchdog just exits."""
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        self.proc.wait(timeout=30)


def make_folder() -> Path:
    """A new temporary folder for a local Ray (short: its socket paths must fit 107 bytes), owned by this
    process; stale ones of dead owners are removed first."""
    sweep_stale()
    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    (folder / OWNER).write_text(f"{os.getpid()}\n")
    return folder


def start(folder: Path) -> Watchdog:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # a Ctrl-C or a killed process group spares it: it must outlive the sweep
    )
    return Watchdog(folder, proc)


def children(pid: int | None = None) -> list[int]:
    """Every descendant of ``pid`` (default: this process), from /proc (empty where there is none)."""
    pid = os.getpid() if pid is None else pid
    parent: dict[int, int] = {}
    for p in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    parent[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        kids = [c for c, pp in parent.items() if pp == q]
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(root: str | Path | None = None) -> list[Path]:
    """Remove the ``tl-ray-*`` folders under ``root`` (default: the temp dir) whose owner process is gone."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in root.glob(PREFIX + "*"):
        try:
            owner = int((folder / OWNER).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or being made right now
        if not _alive(owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
