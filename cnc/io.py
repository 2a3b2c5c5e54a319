"""Small file helpers: atomic writes (with the modes the umask allows), hashing, JSON, a full
disk named as such."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import zipfile
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


# How torch.save to a path reports a failed write: "... file write failed", or, on a
# full device, "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598".
TORCH_WRITE_FAILED = ("file write failed", "unexpected pos")


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in TORCH_WRITE_FAILED)


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


# Temporary names: `.<name>.<random>.<host>~<pid>.tmp` beside the file they become, so
# that a later step can tell a leftover of a killed process from another one's work.
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)~(?P<pid>\d+)\.tmp$")
_UNTAGGED = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # mkstemp's, from earlier versions


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def temporary_suffix() -> str:
    return f".{_host()}~{os.getpid()}.tmp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_stale_temporary(path: Path, legacy: bool = True) -> bool:
    """A temporary file or folder of ours whose process has ended (on this host)."""
    tagged = _TEMPORARY.match(path.name)
    if tagged:
        return tagged["host"] == _host() and not _alive(int(tagged["pid"]))
    return legacy and bool(_UNTAGGED.match(path.name))


def remove_stale_temporaries(folder: Path, legacy: bool = True) -> list[Path]:
    """Remove what killed steps left in `folder`: temporary files and folders of this
    project's naming whose process has ended (with `legacy`, also the untagged ones of
    earlier versions: only in folders the project owns). Returns what it removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in folder.glob(".*.tmp") if is_stale_temporary(p, legacy)]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed


def temporary_file(path: Path) -> Path:
    """An empty temporary file beside `path`, named as ours (`remove_stale_temporaries`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=temporary_suffix(), dir=path.parent)
    os.close(fd)
    return Path(tmp)


def temporary_folder(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(
        tempfile.mkdtemp(prefix=f".{path.name}.", suffix=temporary_suffix(), dir=path.parent)
    )


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success.

    A crash or an exception leaves `path` as it was and removes the temporary file.
    """
    path = Path(path)
    tmp_path = temporary_file(path)
    try:
        with disk_full_named(path):
            yield tmp_path
        as_umask_allows(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths in one step (Linux 3.15)
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE, which Python
    does not wrap); False where the system or file system cannot."""
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:
        return False
    flags = ctypes.c_uint(_RENAME_EXCHANGE)
    return rename(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), flags) == 0


def _swap_folder(new: Path, path: Path) -> None:
    """Put folder `new` at `path`, replacing an existing one in one step where the system
    can (a reader sees the old folder or the new one, never none); elsewhere the old one
    is moved aside first. The old one is then deleted."""
    if path.exists() and _exchange(new, path):
        shutil.rmtree(new, ignore_errors=True)  # now the old folder
        return
    old = None
    if path.exists():
        old = temporary_folder(path)
        os.replace(path, old)  # an empty folder is replaced by rename
    os.replace(new, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(path: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; rename it to `path` only on success.

    On failure the temporary folder is removed and `path` is untouched. With `replace`,
    an existing `path` is swapped out and deleted once the new folder is in place.
    """
    path = Path(path)
    tmp = temporary_folder(path)
    try:
        try:
            yield tmp
        except DiskFullError as exc:  # name the folder the user knows, not our temporary one
            raise DiskFullError(str(exc).replace(str(tmp), str(path))) from None
        as_umask_allows(tmp)
        if replace:
            _swap_folder(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Outputs:
    """A step's output files and folders, written under temporary names and committed
    together (`committed`)."""

    def __init__(self) -> None:
        self.staged: dict[Path, Path] = {}  # final path -> temporary one
        self.areas: dict[Path, Path] = {}  # final folder -> temporary one mirroring it

    def file(self, path: Path) -> Path:
        """Where to write what becomes `path` at the commit."""
        path = Path(path)
        self.staged[path] = temporary_file(path)
        return self.staged[path]

    def folder(self, path: Path) -> Path:
        """A folder to fill that replaces `path` (and all it held) at the commit."""
        path = Path(path)
        self.staged[path] = temporary_folder(path)
        return self.staged[path]

    def within(self, folder: Path) -> Path:
        """A folder to fill whose files go into `folder` at the commit, one by one (what
        else `folder` holds stays)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.areas[folder] = temporary_folder(folder / "staged")
        return self.areas[folder]

    def moves(self) -> dict[Path, Path]:
        """Every final path and the temporary file or folder that becomes it."""
        found = dict(self.staged)
        for folder, area in self.areas.items():
            for tmp in sorted(area.rglob("*")):
                if tmp.is_file():
                    found[folder / tmp.relative_to(area)] = tmp
        return found

    def commit(self, last: Path) -> None:
        """`last`, the step's commit point, is removed first and put in place last: a kill
        in between leaves no commit point, which readers and Snakemake see as not done."""
        moves = self.moves()
        Path(last).unlink(missing_ok=True)
        for path, tmp in [*((p, t) for p, t in moves.items() if p != last), (last, moves[last])]:
            as_umask_allows(tmp)
            if tmp.is_dir():
                _swap_folder(tmp, path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, path)

    def discard(self) -> None:
        for tmp in [*self.staged.values(), *self.areas.values()]:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


@contextmanager
def committed(last: Path) -> Iterator[Outputs]:
    """Stage a step's outputs (`Outputs.file`, `.folder`, `.within`); on success they are
    moved into place with `last`, which must be among them, moved last. On failure
    nothing changes and the temporary files are removed."""
    outputs = Outputs()
    try:
        with disk_full_named(Path(last).parent):
            yield outputs
        if Path(last) not in outputs.moves():
            raise ValueError(f"{last}: the commit point was not written")
        outputs.commit(Path(last))
    finally:
        outputs.discard()


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


def read_arrays(path: Path) -> dict[str, Any]:
    """Every array of an .npz file, read as plain data: a file that would need unpickling
    (which can run code) is refused, never unpickled; a damaged or empty file is a
    BadFileError naming it."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise BadFileError(f"{path}: damaged ({exc})") from None
        raise BadFileError(
            f"{path}: not a file of plain arrays (only unpickling could read it, which can run "
            "code: refused)"
        ) from None
    except (OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise BadFileError(f"{path}: damaged or empty ({exc or type(exc).__name__})") from None


def file_stamp(path: Path) -> dict[str, Any]:
    """What identifies a file's content: its sha256, with its size and modification time
    so that `same_file` can skip re-reading an untouched file."""
    stat = Path(path).stat()
    return {"sha256": sha256_file(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def same_file(path: Path, stamp: dict[str, Any]) -> bool:
    """Whether `path` still holds the content `stamp` (from `file_stamp`) was taken of: an
    untouched file by its size and time, a touched one by its sha256."""
    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        return False
    if (stat.st_size, stat.st_mtime_ns) == (stamp.get("size"), stamp.get("mtime_ns")):
        return True
    return stat.st_size == stamp.get("size") and sha256_file(path) == stamp.get("sha256")
