"""Finding dataset files on disk and downloading them with SHA-256 verification into a cache.

Search order: ``--data-dir``, then ``$TICKETLAB_DATA``, then dataset-specific system folders, then the
cache (``$TICKETLAB_CACHE``, default ``~/.cache/ticketlab``), where downloads land. A download is written
to a temporary name and renamed only after its checksum matches, so the cache never holds half a file.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    sha256: str
    urls: tuple[str, ...]


def cache_dir() -> Path:
    return Path(os.environ.get("TICKETLAB_CACHE") or Path.home() / ".cache" / "ticketlab")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def candidate_dirs(dataset: str, data_dir: str | Path | None, system_dirs: Sequence[str] = ()) -> list[Path]:
    """Folders searched for a dataset's files, in order (each also with a ``<dataset>/`` subfolder)."""
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("TICKETLAB_DATA"):
        roots.append(Path(os.environ["TICKETLAB_DATA"]))
    out: list[Path] = []
    for r in roots:
        out += [r, r / dataset]
    out += [Path(d) for d in system_dirs]
    out.append(cache_dir() / dataset)
    return out


def find_files(
    dataset: str, filenames: Sequence[str], data_dir: str | Path | None, system_dirs: Sequence[str] = ()
) -> Path | None:
    """The first candidate folder that holds every one of ``filenames``, or None."""
    for d in candidate_dirs(dataset, data_dir, system_dirs):
        if all((d / f).is_file() for f in filenames):
            return d
    return None


def download(remote: RemoteFile, dest_dir: Path, quiet: bool = False) -> Path:
    """Fetch ``remote`` into ``dest_dir`` (trying each mirror), verify SHA-256, rename into place.

    Raises UserError if every mirror fails; nothing is left behind but complete, verified files.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / remote.filename
    if dest.is_file():
        if sha256_file(dest) == remote.sha256:
            return dest
        raise UserError(f"{dest} is corrupt (SHA-256 mismatch); delete it and run again to re-download")
    errors = []
    tmp = dest_dir / f".{remote.filename}.{os.getpid()}.part"
    for url in remote.urls:
        if not quiet:
            print(f"downloading {url}", file=sys.stderr)
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    h.update(chunk)
                    f.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        if h.hexdigest() != remote.sha256:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: SHA-256 mismatch (corrupt or truncated)")
            continue
        os.replace(tmp, dest)
        return dest
    raise DownloadFailed(remote.filename, errors)


class DownloadFailed(UserError):
    def __init__(self, filename: str, errors: list[str]):
        self.errors = errors
        super().__init__(f"could not download {filename} ({'; '.join(errors)})")


def locate_or_download(
    dataset: str,
    remotes: Sequence[RemoteFile],
    data_dir: str | Path | None,
    system_dirs: Sequence[str] = (),
    hint: str = "",
    quiet: bool = False,
) -> Path:
    """Folder holding all ``remotes`` files: found on disk, else downloaded into the cache."""
    names = [r.filename for r in remotes]
    found = find_files(dataset, names, data_dir, system_dirs)
    if found is not None:
        return found
    dest = cache_dir() / dataset
    try:
        for r in remotes:
            download(r, dest, quiet=quiet)
    except DownloadFailed as e:
        places = "--data-dir DIR or $TICKETLAB_DATA"
        raise UserError(
            f"dataset {dataset!r} not found and its download failed ({'; '.join(e.errors)[:300]}); "
            f"put {', '.join(names)} in {places}{hint}, or run where the mirrors are reachable"
        ) from None
    return dest
