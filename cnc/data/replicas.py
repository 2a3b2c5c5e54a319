"""Synthetic replicas of the raw layouts of MVTec AD 2, MPDD, BTAD and Real-IAD.

Each replica has the folders, file names, image formats and metadata of the published
archive (two classes each, named as real ones), filled with images of the synthetic
benchmark (`cnc.data.synthetic`). They run every converter end to end where the real
archives cannot be had (the tests, `snakemake benchmarks` at the smoke scale); their
numbers mean nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from cnc.data.layout import GOOD, MASK_SUFFIX
from cnc.data.synthetic import DEFECTS, SyntheticSpec, render_sample

# replica class -> the synthetic class whose images it borrows
SOURCES: dict[str, dict[str, str]] = {
    "mvtec_ad2": {"can": "washer", "fabric": "carpet"},
    "mpdd": {"bracket_black": "chip", "tubes": "grid"},
    "btad": {"01": "wood", "03": "capsule"},
    "realiad": {"audiojack": "chip", "pcb": "pcb"},
}
TRAIN, TEST_GOOD, TEST_BAD = 16, 8, 16  # per class: the synthetic set's sizes
# Real-IAD's defect codes for the synthetic defect kinds (pit, abrasion, ...)
REALIAD_CODES = {"hole": "AK", "scratch": "HS", "stain": "ZW", "contamination": "YW",
                 "misplaced": "QS"}  # fmt: skip


class _Renderer:
    """Synthetic images of one class, each index drawn once per split."""

    def __init__(self, cls: str, seed: int, size: int) -> None:
        self.cls, self.spec = cls, SyntheticSpec(seed=seed, image_size=size, classes=(cls,))
        self.kinds = DEFECTS[cls]

    def normal(self, split: str, index: int) -> np.ndarray:
        return render_sample(self.spec, self.cls, split, index, None)[0]

    def anomalous(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        kind = self.kinds[index % len(self.kinds)]
        image, mask = render_sample(self.spec, self.cls, "test", 1000 + index, kind)
        assert mask is not None  # render_sample draws a non-empty mask for every defect
        return image, mask, kind


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG"}[path.suffix]
    Image.fromarray(array).save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def _mvtec_ad2(out: Path, r: _Renderer, cls: str) -> None:
    src = out / cls
    for i in range(TRAIN):
        _save(r.normal("train", i), src / "train" / GOOD / f"{i:03d}_regular.png")
    for i in range(4):
        _save(r.normal("train", TRAIN + i), src / "validation" / GOOD / f"{i:03d}_regular.png")
    public = src / "test_public"
    for i in range(TEST_GOOD):
        _save(r.normal("test", i), public / GOOD / f"{i:03d}_regular.png")
    for i in range(TEST_BAD):
        image, mask, _ = r.anomalous(i)
        _save(image, public / "bad" / f"{i:03d}_regular.png")
        _save(mask, public / "ground_truth" / "bad" / f"{i:03d}_regular{MASK_SUFFIX}.png")
    for k, private in enumerate(("test_private", "test_private_mixed")):
        for i in range(3):
            _save(r.normal("test", 100 + 10 * k + i), src / private / f"{i:03d}_regular.png")


def _mpdd(out: Path, r: _Renderer, cls: str) -> None:
    for i in range(TRAIN):
        _save(r.normal("train", i), out / cls / "train" / GOOD / f"{i:03d}.png")
    for i in range(TEST_GOOD):
        _save(r.normal("test", i), out / cls / "test" / GOOD / f"{i:03d}.png")
    for i in range(TEST_BAD):
        image, mask, kind = r.anomalous(i)
        _save(image, out / cls / "test" / kind / f"{i:03d}.png")
        _save(mask, out / cls / "ground_truth" / kind / f"{i:03d}{MASK_SUFFIX}.png")


def _btad(out: Path, r: _Renderer, cls: str) -> None:
    # 01: .bmp images, .png masks; 03: .png images, .bmp masks (named as their image)
    image_ext, mask_ext = (".bmp", ".png") if cls == "01" else (".png", ".bmp")
    src = out / "BTech_Dataset_transformed" / cls
    for i in range(TRAIN):
        _save(r.normal("train", i), src / "train" / "ok" / f"{i:04d}{image_ext}")
    for i in range(TEST_GOOD):
        _save(r.normal("test", i), src / "test" / "ok" / f"{i:04d}{image_ext}")
    for i in range(TEST_BAD):
        image, mask, _ = r.anomalous(i)
        _save(image, src / "test" / "ko" / f"{TEST_GOOD + i:04d}{image_ext}")
        _save(mask, src / "ground_truth" / "ko" / f"{TEST_GOOD + i:04d}{mask_ext}")


def _realiad(out: Path, r: _Renderer, cls: str) -> None:
    """Samples of five views (C1-C5): 3 normal training samples, 2 normal and 3 defective
    test samples; on a defective sample the defect shows in views C1-C3 only (C4, C5 are
    listed OK, as Real-IAD lists a view without a visible defect)."""
    images = out / "realiad_256" / cls
    stamp = "20230922093358"
    entries: dict[str, list[dict[str, str | None]]] = {"train": [], "test": []}
    counters = {"train": 0, "test": 0, "bad": 0}

    def add(split: str, sample: int, view: int, defect: str | None) -> None:
        state = "OK" if defect is None else "NG"
        name = f"{cls}_{sample:04d}_{state}_C{view}_{stamp}.jpg"
        folder = Path("OK") if defect is None else Path("NG") / defect
        relative = folder / f"S{sample:04d}" / name
        visible = defect is not None and view <= 3
        mask_path = None
        if visible:
            image, mask, _ = r.anomalous(counters["bad"])
            counters["bad"] += 1
            mask_path = (relative.parent / f"{Path(name).stem}{MASK_SUFFIX}.png").as_posix()
            _save(mask, images / mask_path)
        else:
            image = r.normal(split, counters[split])
            counters[split] += 1
        _save(image, images / relative)
        entries[split].append({
            "category": cls,
            "anomaly_class": defect if visible else "OK",
            "image_path": relative.as_posix(),
            "mask_path": mask_path,
        })  # fmt: skip

    codes = [REALIAD_CODES[k] for k in r.kinds]
    plan = [("train", None)] * 3 + [("test", None)] * 2 + [("test", c) for c in codes[:3]]
    for sample, (split, defect) in enumerate(plan, start=1):
        for view in range(1, 6):
            add(split, sample, view, defect)
    meta = {"prefix": "", "normal_class": "OK", "pixel_unit": "um"}
    path = out / "realiad_jsons" / "realiad_jsons" / f"{cls}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, **entries}, indent=1))


WRITERS: dict[str, Callable[[Path, _Renderer, str], None]] = {
    "mvtec_ad2": _mvtec_ad2, "mpdd": _mpdd, "btad": _btad, "realiad": _realiad,
}  # fmt: skip


def write(dataset: str, out: Path, seed: int = 0, size: int = 128) -> None:
    """Write the raw-layout replica of `dataset` under `out` (deterministic: same seed,
    same images)."""
    for cls, source in SOURCES[dataset].items():
        WRITERS[dataset](Path(out), _Renderer(source, seed, size), cls)
