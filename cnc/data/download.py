"""Resumable, hash-verified downloads and safe archive extraction."""

from __future__ import annotations

import http.client
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from cnc.errors import AlreadyExistsError, UserError
from cnc.io import as_umask_allows, sha256_file

CHUNK = 1 << 16


class DownloadError(UserError):
    """The download could not complete; the message says what to do."""


class HashMismatch(DownloadError):
    pass


def _place_hint(dest: Path, sha256: str) -> str:
    return (
        f"download the archive by other means and put it at {dest} "
        f"(sha256 {sha256}), then run the same command again"
    )


def verify_file(path: Path, sha256: str) -> None:
    """Raise HashMismatch naming the file when its sha256 differs from the pinned one."""
    got = sha256_file(path)
    if got != sha256:
        raise HashMismatch(
            f"{path}: sha256 {got} does not match the pinned {sha256}; the file is corrupt "
            "or a different release: delete it and download again"
        )


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the missing bytes of `url` to `part` (HTTP Range when `part` has some)."""
    start = part.stat().st_size if part.exists() else 0
    headers = (
        {"User-Agent": "cnc-bench", "Range": f"bytes={start}-"}
        if start
        else {"User-Agent": "cnc-bench"}
    )
    try:
        request = urllib.request.Request(url, headers=headers)
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to fetch: the part file is complete
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with response:
        if start and response.status != 206:  # the server ignored Range: start again
            start = 0
        total = response.headers.get("Content-Length")
        total = int(total) + start if total is not None else None
        mode = "ab" if start else "wb"
        with (
            open(part, mode) as fh,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=part.name[:-5],
                disable=not progress,
            ) as bar,
        ):
            while block := response.read(CHUNK):
                fh.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def download(
    url: str,
    dest: Path,
    sha256: str,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest` and verify its sha256.

    Bytes arrive in `<dest>.part`; an interrupted transfer is resumed with an HTTP Range
    request (up to `retries` times here, or by running again later). Only a verified file
    is renamed to `dest`; a complete download with the wrong hash is deleted.
    """
    dest = Path(dest)
    if dest.exists():
        verify_file(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout, progress)
            break
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{url}: interrupted after {have} bytes ({exc!r}); run again to resume "
                    f"from {part}"
                ) from None
        except urllib.error.URLError as exc:
            hint = _place_hint(dest, sha256)
            raise DownloadError(f"{url}: cannot connect ({exc.reason}); {hint}") from None
    try:
        verify_file(part, sha256)
    except HashMismatch:
        part.unlink()
        raise
    part.rename(dest)
    return dest


def _data_root(extracted: Path) -> Path:
    """Descend through a single wrapping folder, as some archives have one."""
    entries = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return _data_root(entries[0])
    return extracted


def _refuse_escaping(archive: Path, names: list[str]) -> None:
    """A zip member with an absolute path or `..` would land outside the folder."""
    for name in names:
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts:
            raise DownloadError(f"{archive}: member {name!r} would be written outside the folder")


def extract(archive: Path, dest: Path) -> Path:
    """Extract a tar (any compression) or zip archive into `dest`, all or nothing.

    Extraction happens in a temporary folder beside `dest`, renamed only when complete,
    so an interrupted or corrupt extraction leaves nothing half-written.
    """
    dest = Path(dest)
    if dest.exists():
        raise AlreadyExistsError(f"{dest}: already exists; remove it to extract {archive} again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extract", dir=dest.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _refuse_escaping(archive, zf.namelist())
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")  # refuses absolute paths and links out
        as_umask_allows(tmp)
        os.replace(_data_root(tmp), dest)  # one rename: dest appears complete or not at all
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise DownloadError(
            f"{archive}: cannot extract ({exc}); delete it and fetch again"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
