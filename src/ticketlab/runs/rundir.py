"""Run directories: named by a hash of the config, refused if they hold a different config.

Only settings that change results are in ``config.json`` (not the output path, device or verbosity).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..io import is_temporary_of, read_json, write_json
from .check import CONFIG_FILE, check_run_files
from .lock import LOCK_FILE, acquire


def config_hash(config: dict) -> str:
    """The run folder's name suffix: 12 hex digits of the SHA-256 of the config as sorted-key JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def default_run_dir(kind: str, config: dict, root: str | Path = "runs", legacy_kinds: tuple[str, ...] = ()) -> Path:
    """``root/<kind>-<config hash>``; a folder that exists under a legacy kind's name (the kind before a
    rename) is returned instead, so runs made before the rename resume."""
    for old in legacy_kinds:
        path = Path(root) / f"{old}-{config_hash(config)}"
        if (path / CONFIG_FILE).exists():
            return path
    return Path(root) / f"{kind}-{config_hash(config)}"


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


PROBE_PREFIX = ".write-test-"


def _own_leftover(name: str) -> bool:
    """Whether ``name``, in a folder without a config, is what a run killed while creating the folder leaves:
    its lock, its write probe, or its config's temporary (a sweep worker terminated with its pool, mid-write).
    Such a folder is a new run's, not a foreign one."""
    return name == LOCK_FILE or name.startswith(PROBE_PREFIX) or is_temporary_of(name, CONFIG_FILE)


def open_run_dir(
    path: str | Path,
    kind: str,
    config: dict,
    normalize: Callable[[dict], dict] | None = None,
    legacy_kinds: tuple[str, ...] = (),
    check: bool = True,
) -> Path:
    """Create or reopen ``path`` for a run of ``config``; refuse foreign or mismatching directories.

    ``normalize`` maps a stored config to the current schema (new settings at their defaults), so runs
    made before a setting existed still resume; a folder stored under one of ``legacy_kinds`` (the kind's
    name before a rename) is reopened as it is. A reopened folder's files are checked whole (``check``:
    ``runs.check``) before the run writes anything, so a refusal changes nothing.
    """
    path = Path(path)
    record = {"kind": kind, "config": config}
    cfg_file = path / CONFIG_FILE
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a directory; choose another --out")
    if cfg_file.exists():
        old = read_json(cfg_file)
        if not isinstance(old, dict) or "config" not in old or old.get("kind") not in (kind, *legacy_kinds):
            raise UserError(f"{path} holds something other than a ticketlab {kind} run; choose another --out")
        stored = old["config"]
        if normalize is not None and isinstance(stored, dict):
            try:
                stored = normalize(stored)
            except (UserError, TypeError, ValueError):
                pass
        if stored != config:
            changed = ", ".join(_diff(stored if isinstance(stored, dict) else {}, config)) or "?"
            raise UserError(
                f"{path} holds a run with a different config (differs in: {changed}); "
                "use another --out, or repeat the original command to resume it"
            )
        if check:
            check_run_files(path)
        acquire(path)
        return path
    if path.exists() and not all(_own_leftover(p.name) for p in path.iterdir()):
        raise UserError(f"{path} is not empty and is not a ticketlab run directory; choose an empty or new --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f"{PROBE_PREFIX}{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out {path} ({e.strerror}); choose a writable directory") from None
    acquire(path)
    write_json(cfg_file, record)
    return path
