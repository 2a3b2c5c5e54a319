"""Preparing a dataset: fetch or generate it, verify it, and record its manifest.

`prepare_dataset(name, data)` is the workflow's data step: `data` is params.yaml's
`data` section, or the part of it that names `downloads` and the dataset's own entry
(`{"downloads": ..., "<name>": {...}}`, what Snakemake passes as `--settings`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnc.data import replicas
from cnc.data.check import check_root, count_mismatches
from cnc.data.convert import CONVERTERS
from cnc.data.download import DownloadError, HashMismatch, download, extract
from cnc.data.manifest import MANIFEST, manifest_differences, write_manifest
from cnc.data.registry import DATASET_NAMES, REMOTE, REPLICAS, RemoteDataset
from cnc.data.synthetic import SETS, SyntheticSpec, contact_sheet, generate
from cnc.errors import AlreadyExistsError, SettingsError, UsageError, UserError
from cnc.io import atomic_dir, read_json, write_json

CONTACT_SHEET = "contact_sheet.png"
CONVERT_OPTIONS = ("classes", "resolution", "jsons")  # data.realiad's choices


class DataError(UserError):
    """A dataset failed verification; the message lists every problem."""


def _fail(problems: list[str], headline: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(f"{headline}:\n  {shown}{more}")


def verify_root(
    root: Path,
    dataset: str,
    counts: dict[str, tuple[int, int, int]] | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check a prepared folder; compare with its manifest when it has one, else write one
    (with `extra`: what its preparation reports beyond the files)."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        _fail(manifest_differences(root, manifest_path), f"{root}: data changed since prepared")
        return read_json(manifest_path)
    report = check_root(root)
    _fail(report.problems, f"{root}: not a valid MVTec-layout dataset")
    if counts is not None:
        _fail(count_mismatches(report, counts), f"{root}: counts differ from the published ones")
    return write_manifest(root, manifest_path, dataset, report, extra)


def _verify_made(root: Path, dataset: str, counts: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """verify_root on a folder just made: removed when it fails, so that no folder looks
    prepared but is not."""
    try:
        return verify_root(root, dataset, counts, extra)
    except DataError:
        shutil.rmtree(root)
        raise


@contextmanager
def _scratch(root: Path) -> Iterator[Path]:
    """A folder beside `root` for a raw layout on its way to `root`, removed afterwards
    (and first: our own leftover from a killed run)."""
    raw = root.with_name(f".{root.name}.raw")
    shutil.rmtree(raw, ignore_errors=True)
    try:
        yield raw
    finally:
        shutil.rmtree(raw, ignore_errors=True)


def _by_hand(spec: RemoteDataset, root: Path) -> DataError:
    where = (
        f"give the extracted folder as data.{spec.name}.raw (converted into {root})"
        if spec.convert
        else f"put the extracted folder (MVTec layout) at {root}"
    )
    return DataError(
        f"{root}: dataset root not found (data.{spec.name}.root), and {spec.name} cannot be "
        f"downloaded here: request or download it from {spec.page}, then {where}"
    )


def convert_raw(
    spec: RemoteDataset,
    raw: Path,
    root: Path,
    expected: Any,
    move: bool,
    options: dict[str, Any],
    dataset: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert the raw folder `raw` of dataset `spec` into `root` (all or nothing), then
    verify it and write its manifest once, as `dataset` (default: spec's name), with what
    the converter reports and `extra`."""
    if not Path(raw).is_dir():
        raise DataError(f"{raw}: not found (data.{spec.name}.raw); give the extracted folder")
    with atomic_dir(root) as tmp:
        extras = CONVERTERS[spec.convert](Path(raw), tmp, move=move, **options)
    facts = {"converted_from": spec.convert or "MVTec layout", **extras, **(extra or {})}
    return _verify_made(root, dataset or spec.name, expected, facts)


def fetch(
    spec: RemoteDataset,
    root: Path,
    url: str | None = None,
    downloads: Path | None = None,
    check_counts: bool = True,
    progress: bool = True,
    retries: int = 3,
    raw: Path | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Make `root` hold dataset `spec` in the MVTec layout, verified, with a manifest.

    A prepared folder already at `root` is verified and used; else the raw folder `raw`
    (extracted by hand) is converted; else the archive in `downloads` is used after its
    hash is checked, or downloaded when absent (datasets with a public archive only).
    """
    name = spec.name
    root = Path(root)
    expected = spec.counts if check_counts else None
    options = options or {}
    if root.exists():
        return verify_root(root, name, expected)
    if raw is not None:
        return convert_raw(spec, Path(raw), root, expected, move=False, options=options)
    if (url or spec.url) is None or spec.archive is None:
        raise _by_hand(spec, root)
    downloads = Path(downloads) if downloads else root.parent / "downloads"
    try:
        archive = download(
            url or spec.url, downloads / spec.archive, spec.sha256, retries=retries,
            progress=progress,
        )  # fmt: skip
    except HashMismatch:
        raise
    except DownloadError as exc:  # a mistyped root looks like a dataset not yet fetched
        raise DownloadError(
            f"{root}: dataset root not found (data.{name}.root; if the dataset is elsewhere, "
            f"give that folder), so it was to be fetched, and that failed: {exc}"
        ) from None
    if not spec.convert:
        extract(archive, root)
        return _verify_made(root, name, expected, {})
    with _scratch(root) as extracted:
        extract(archive, extracted)
        return convert_raw(spec, extracted, root, expected, move=True, options=options)


def replica(name: str, root: Path) -> dict[str, Any]:
    """Write the synthetic replica of a dataset's raw layout (cnc.data.replicas) and
    convert it into `root` with the dataset's own converter; reused when unchanged."""
    dataset, root = REPLICAS[name], Path(root)
    if root.exists():
        recorded = root / MANIFEST
        old = read_json(recorded) if recorded.is_file() else {}
        if old.get("dataset") != name:
            raise AlreadyExistsError(
                f"{root}: exists and is not the {name} replica; choose another data.{name}.root"
            )
        if not manifest_differences(root, recorded):
            return old
        shutil.rmtree(root)  # our own replica, changed since: made again
    with _scratch(root) as raw:
        replicas.write(dataset, raw)
        return convert_raw(
            REMOTE[dataset], raw, root, None, move=True, options={}, dataset=name,
            extra={"replica_of": dataset},
        )  # fmt: skip


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
    params = spec.to_dict()
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


# ----------------------------------------------------------------------------- the workflow


def _entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get(name), dict):
        raise SettingsError(f"data.{name}: missing setting")
    return data[name]


def dataset_root(data: dict[str, Any], name: str) -> Path:
    root = _entry(data, name).get("root")
    if root is None:
        raise SettingsError(f"data.{name}.root: not set; give the dataset folder in params.yaml")
    return Path(root)


def synthetic_spec(data: dict[str, Any], name: str = "synthetic") -> SyntheticSpec:
    """A synthetic set's settings: SyntheticSpec's defaults with the set's classes
    (cnc.data.synthetic.SETS), overridden by params.yaml's data.<name>."""
    given = {k: v for k, v in _entry(data, name).items() if k != "root"}
    return SyntheticSpec(**{"classes": SETS[name], **given})


def dataset_settings(data: dict[str, Any], name: str) -> dict[str, Any]:
    """Everything dataset `name`'s preparation depends on, defaults resolved (the
    workflow's `--settings` for it, and what re-runs it when changed)."""
    entry = dict(_entry(data, name))
    if name in SETS:
        entry = {"root": entry.get("root"), **synthetic_spec(data, name).to_dict()}
    return {"downloads": data.get("downloads"), name: entry}


def prepare_dataset(
    name: str, data: dict[str, Any], record: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Generate (synthetic), fetch or convert (the public datasets), replicate (their
    raw layouts, cnc.data.replicas) or check (folder) dataset `name` as the settings
    describe it; with `record`, also write a summary there (the workflow's marker).
    Returns the dataset's root and manifest."""
    if name not in DATASET_NAMES:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    root = dataset_root(data, name)
    if name in SETS:
        # Replaces an older synthetic set of other settings, never a folder it did not make.
        manifest = synthetic(synthetic_spec(data, name), root, force=is_synthetic(root))
    elif name == "folder":
        manifest = verify_root(root, "folder", counts=None)
    elif name in REPLICAS:
        manifest = replica(name, root)
    else:
        downloads = data.get("downloads")
        if downloads is None:
            raise SettingsError("data.downloads: missing setting")
        entry = _entry(data, name)
        options = {k: entry[k] for k in CONVERT_OPTIONS if entry.get(k) is not None}
        raw = entry.get("raw")
        manifest = fetch(
            REMOTE[name], root, url=entry.get("url"), downloads=Path(downloads),
            raw=Path(raw) if raw else None, options=options,
        )  # fmt: skip
    if record is not None:
        summary = {
            "dataset": name,
            "root": str(root),
            "counts": manifest["counts"],
            "files": len(manifest["files"]),
        }
        write_json(record, summary)
    return root, manifest
