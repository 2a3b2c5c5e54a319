"""Real-IAD to the MVTec layout, from its JSON metadata.

The dataset (access on request, placed by hand) holds `realiad_<resolution>/<class>/`
(resolution 256, 512, 1024 or `raw`) with `OK/S<sample>/...C<view>....jpg` and
`NG/<defect>/S<sample>/...jpg` plus `..._mask.png`, and per class a JSON file
`realiad_jsons/<jsons>/<class>.json`: `{"meta": ..., "train": [...], "test": [...]}`,
each entry with `anomaly_class` (`OK` or a defect code), `image_path` and `mask_path`.

Views are treated per image, as the dataset's own single-image protocol does: each of
the five views of a sample is one test image, labelled by its own `anomaly_class` (a view
of a defective sample on which the defect is not visible is listed `OK`). The JSON
decides the split; an entry listed twice, in both splits, or a training entry that is
not `OK`, is an error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnc.data.layout import GOOD, MASK_SUFFIX
from cnc.data.raw import ConvertError, find_root, place

NORMAL = "OK"
RESOLUTIONS = ("256", "512", "1024", "raw")
JSONS = "realiad_jsons"  # the multi-view base split; realiad_jsons_sv: single view


def _is_root(folder: Path) -> bool:
    return (folder / "realiad_jsons").is_dir()


def _entries(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{path}: not readable JSON ({exc})") from None
    splits = ("train", "test")
    if not isinstance(data, dict) or not all(isinstance(data.get(s), list) for s in splits):
        raise ConvertError(f"{path}: expected an object with `train` and `test` lists")
    return {"train": data["train"], "test": data["test"]}


def _source(images: Path, cls: str, relative: str, json_path: Path) -> Path:
    """An entry's file: its path relative to the class folder, or to the resolution's."""
    for base in (images / cls, images):
        if (base / relative).is_file():
            return base / relative
    raise ConvertError(f"{json_path}: {relative} not found under {images / cls} or {images}")


def convert(
    raw: Path,
    out: Path,
    move: bool = False,
    classes: list[str] | None = None,
    resolution: str = "256",
    jsons: str = JSONS,
) -> dict[str, Any]:
    """Write the MVTec-layout copy of the classes `classes` (default all) of the Real-IAD
    folder `raw` at `resolution` into `out`."""
    root = find_root(raw, _is_root, "Real-IAD folder (realiad_jsons/, realiad_<resolution>/)")
    resolution = str(resolution)
    if resolution not in RESOLUTIONS:
        raise ConvertError(f"data.realiad.resolution: {resolution}; choose one of {RESOLUTIONS}")
    meta_dir, images = root / "realiad_jsons" / jsons, root / f"realiad_{resolution}"
    available = sorted(p.stem for p in meta_dir.glob("*.json"))
    if not available:
        raise ConvertError(f"{meta_dir}: no <class>.json files (data.realiad.jsons: {jsons})")
    if not images.is_dir():
        raise ConvertError(f"{images}: missing; data.realiad.resolution is {resolution}")
    unknown = sorted(set(classes or []) - set(available))
    if unknown:
        raise ConvertError(f"data.realiad.classes: {unknown} not in {meta_dir}; have {available}")
    chosen = list(classes or available)
    seen: set[Path] = set()
    for cls in chosen:
        json_path, dest = meta_dir / f"{cls}.json", Path(out) / cls
        for split, entries in _entries(json_path).items():
            for entry in entries:
                src = _source(images, cls, str(entry.get("image_path", "")), json_path)
                defect = str(entry.get("anomaly_class", ""))
                if not defect:
                    raise ConvertError(f"{json_path}: {src.name} has no anomaly_class")
                if split == "train" and defect != NORMAL:
                    raise ConvertError(
                        f"{json_path}: training image {src.name} is {defect}, not OK"
                    )
                folder = GOOD if defect == NORMAL else defect
                place(src, dest / split / folder / src.name, move, seen)
                if folder == GOOD:
                    continue
                if not entry.get("mask_path"):
                    raise ConvertError(f"{json_path}: {src.name} is {defect} but has no mask_path")
                mask = _source(images, cls, str(entry["mask_path"]), json_path)
                name = f"{src.stem}{MASK_SUFFIX}{mask.suffix}"
                place(mask, dest / "ground_truth" / folder / name, move, seen)
    return {
        "source_layout": "realiad",
        "classes_chosen": chosen,
        "resolution": resolution,
        "jsons": jsons,
        "views": "per image (the dataset's single-image protocol)",
    }
