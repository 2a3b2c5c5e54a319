"""MVTec AD 2 to the MVTec layout.

Each scenario (`can`, `fabric`, `fruit_jelly`, `rice`, `sheet_metal`, `vial`,
`wallplugs`, `walnuts`) has `train/good/`, `validation/good/`, `test_public/{good,bad}/`
with `test_public/ground_truth/bad/<stem>_mask.png`, and two private test sets without
ground truth (`test_private/`, `test_private_mixed/`, scored only by MVTec's server).
The public test set becomes `test/` (the only one with ground truth); the validation
images are kept apart in `<class>/validation/good/` (read by nothing here); the private
sets are not copied, only counted in the manifest (`not_evaluated`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnc.data.layout import GOOD
from cnc.data.raw import ConvertError, find_root, images_in, place

SCENARIOS = (
    "can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts",
)  # fmt: skip
PUBLIC = "test_public"
PRIVATE = ("test_private", "test_private_mixed")


def _is_root(folder: Path) -> bool:
    return any((folder / s / PUBLIC).is_dir() for s in SCENARIOS)


def _count_images(folder: Path) -> int:
    return sum(len(images_in(p)) for p in [folder, *folder.rglob("*")] if p.is_dir())


def convert(raw: Path, out: Path, move: bool = False) -> dict[str, Any]:
    """Write the MVTec-layout copy of the extracted MVTec AD 2 folder `raw` into `out`."""
    root = find_root(raw, _is_root, "MVTec AD 2 archive (<scenario>/test_public, ...)")
    seen: set[Path] = set()
    not_evaluated: dict[str, dict[str, int]] = {}
    for src in sorted(p for p in root.iterdir() if (p / PUBLIC).is_dir()):
        dest = Path(out) / src.name
        for split in ("train", "validation"):
            for image in images_in(src / split / GOOD):
                place(image, dest / split / GOOD / image.name, move, seen)
        public = src / PUBLIC
        folders = sorted(p for p in public.iterdir() if p.is_dir() and p.name != "ground_truth")
        if not folders:
            raise ConvertError(f"{public}: no test folders (good, bad)")
        for folder in folders:
            for image in images_in(folder):
                place(image, dest / "test" / folder.name / image.name, move, seen)
        for folder in sorted(p for p in (public / "ground_truth").glob("*") if p.is_dir()):
            for mask in images_in(folder):
                place(mask, dest / "ground_truth" / folder.name / mask.name, move, seen)
        not_evaluated[src.name] = {s: _count_images(src / s) for s in PRIVATE if (src / s).is_dir()}
    return {
        "source_layout": "mvtec_ad2",
        "test_set": PUBLIC,
        "kept_apart": "validation/good (not read)",
        "not_evaluated": not_evaluated,  # no ground truth: MVTec's evaluation server scores them
    }
