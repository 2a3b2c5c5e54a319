"""BTAD (BeanTech Anomaly Detection) to the MVTec layout.

The archive (`btad.zip`) holds `BTech_Dataset_transformed/<product>/` for products 01,
02 and 03, each with `train/ok/`, `test/ok/`, `test/ko/` and `ground_truth/ko/`. Normal
images are named `ok` instead of `good`; images are `.bmp` or `.png` and a mask is
named as its image without `_mask`, not always with its extension. The files are kept
as they are (the reader decodes both formats and pairs masks by stem, any extension).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnc.data.layout import GOOD
from cnc.data.raw import ConvertError, find_root, images_in, place

PRODUCTS = ("01", "02", "03")
NORMAL = "ok"


def _is_root(folder: Path) -> bool:
    return any((folder / p / "train" / NORMAL).is_dir() for p in PRODUCTS)


def convert(raw: Path, out: Path, move: bool = False) -> dict[str, Any]:
    """Write the MVTec-layout copy of the extracted BTAD folder `raw` into `out`."""
    root = find_root(raw, _is_root, "BTAD archive (01/train/ok, ...)")
    seen: set[Path] = set()
    products = [p for p in PRODUCTS if (root / p).is_dir()]
    for product in products:
        src, dest = root / product, Path(out) / product
        train = images_in(src / "train" / NORMAL)
        if not train:
            raise ConvertError(f"{src / 'train' / NORMAL}: no training images")
        for image in train:
            place(image, dest / "train" / GOOD / image.name, move, seen)
        test = src / "test"
        for folder in sorted(p for p in test.iterdir() if p.is_dir()) if test.is_dir() else []:
            target = GOOD if folder.name == NORMAL else folder.name
            for image in images_in(folder):
                place(image, dest / "test" / target / image.name, move, seen)
        for folder in sorted(p for p in (src / "ground_truth").glob("*") if p.is_dir()):
            for mask in images_in(folder):
                place(mask, dest / "ground_truth" / folder.name / mask.name, move, seen)
    return {"source_layout": "btad", "products": products}
