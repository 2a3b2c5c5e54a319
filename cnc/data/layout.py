"""The MVTec AD folder layout, read the same way for every dataset.

    <root>/<class>/train/good/*.png
    <root>/<class>/test/good/*.png
    <root>/<class>/test/<defect>/*.png
    <root>/<class>/ground_truth/<defect>/<stem>_mask.png   (or <stem>.<any image ext>)

Images are paired with masks by file stem (never by sorted position), so a
missing or extra file is an error instead of a silent mis-pairing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnc.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"
MASK_SUFFIX = "_mask"


class LayoutError(UserError, ValueError):
    """The folder does not follow the MVTec layout; the message names the path."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset split."""

    cls: str
    split: str  # "train" or "test"
    defect: str  # "good" or the defect folder name
    image: Path
    mask: Path | None  # None for normal images

    @property
    def label(self) -> int:
        """1 for anomalous, 0 for normal."""
        return int(self.defect != GOOD)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def discover_classes(root: Path, classes: list[str] | None = None) -> list[str]:
    """Class names: the given list (each must exist) or every sub-folder with a `train/`."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: dataset root not found; prepare it with `cnc data`")
    if classes:
        missing = [c for c in classes if not (root / c).is_dir()]
        if missing:
            raise LayoutError(f"{root}: class folder(s) not found: {', '.join(missing)}")
        return list(classes)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "train").is_dir())
    if not found:
        raise LayoutError(
            f"{root}: no class folders with a train/ sub-folder; expected "
            "<root>/<class>/train/good/*.png (MVTec layout)"
        )
    return found


def mask_index(gt_dir: Path) -> dict[str, list[Path]]:
    """The masks of a ground-truth folder by the image stem they belong to (`<stem>_mask`
    or `<stem>`, any image extension in any case: `.png`, `.bmp`, `.PNG`...)."""
    index: dict[str, list[Path]] = {}
    for path in _images(gt_dir) if gt_dir.is_dir() else []:
        stem = path.stem.removesuffix(MASK_SUFFIX)
        index.setdefault(stem, []).append(path)
    return index


def class_samples(
    root: Path, cls: str, split: str, problems: list[str] | None = None
) -> list[Sample]:
    """All samples of one class and split, anomalous ones paired with their mask by stem.

    Raises LayoutError naming the path for a missing `train/good`, a missing mask or two
    masks for one image; with a `problems` list, these are appended there and the image
    skipped.
    """
    root = Path(root)
    split_dir = root / cls / split
    if split == "train":
        good = split_dir / GOOD
        if not good.is_dir():
            raise LayoutError(f"{good}: missing; every class needs train/good with normal images")
        return [Sample(cls, split, GOOD, p, None) for p in _images(good)]
    if not split_dir.is_dir():
        raise LayoutError(f"{split_dir}: missing test folder")
    samples: list[Sample] = []
    for defect_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        defect = defect_dir.name
        masks = {} if defect == GOOD else mask_index(root / cls / "ground_truth" / defect)
        for image in _images(defect_dir):
            if defect == GOOD:
                samples.append(Sample(cls, split, GOOD, image, None))
                continue
            found = masks.get(image.stem, [])
            if len(found) == 1:
                samples.append(Sample(cls, split, defect, image, found[0]))
                continue
            expected = root / cls / "ground_truth" / defect / f"{image.stem}{MASK_SUFFIX}.png"
            message = (
                f"{image}: anomalous image without a mask; expected {expected}"
                if not found
                else f"{image}: {len(found)} masks ({', '.join(p.name for p in found)}); "
                "keep the one that belongs to it"
            )
            if problems is None:
                raise LayoutError(message)
            problems.append(message)
    return samples


def dataset_samples(root: Path, split: str, classes: list[str] | None = None) -> list[Sample]:
    """Samples of every class of a dataset root for one split, class by class."""
    return [s for c in discover_classes(root, classes) for s in class_samples(root, c, split)]
