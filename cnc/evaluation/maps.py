"""Saved anomaly maps: what inference writes and evaluation reads, and what evaluation
does to them (smoothing, image scores).

One compressed `<cls>.npz` per class in a run's maps folder (cnc.runs.MAPS_DIR), with
  maps          float16 (N, H, W)  eq. 17's maps at the evaluation size, not smoothed
  masks         bool    (N, H, W)  ground truth resized with the stated mask rule
  labels        int8    (N,)       1 = anomalous
  paths         str     (N,)       source images, for heat maps
  defects       str     (N,)       each image's defect type: its test folder ("good": normal)
and `protocol.json` beside them: map size and mask rule. Smoothing happens at
evaluation, so a new sigma re-scores the saved maps without inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from cnc.errors import UserError
from cnc.io import atomic_path, read_json, write_json
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


def write_class_maps(folder: Path, cls: str, data: ClassMaps) -> Path:
    n = len(data.labels)
    shapes = {
        "maps": data.maps.shape[0],
        "masks": data.masks.shape[0],
        "paths": len(data.paths),
        "defects": len(data.defects),
    }
    if any(v != n for v in shapes.values()) or data.maps.shape != data.masks.shape:
        raise ValueError(f"{cls}: inconsistent array lengths {shapes} for {n} labels")
    path = Path(folder) / f"{cls}.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            maps=data.maps.astype(np.float16),
            masks=data.masks.astype(bool),
            labels=data.labels.astype(np.int8),
            paths=np.asarray(data.paths, dtype=str),
            defects=np.asarray(data.defects, dtype=str),
        )
    return path


def read_class_maps(path: Path) -> ClassMaps:
    try:
        with np.load(path, allow_pickle=False) as z:
            paths = z["paths"]
            # Maps written before defect types were recorded: from the folder names.
            defects = z["defects"] if "defects" in z else np.array(list(map(defect_type, paths)))
            return ClassMaps(
                maps=z["maps"].astype(np.float32),
                masks=z["masks"].astype(bool),
                labels=z["labels"].astype(np.int64),
                paths=paths,
                defects=defects,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise MapsError(f"{path}: not a readable maps file ({exc}); run inference again") from None


def write_protocol(folder: Path, protocol: dict[str, Any]) -> None:
    write_json(Path(folder) / PROTOCOL, protocol)


def read_protocol(folder: Path) -> dict[str, Any]:
    path = Path(folder) / PROTOCOL
    if not path.is_file():
        raise MapsError(f"{path}: missing; the maps folder must come from `cnc infer`")
    return read_json(path)


def class_files(folder: Path) -> dict[str, Path]:
    files = {p.stem: p for p in sorted(Path(folder).glob("*.npz"))}
    if not files:
        raise MapsError(f"{folder}: no <class>.npz maps; run `cnc infer` for this run first")
    return files
