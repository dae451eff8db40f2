"""Atomic, pickle-free file IO: JSON and safetensors written via a temp file and os.replace.

A kill at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import UserError


def _temporary_affixes(name: str) -> tuple[str, str]:
    """The (prefix, suffix) of the temporary names ``_atomic_write`` gives a file called ``name``."""
    return f".{name}.", ".tmp"


def is_temporary_of(file: str, name: str) -> bool:
    """Whether ``file`` is a temporary that a write of a file called ``name`` made (one a killed process left)."""
    prefix, suffix = _temporary_affixes(name)
    return file.startswith(prefix) and file.endswith(suffix)


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file of a name of its own beside ``path``, then renamed onto it. A failed
    write (disk full, no permission) is a one-line UserError; the old file, if any, is left as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = _temporary_affixes(path.name)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        _discard(tmp)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0] if str(e) else ""
        raise UserError(
            f"cannot write {path} ({reason or type(e).__name__}); free some space or fix the permissions, then run "
            "the same command again (everything written before is kept)"
        ) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    """``data`` as the whole of ``path``, atomically (a plot, a report page, a rewritten log)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    _atomic_write(Path(path), write)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt or not JSON ({e}); delete it or restore it") from None
    except NotADirectoryError:
        raise UserError(f"{path.parent} is a file, not a folder; give a run directory") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror or type(e).__name__})") from None


def read_json_or_none(path: str | Path) -> Any:
    """``read_json``, or None where the file is missing, unreadable or not JSON (for listings that skip such
    files rather than stop)."""
    try:
        return read_json(path)
    except (UserError, OSError):
        return None


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat name -> tensor dict as safetensors (copies to contiguous CPU tensors)."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(flat, tmp, metadata=metadata))


def first_non_finite(tensors) -> str | None:
    """The name of the first floating tensor of ``tensors`` ((name, tensor) pairs) holding a NaN or inf."""
    return next((k for k, v in tensors if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is corrupt or not a safetensors file ({msg}); delete it to recompute") from None
