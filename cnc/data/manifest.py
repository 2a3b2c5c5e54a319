"""Manifests: the file list of a prepared dataset with content hashes.

A manifest is written once a dataset is prepared; checking a folder against it
later reports every file that changed, disappeared or appeared since.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnc.data.check import CheckReport, check_root
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


def check_against_manifest(root: Path, manifest: Path | None = None) -> CheckReport:
    """`check_root`, plus every file changed since the folder's manifest was written
    (ROOT/manifest.json unless `manifest` names another)."""
    report = check_root(root)
    manifest = Path(manifest) if manifest else Path(root) / MANIFEST
    if report.classes and manifest.is_file():
        report.problems.extend(manifest_differences(root, manifest))
    return report
