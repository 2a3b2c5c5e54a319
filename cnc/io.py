"""Small file helpers: atomic writes (with the modes the umask allows), hashing, JSON, a full
disk named as such."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnc.errors import BadFileError, MissingFileError, UserError


class DiskFullError(UserError):
    """A write failed for lack of space; the message names the path and the free space."""


def free_bytes(path: Path) -> int:
    """Free space on the file system that holds `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save reports a failed write as "... PytorchStreamWriter ... file write failed"
    return isinstance(exc, RuntimeError) and "file write failed" in str(exc)


@contextmanager
def disk_full_named(path: Path) -> Iterator[None]:
    """Turn a failed write for lack of space into a DiskFullError naming `path`."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if not _disk_full(exc):
            raise
        raise DiskFullError(
            f"{path}: no space left to write it ({free_bytes(path) / 2**20:.1f} MiB free); any "
            "earlier version is kept. Free space, or move the run folder or the feature cache "
            "(train.cache_dir) to a larger disk, then resume"
        ) from None


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def as_umask_allows(path: Path) -> None:
    """Give a file or folder made by mkstemp/mkdtemp (private: 0600/0700) the mode a
    plain open/mkdir would have given it, so colleagues read what the umask lets them."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success.

    A crash or an exception leaves `path` as it was and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with disk_full_named(path):
            yield tmp_path
        as_umask_allows(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; rename it to `path` only on success.

    On failure the temporary folder is removed and `path` is untouched. With `replace`,
    an existing `path` is swapped out and deleted once the new folder is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.with_name(f".{path.name}.old")
    try:
        try:
            yield tmp
        except DiskFullError as exc:  # name the folder the user knows, not our temporary one
            raise DiskFullError(str(exc).replace(str(tmp), str(path))) from None
        as_umask_allows(tmp)
        if replace and path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MissingFileError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise BadFileError(f"{path}: not valid JSON ({exc}); delete it to regenerate") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
