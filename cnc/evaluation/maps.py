"""Saved anomaly maps: what inference writes and evaluation reads, and what evaluation
does to them (smoothing, image scores).

One compressed `<cls>.npz` per class in a run's maps folder (cnc.runs.MAPS_DIR), with
  maps          float16 (N, H, W)  eq. 17's maps at the evaluation size, not smoothed
  masks         bool    (N, H, W)  ground truth resized with the stated mask rule
  labels        int8    (N,)       1 = anomalous
  paths         str     (N,)       source images, for heat maps
  defects       str     (N,)       each image's defect type: its test folder ("good": normal)
and `protocol.json` beside them: map size, mask rule, the content digest of every
class's file and the stamp of the model file the maps came from (cnc.runs). Smoothing
happens at evaluation, so a new sigma re-scores the saved maps without inference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from cnc.errors import BadFileError, UserError
from cnc.io import atomic_path, read_arrays, read_json, write_json
from cnc.runs import PROTOCOL


class MapsError(UserError, ValueError):
    """Saved maps missing or unreadable; the message says how to make them."""


@dataclass
class ClassMaps:
    maps: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    paths: np.ndarray
    defects: np.ndarray

    def image_ids(self) -> list[str]:
        """Each image as `<class>/<split>/<defect>/<file>`: the same in every copy of the
        dataset, whatever its root (the identity paired comparisons check)."""
        return ["/".join(Path(p).parts[-4:]) for p in self.paths]


def defect_type(path: str) -> str:
    """The defect type of a test image of the MVTec layout: its folder's name."""
    return Path(path).parent.name


def smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each (H, W) map of a (N, H, W) stack (float32); 0 = none."""
    maps = np.asarray(maps, dtype=np.float32)
    return gaussian_filter(maps, sigma=(0, sigma, sigma)) if sigma > 0 else maps


def image_scores_from_maps(maps: np.ndarray) -> np.ndarray:
    """The image score the paper uses: the maximum of each (N, H, W) anomaly map."""
    return maps.reshape(len(maps), -1).max(axis=1)


def _stored(data: ClassMaps) -> dict[str, np.ndarray]:
    return {
        "maps": np.asarray(data.maps).astype(np.float16),
        "masks": np.asarray(data.masks).astype(bool),
        "labels": np.asarray(data.labels).astype(np.int8),
        "paths": np.asarray(data.paths, dtype=str),
        "defects": np.asarray(data.defects, dtype=str),
    }


def content_digest(arrays: dict[str, np.ndarray]) -> str:
    """A sha256 of a maps file's arrays (type, shape, bytes), whatever the zip around
    them (which records when it was written)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_class_maps(folder: Path, cls: str, data: ClassMaps) -> str:
    """Write `<cls>.npz`; returns its content digest. Maps that are not finite at their
    stored precision are refused: they would only fail later, in every metric."""
    n = len(data.labels)
    shapes = {
        "maps": data.maps.shape[0],
        "masks": data.masks.shape[0],
        "paths": len(data.paths),
        "defects": len(data.defects),
    }
    if any(v != n for v in shapes.values()) or data.maps.shape != data.masks.shape:
        raise ValueError(f"{cls}: inconsistent array lengths {shapes} for {n} labels")
    arrays = _stored(data)
    bad = int((~np.isfinite(arrays["maps"])).sum())
    if bad:
        raise MapsError(
            f"{cls}: {bad} map values are not finite (as float16); the model is damaged or "
            "diverged. Nothing was written: the earlier maps are kept"
        )
    with atomic_path(Path(folder) / f"{cls}.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return content_digest(arrays)


def read_class_maps(path: Path, digest: str | None = None) -> ClassMaps:
    """A class's maps; with `digest` (from protocol.json), checked to be what inference
    wrote. Only arrays of plain types are read (no pickles)."""
    try:
        arrays = read_arrays(path)
        # Maps written before defect types were recorded: from the folder names.
        defects = arrays.get("defects")
        if defects is None:
            defects = np.array(list(map(defect_type, arrays["paths"])))
        data = ClassMaps(
            maps=arrays["maps"].astype(np.float32),
            masks=arrays["masks"].astype(bool),
            labels=arrays["labels"].astype(np.int64),
            paths=arrays["paths"],
            defects=defects,
        )
    except (BadFileError, KeyError, ValueError) as exc:
        raise MapsError(
            f"{path}: not a readable maps file ({exc}); run inference again "
            f"(`cnc infer {Path(path).parent.parent}`)"
        ) from None
    if digest is not None and content_digest(arrays) != digest:
        raise MapsError(
            f"{path}: changed since inference wrote it (its content digest differs from "
            f"{PROTOCOL}'s); run inference again (`cnc infer {Path(path).parent.parent}`)"
        )
    return data


def write_protocol(folder: Path, protocol: dict[str, Any]) -> None:
    write_json(Path(folder) / PROTOCOL, protocol)


def read_protocol(folder: Path) -> dict[str, Any]:
    path = Path(folder) / PROTOCOL
    if not path.is_file():
        raise MapsError(f"{path}: missing; the maps folder must come from `cnc infer`")
    return read_json(path)


def class_files(folder: Path, protocol: dict[str, Any] | None = None) -> dict[str, Path]:
    """Each class's maps file: those protocol.json lists (each must be there), else every
    `<class>.npz` of the folder."""
    folder = Path(folder)
    listed = (protocol or {}).get("maps")
    if listed:
        files = {cls: folder / f"{cls}.npz" for cls in listed}
        missing = [p for p in files.values() if not p.is_file()]
        if missing:
            raise MapsError(
                f"{missing[0]}: missing (listed in {PROTOCOL}); run inference again "
                f"(`cnc infer {folder.parent}`)"
            )
        return files
    files = {p.stem: p for p in sorted(folder.glob("*.npz"))}
    if not files:
        raise MapsError(f"{folder}: no <class>.npz maps; run `cnc infer` for this run first")
    return files
