"""Preparing a dataset: fetch or generate it, verify it, and record its manifest."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cnc.data import visa
from cnc.data.check import check_root, count_mismatches
from cnc.data.download import download, extract
from cnc.data.manifest import MANIFEST, manifest_differences, write_manifest
from cnc.data.registry import RemoteDataset
from cnc.data.synthetic import SyntheticSpec, contact_sheet, generate
from cnc.errors import AlreadyExistsError, UserError
from cnc.io import atomic_dir, read_json

CONTACT_SHEET = "contact_sheet.png"


class DataError(UserError):
    """A dataset failed verification; the message lists every problem."""


def _fail(problems: list[str], headline: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(f"{headline}:\n  {shown}{more}")


def verify_root(
    root: Path, dataset: str, counts: dict[str, tuple[int, int, int]] | None
) -> dict[str, Any]:
    """Check a prepared folder; compare with its manifest when it has one, else write one."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        _fail(manifest_differences(root, manifest_path), f"{root}: data changed since prepared")
        return read_json(manifest_path)
    report = check_root(root)
    _fail(report.problems, f"{root}: not a valid MVTec-layout dataset")
    if counts is not None:
        _fail(count_mismatches(report, counts), f"{root}: counts differ from the published ones")
    return write_manifest(root, manifest_path, dataset, report)


def fetch(
    spec: RemoteDataset,
    root: Path,
    url: str | None = None,
    downloads: Path | None = None,
    check_counts: bool = True,
    progress: bool = True,
    retries: int = 3,
) -> dict[str, Any]:
    """Make `root` hold dataset `spec` in the MVTec layout, verified, with a manifest.

    An extracted folder already at `root` is verified and used; otherwise the archive in
    `downloads` is used after its hash is checked, or downloaded when absent.
    """
    name = spec.name
    root = Path(root)
    expected = spec.counts if check_counts else None
    if root.exists():
        return verify_root(root, name, expected)
    downloads = Path(downloads) if downloads else root.parent / "downloads"
    archive = download(
        url or spec.url, downloads / spec.archive, spec.sha256, retries=retries, progress=progress
    )
    if name == "visa":
        raw = root.with_name(f".{root.name}.raw")
        shutil.rmtree(raw, ignore_errors=True)  # our own leftover from a killed run
        extract(archive, raw)
        try:
            with atomic_dir(root) as tmp:
                visa.convert(raw, tmp, move=True)
        finally:
            shutil.rmtree(raw, ignore_errors=True)
    else:
        extract(archive, root)
    try:
        manifest = verify_root(root, name, expected)
    except DataError:
        shutil.rmtree(root)  # never leave a folder that looks prepared but is not
        raise
    return manifest


def is_synthetic(root: Path) -> bool:
    """True when `root` holds a synthetic set this project generated."""
    manifest_path = Path(root) / MANIFEST
    try:
        return read_json(manifest_path).get("dataset") == "synthetic"
    except UserError:  # no manifest, or not ours
        return False


def synthetic(spec: SyntheticSpec, out: Path, force: bool = False) -> dict[str, Any]:
    """Generate the synthetic benchmark at `out`, or reuse it when it is already there.

    An existing folder is reused only when its manifest records the same settings and no
    file changed; anything else at `out` is replaced only with `force`.
    """
    out = Path(out)
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}
    manifest_path = out / MANIFEST
    if out.exists():
        if manifest_path.is_file():
            old = read_json(manifest_path)
            same = old.get("dataset") == "synthetic" and old.get("params") == params
            if same and not manifest_differences(out, manifest_path):
                return old
        if not force:
            raise AlreadyExistsError(
                f"{out}: exists and is not the synthetic set for these settings; "
                "choose another folder or pass --force to replace it"
            )
    with atomic_dir(out, replace=True) as tmp:
        generate(spec, tmp)
        report = check_root(tmp)
        _fail(report.problems, "generated synthetic data is invalid (a bug)")
        contact_sheet(tmp, tmp / CONTACT_SHEET)
        manifest = write_manifest(tmp, tmp / MANIFEST, "synthetic", report, {"params": params})
    return manifest
