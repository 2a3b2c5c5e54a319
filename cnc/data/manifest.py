"""Manifests: the file list of a prepared dataset with content hashes.

A manifest is written once a dataset is prepared; checking a folder against it
later reports every file that changed, disappeared or appeared since. `checked` is that
check (`cnc data check`) for a training job, remembered by the files' sizes and times so
that a rerun on unchanged data costs a folder listing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnc import code
from cnc.data.check import CheckReport, check_root
from cnc.errors import UserError
from cnc.io import read_json, sha256_file, write_json

MANIFEST = "manifest.json"


def data_files(root: Path) -> list[Path]:
    """Every file inside the class folders (the only files the reader uses)."""
    root = Path(root)
    return sorted(
        p
        for cls in root.iterdir()
        if cls.is_dir() and not cls.name.startswith(".")
        for p in cls.rglob("*")
        if p.is_file()
    )


def file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in data_files(root)}


def write_manifest(
    root: Path, path: Path, dataset: str, report: CheckReport, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    manifest = {
        "dataset": dataset,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": report.to_dict()["classes"],
        **(extra or {}),
        "files": file_hashes(root),
    }
    write_json(path, manifest)
    return manifest


def manifest_differences(root: Path, path: Path) -> list[str]:
    """Files changed, missing or added relative to the manifest at `path`."""
    recorded: dict[str, str] = read_json(path)["files"]
    current = file_hashes(root)
    problems = [
        f"{Path(root) / name}: changed since {path} was written"
        for name, digest in current.items()
        if name in recorded and recorded[name] != digest
    ]
    problems += [
        f"{Path(root) / n}: missing (listed in {path})" for n in recorded if n not in current
    ]
    problems += [f"{Path(root) / n}: not listed in {path}" for n in current if n not in recorded]
    return problems


def check_against_manifest(
    root: Path, manifest: Path | None = None, classes: list[str] | None = None
) -> CheckReport:
    """`check_root`, plus every file changed since the folder's manifest was written
    (ROOT/manifest.json unless `manifest` names another)."""
    report = check_root(root, classes)
    manifest = Path(manifest) if manifest else Path(root) / MANIFEST
    if report.classes and manifest.is_file():
        report.problems.extend(manifest_differences(root, manifest))
    return report


# ----------------------------------------------------------------------------- cached

# The code whose checks a remembered result stands for: a change checks every dataset again.
CHECK_CODE = ("cnc/data/check.py", "cnc/data/images.py", "cnc/data/layout.py",
              "cnc/data/manifest.py")  # fmt: skip


def cache_folder() -> Path:
    """Where checked datasets are remembered: the user's cache (XDG_CACHE_HOME), never the
    dataset folder (it may be shared and read-only)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnc-bench" / "data-checks"


def _stamp(root: Path, classes: list[str] | None) -> str:
    """A hash of every file's name, size and modification time under the class folders
    (and of the checking code): any change to the data gives another stamp."""
    digest = hashlib.sha256(code.fingerprint(CHECK_CODE).encode())
    digest.update(json.dumps(classes).encode())
    manifest = root / MANIFEST
    if manifest.is_file():
        digest.update(f"{manifest.stat().st_size}\0{manifest.stat().st_mtime_ns}\n".encode())
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                stat = os.stat(path)
                digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def checked(root: Path, classes: list[str] | None = None) -> CheckReport:
    """`check_against_manifest` (every pixel decoded, every file against the manifest),
    remembered for the same files (by name, size and modification time): a rerun on
    unchanged data lists the folder only."""
    root = Path(root).resolve()
    if not root.is_dir():
        return check_root(root, classes)
    stamp = _stamp(root, classes)
    key = hashlib.sha256(json.dumps([str(root), classes]).encode()).hexdigest()[:24]
    cached = cache_folder() / f"{key}.json"
    try:
        record = json.loads(cached.read_text())
        if record.get("stamp") == stamp:
            return CheckReport.from_dict(record["report"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or an unreadable one: check again
    report = check_against_manifest(root, classes=classes)
    with contextlib.suppress(OSError, UserError):  # an unwritable cache only costs time
        write_json(cached, {"stamp": stamp, "report": report.to_dict()})
    return report
